-- One declaration a rule (issue 21).
--
-- The DTMF replay window was a bare 2000000 in callstate_dtmf beside
-- callstate.ReplayWindow in Go: the window is now the function's second
-- argument, which the store passes from callstate.ReplayWindow, so that Go
-- declares it once.
--
-- The feed's event types get a CHECK, so that the database refuses a type
-- callstate.FeedEventTypes does not declare (store/vocab_test.go holds the
-- two together).

DROP FUNCTION callstate_dtmf(text[]);

-- callstate_dtmf reads the digits of a sorted press list, leaving out a
-- press whose digest equals that of the previous press with that digest
-- less than window_us microseconds (callstate.ReplayWindow) before it.
CREATE FUNCTION callstate_dtmf(presses text[], window_us bigint) RETURNS text
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
    WHERE prev IS NULL OR digest = '' OR t - prev >= window_us
), '');

COMMENT ON COLUMN call_state.dtmf IS 'DTMF digits in the order received; a copy of a request within callstate.ReplayWindow of the first is not counted again.';

ALTER TABLE call_feed ADD CONSTRAINT call_feed_type_check CHECK (type IN (
    'call.ringing', 'call.answered', 'call.held', 'call.dtmf', 'call.ended', 'call.updated',
    'call.missed', 'call.voicemail', 'journey.ended', 'lamp.changed', 'lamp.updated'));
