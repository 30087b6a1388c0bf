-- Rejected inputs per reason and source (replay, stream, window).
SELECT reason, source, count() AS rejected
FROM dead_letters FINAL
GROUP BY reason, source
ORDER BY reason, source
