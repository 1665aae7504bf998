-- The wake-up's reader asks, on every change notification, whether any
-- push waits for its clear (store.WakeFeed): with none and no PBX extension
-- that has devices, it reads no event of the feed. The pushes of the last
-- day are kept, nearly all cleared; this index holds the few that are not,
-- so the question costs a look at an almost empty index, not a scan.
CREATE INDEX wake_push_uncleared_idx ON wake_push (journey_id) WHERE cleared_at IS NULL;
