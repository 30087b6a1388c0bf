-- `events` is what people query, and counts each event once: the name now belongs to the view of
-- distinct events, and the table the sink writes (where a re-processed batch or a re-routed event
-- can sit twice until a merge) is `events_raw`. On a cluster the renamed table is the Distributed
-- one; its Replicated tables keep their name (`events_local`) and their Keeper path.
-- `distinct_events`, the view's former name, stays as another name of it for saved queries.
DROP VIEW IF EXISTS distinct_events;

RENAME TABLE events TO events_raw;

CREATE VIEW IF NOT EXISTS events AS
SELECT user_id, item_id, category_id, behavior, ts, channel, device_id, event_id
FROM events_raw FINAL;

CREATE VIEW IF NOT EXISTS distinct_events AS
SELECT * FROM events;
