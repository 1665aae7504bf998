-- The journey refresher decides a hold from the same snapshot as the
-- journey it computes.
--
-- Migration 029 held a journey that would end unanswered within the grace
-- of a write, but decided it in the refresher's statement, before the
-- journey's lock, from that statement's snapshot; the journey was then
-- computed by later statements, which saw later commits. A hang-up that
-- committed between the two was computed without being held: the journey
-- ended missed, and when the answer committed a moment later it turned
-- answered, the feed having told call.missed and journey.ended for a call
-- that was talked on.
--
-- callstate_refresh_taken takes the calls the refresher took from
-- journey_pending with when each was written (NULL: a held row, whose
-- grace has passed), locks their journeys, and then, in one statement,
-- computes them, holds the ones that would end unanswered within the grace
-- (queuing their legs again, held, due when it has passed), and writes the
-- others. Whatever commits after that statement's snapshot has its own row
-- in journey_pending and is looked at again.
CREATE FUNCTION callstate_refresh_taken(sources text[], keys text[], written timestamptz[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    ids  text[];
    jid  text;
    g    interval := make_interval(secs => callstate_setting_seconds('journey_grace_seconds', 1));
    tz   text := callstate_time_zone();
    done integer;
BEGIN
    -- A call's journey_id is generated from columns that never change:
    -- read before the locks, it is still its journey after them.
    ids := ARRAY(
        SELECT DISTINCT x COLLATE "C" FROM call_state c
        JOIN unnest(sources, keys) AS k(source, call_key) ON c.source = k.source AND c.call_key = k.call_key
        CROSS JOIN LATERAL (VALUES (c.journey_id), (c.call_id), (c.call_key), ('sip:' || c.call_key)) AS v(x)
        WHERE x IS NOT NULL AND x <> ''
        ORDER BY 1);
    FOREACH jid IN ARRAY ids LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('callstate journey ' || jid, 0));
    END LOOP;
    DELETE FROM journey j
    WHERE j.journey_id = ANY (ids)
      AND NOT EXISTS (SELECT 1 FROM call_state c WHERE c.journey_id = j.journey_id);
    WITH recent AS (
        SELECT c.journey_id, max(k.written) AS written
        FROM unnest(sources, keys, written) AS k(source, call_key, written)
        JOIN call_state c ON c.source = k.source AND c.call_key = k.call_key
        WHERE k.written > now() - 5 * g
        GROUP BY 1
    ), unanswered AS (
        SELECT r.journey_id, r.written,
               EXISTS (SELECT 1 FROM call_state c
                       WHERE c.journey_id = r.journey_id AND c.source = 'sipgate'
                         AND c.hangup_cause = 'normalClearing' AND c.answered_at IS NULL) AS answer_due
        FROM recent r
        WHERE NOT EXISTS (SELECT 1 FROM call_state c
                          WHERE c.journey_id = r.journey_id AND (c.state <> 'ended' OR c.answered_at IS NOT NULL))
          AND coalesce((SELECT j.outcome FROM journey j WHERE j.journey_id = r.journey_id), 'active') = 'active'
    ), hold AS (
        SELECT u.journey_id, u.written + CASE WHEN u.answer_due THEN 5 * g ELSE g END AS due
        FROM unanswered u
        WHERE u.written > now() - CASE WHEN u.answer_due THEN 5 * g ELSE g END
    ), requeue AS (
        INSERT INTO journey_pending (source, call_key, at, held)
        SELECT c.source, c.call_key, h.due, true
        FROM hold h JOIN call_state c ON c.journey_id = h.journey_id
    ), written_journeys AS (
        INSERT INTO journey AS j (journey_id, source, direction, from_party, to_party, started_at, answered_at, ended_at,
                                  outcome, answered_by, answered_user_id, wait_seconds, talk_seconds, user_ids, legs,
                                  hangup_cause, voicemail_at, updated_at, day)
        SELECT f.journey_id, f.source, f.direction, f.from_party, f.to_party, f.started_at, f.answered_at, f.ended_at,
               f.outcome, f.answered_by, f.answered_user_id, f.wait_seconds, f.talk_seconds, f.user_ids, f.legs,
               f.hangup_cause, f.voicemail_at, f.updated_at, (f.started_at AT TIME ZONE tz)::date
        FROM journey_from_legs f
        WHERE f.journey_id = ANY (ids)
          AND f.journey_id NOT IN (SELECT journey_id FROM hold)
        ON CONFLICT (journey_id) DO UPDATE SET
            source = EXCLUDED.source, direction = EXCLUDED.direction, from_party = EXCLUDED.from_party,
            to_party = EXCLUDED.to_party, started_at = EXCLUDED.started_at, answered_at = EXCLUDED.answered_at,
            ended_at = EXCLUDED.ended_at, outcome = EXCLUDED.outcome, answered_by = EXCLUDED.answered_by,
            answered_user_id = EXCLUDED.answered_user_id, wait_seconds = EXCLUDED.wait_seconds,
            talk_seconds = EXCLUDED.talk_seconds, user_ids = EXCLUDED.user_ids, legs = EXCLUDED.legs,
            hangup_cause = EXCLUDED.hangup_cause, voicemail_at = EXCLUDED.voicemail_at,
            updated_at = EXCLUDED.updated_at, day = EXCLUDED.day
        WHERE (j.*) IS DISTINCT FROM (EXCLUDED.*)
        RETURNING 1
    )
    SELECT count(*) INTO done FROM written_journeys;
    RETURN done;
END
$$;

COMMENT ON FUNCTION callstate_refresh_taken(text[], text[], timestamptz[]) IS
    'Journeys of the calls taken from journey_pending, computed, or held for the grace, from one snapshot (migration 031).';
