-- A clear was lost when its instance died between recording it (the
-- wake-up's read of the feed, cleared_at) and sending it. Now a clear is
-- marked sent after it was sent; one left unmarked well past its sending
-- time is sent again by any instance (store.UnsentClears). The clears
-- recorded before this migration were sent, or are beyond saving.
ALTER TABLE wake_push ADD COLUMN clear_sent_at timestamptz;
UPDATE wake_push SET clear_sent_at = cleared_at WHERE cleared_at IS NOT NULL;
CREATE INDEX wake_push_clear_unsent_idx ON wake_push (cleared_at)
    WHERE cleared_at IS NOT NULL AND clear_sent_at IS NULL;
COMMENT ON COLUMN wake_push.clear_sent_at IS 'When the clear (cleared_at) was sent, or taken to be sent again; NULL: not yet.';
