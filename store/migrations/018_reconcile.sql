-- Reconciliation with sipgate's own record (its history): which source
-- wins, as a rule of the merge (callstate.Call.Apply, callstate.Rank).
--
-- Every update has a rank: 3 stated by an event of the call (a webhook, a
-- SIP NOTIFY), 2 learned afterwards from sipgate's history, 1 guessed by
-- callstate (a timeout end). The end (ended_at, hangup_cause, cause_at)
-- comes from the updates of the highest rank that state one; the answer
-- (answer_at, and answered_at: it capped at ended_at) from those of the
-- highest rank that state one and rank no lower than the end's. Ranks only
-- rise, so every column is still a join: the same row in any order.

ALTER TABLE call_state
    ADD COLUMN learned     boolean  NOT NULL DEFAULT false,
    ADD COLUMN end_rank    smallint NOT NULL DEFAULT 0,
    ADD COLUMN answer_rank smallint NOT NULL DEFAULT 0,
    ADD COLUMN answer_at   timestamptz;

COMMENT ON COLUMN call_state.learned IS 'Every event of the call was learned from sipgate''s history: its webhooks never came.';
COMMENT ON COLUMN call_state.end_rank IS 'Rank of the updates ended_at and hangup_cause come from: 0 none, 1 guessed (timeout), 2 learned (sipgate history), 3 stated by an event.';
COMMENT ON COLUMN call_state.answer_rank IS 'Rank of the updates answer_at comes from (see end_rank); never below end_rank unless 0.';
COMMENT ON COLUMN call_state.answer_at IS 'Earliest answer of rank answer_rank; answered_at is it, never after ended_at.';

-- The journal's timeouts are guesses; say so in what they told.
UPDATE call_event SET call_update = convert_to((convert_from(call_update, 'UTF8')::jsonb || '{"Guessed": true}')::text, 'UTF8')
WHERE source = 'sipgate' AND type = 'timeout' AND call_update IS NOT NULL;

UPDATE call_state SET
    end_rank    = CASE WHEN source = 'sipgate' AND hangup_cause = 'timeout' THEN 1 ELSE 3 END,
    answer_rank = CASE WHEN answered_at IS NOT NULL THEN 3 ELSE 0 END,
    answer_at   = answered_at
WHERE ended_at IS NOT NULL OR hangup_cause <> '' OR answered_at IS NOT NULL;

-- callstate_ranked merges a time kept by rank: the earliest of the higher
-- rank, nothing when neither rank reaches floor (or 1).
CREATE FUNCTION callstate_ranked(a_rank smallint, a timestamptz, b_rank smallint, b timestamptz, floor smallint)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN GREATEST(a_rank, b_rank) < GREATEST(floor, 1) THEN NULL
            WHEN a_rank > b_rank THEN a
            WHEN b_rank > a_rank THEN b
            ELSE LEAST(a, b) END;

-- callstate_capped is an answer time never after the end.
CREATE FUNCTION callstate_capped(answer timestamptz, ended timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN answer IS NULL THEN NULL ELSE LEAST(answer, ended) END;

-- call_tombstone: calls erased by "callstate forget NUMBER". A learned
-- update (sipgate's history) never brings one back.
CREATE TABLE call_tombstone (
    source    text        NOT NULL,
    call_key  text        NOT NULL,
    erased_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, call_key)
);

COMMENT ON TABLE call_tombstone IS 'Calls erased by callstate forget: reconciliation with sipgate''s history does not create them again.';

-- forgotten_number: digests (SHA-256, hex, of the number as sipgate's
-- webhooks write it) of the numbers erased by "callstate forget NUMBER",
-- so that reconciliation does not learn their earlier calls from the
-- history either. Not the number itself.
CREATE TABLE forgotten_number (
    digest       text        PRIMARY KEY,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE forgotten_number IS 'SHA-256 (hex) of numbers erased by callstate forget: their calls before forgotten_at are not learned again from sipgate''s history.';

-- reconcile_cursor: how far each walk of sipgate's history has come.
CREATE TABLE reconcile_cursor (
    name       text        PRIMARY KEY,
    position   timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE reconcile_cursor IS 'Where reconciliation with sipgate''s history has come: entries created before position were reconciled.';

-- reconcile_lease: one instance reconciles at a time.
CREATE TABLE reconcile_lease (
    name        text        PRIMARY KEY,
    owner       text        NOT NULL,
    lease_until timestamptz NOT NULL
);

COMMENT ON TABLE reconcile_lease IS 'Which instance reconciles with sipgate now, until when.';
