-- The routing rule that answered a call's newCall (ROUTING_FILE): recorded
-- on the call as the journal's updates say, the earliest winning (on a tie
-- the greater name), like hangup_cause and cause_at.

ALTER TABLE call_state
    ADD COLUMN routed_rule text NOT NULL DEFAULT '' CHECK (length(routed_rule) <= 100),
    ADD COLUMN routed_at   timestamptz;

COMMENT ON COLUMN call_state.routed_rule IS 'Name of the routing rule that answered the call''s newCall; '''' when none did.';
COMMENT ON COLUMN call_state.routed_at IS 'Receive time of the earliest event that named routed_rule.';
