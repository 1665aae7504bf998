-- call_state becomes a projection of the journal that does not depend on
-- the order in which events are applied (callstate.Call.Apply): every
-- column is merged by a join, commutative and idempotent, given each
-- event's own receive time. The columns below keep what those joins need.

ALTER TABLE call_state
    ADD COLUMN extension_pinned boolean     NOT NULL DEFAULT false,
    ADD COLUMN hold_at          timestamptz,
    ADD COLUMN cause_at         timestamptz,
    ADD COLUMN dtmf_presses     text[]      NOT NULL DEFAULT '{}';

COMMENT ON COLUMN call_state.extension_pinned IS 'extension names who answered (sipgate answer), not a first guess.';
COMMENT ON COLUMN call_state.hold_at IS 'Receive time of the latest event that stated on_hold.';
COMMENT ON COLUMN call_state.cause_at IS 'Receive time of the earliest event that stated hangup_cause.';
COMMENT ON COLUMN call_state.dtmf_presses IS 'Every dtmf event: receive time (unix microseconds, 17 digits), digest of its bytes, digits; sorted.';
COMMENT ON COLUMN call_state.dtmf IS 'DTMF digits in the order received; a copy of a request within 2 s of the first is not counted again.';
COMMENT ON COLUMN call_state.started_at IS 'Earliest event about the call.';
COMMENT ON COLUMN call_state.answered_at IS 'Earliest event saying answered, never after ended_at.';
COMMENT ON COLUMN call_state.last_event_id IS 'Greatest call_event.id applied to the row.';

-- Rows written before: their digits as one press at their last update,
-- causes and holds at their end or last update, and answer times that a
-- hang-up received first left after the end.
UPDATE call_state SET
    dtmf_presses = CASE WHEN dtmf = '' THEN '{}'::text[]
                        ELSE ARRAY[lpad((extract(epoch FROM updated_at) * 1000000)::bigint::text, 17, '0') || '::' || dtmf] END,
    cause_at     = CASE WHEN hangup_cause <> '' THEN coalesce(ended_at, updated_at) END,
    hold_at      = CASE WHEN on_hold THEN updated_at END,
    answered_at  = LEAST(answered_at, ended_at);

-- callstate_join merges a field that every event carrying it should agree
-- on: non-empty beats empty, then the greater in byte order wins.
CREATE FUNCTION callstate_join(a text, b text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN b COLLATE "C" > a COLLATE "C" THEN b ELSE a END;

CREATE FUNCTION callstate_join(a text[], b text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN cardinality(b) = 0 THEN a
            WHEN cardinality(a) = 0 THEN b
            WHEN b COLLATE "C" > a COLLATE "C" THEN b
            ELSE a END;

-- callstate_presses merges two sorted press lists into one, sorted, each
-- press once.
CREATE FUNCTION callstate_presses(a text[], b text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ARRAY(SELECT DISTINCT p COLLATE "C" FROM unnest(a || b) AS p ORDER BY 1);

-- callstate_dtmf reads the digits of a sorted press list, leaving out a
-- press whose digest equals that of the previous press with that digest
-- less than 2 s (callstate.ReplayWindow) before it.
CREATE FUNCTION callstate_dtmf(presses text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce((
    SELECT string_agg(digits, '' ORDER BY key COLLATE "C")
    FROM (
        SELECT key, digits, digest, t,
               lag(t) OVER (PARTITION BY digest ORDER BY key COLLATE "C") AS prev
        FROM (
            SELECT p AS key, split_part(p, ':', 1)::bigint AS t,
                   split_part(p, ':', 2) AS digest, split_part(p, ':', 3) AS digits
            FROM unnest(presses) AS p
        ) s
    ) w
    WHERE prev IS NULL OR digest = '' OR t - prev >= 2000000
), '');
