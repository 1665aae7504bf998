-- A push service that answers 429 or 503 with Retry-After asks the sender
-- to wait. Every instance sends pushes (the one that took the newCall, the
-- one that reads the feed's clears), so the wait is kept here, per push
-- service origin, for all of them (webpush.Throttle, store.HoldPushes).
CREATE TABLE wake_throttle (
    origin text PRIMARY KEY,       -- scheme://host[:port] of the push endpoints
    until  timestamptz NOT NULL    -- nothing is sent there before
);
COMMENT ON TABLE wake_throttle IS 'Push services that asked to wait (Retry-After): no push to origin before until.';
