-- Replay backfills: POST /api/webhooks/{id}/replay?since= also makes
-- deliveries of the feed's events written since `since` that the endpoint
-- never had a delivery of (those from before it existed, or from while it
-- was disabled), as far back as the feed keeps (EVENTS_RETENTION). The
-- request is kept on the endpoint, so any instance's sender does it, a
-- chunk at a time, with the endpoint's row locked as for its new events:
-- the feed's ids after backfill_after up to backfill_upto (the cursor when
-- it was asked for) written at or after backfill_since.
ALTER TABLE webhook_endpoint
    ADD COLUMN backfill_since timestamptz,
    ADD COLUMN backfill_after bigint,
    ADD COLUMN backfill_upto  bigint;

COMMENT ON COLUMN webhook_endpoint.backfill_since IS 'A replay''s backfill to do: feed events written since then, ids after backfill_after up to backfill_upto; NULL: none.';

CREATE INDEX webhook_delivery_feed_idx ON webhook_delivery (endpoint_id, feed_id);
