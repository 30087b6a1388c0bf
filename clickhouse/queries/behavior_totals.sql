-- Events per behaviour over the whole data set (distinct events).
SELECT toString(behavior) AS behavior, count() AS events
FROM distinct_events
GROUP BY behavior
ORDER BY behavior
