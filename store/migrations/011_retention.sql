-- Calls are forgotten some time after they ended (RETENTION_DAYS), and all
-- calls of one number on request (callstate erase): both find ended calls
-- by their end, which this index keeps cheap at millions of rows.

CREATE INDEX call_state_ended_at_idx ON call_state (ended_at) WHERE state = 'ended';
