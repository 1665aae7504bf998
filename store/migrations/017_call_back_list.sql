-- Calls to return, abandons and service level (issue 22).
--
-- * A voicemail is a call to return, as a missed call is: missed_call
--   lists journeys of outcome missed and voicemail, with the outcome.
-- * A call-back counts at its answer: a later journey to or from the
--   number counts once a person answered it, still going on or not.
-- * A lead can mark a call to return as done: missed_call_done keeps who
--   and when, one row a journey, written once and never changed (the
--   first mark stands). It goes with its journey (retention, erase).
-- * journey_stats_part and journey_stats_day gain abandoned,
--   short_abandoned and the service level's two counts; the thresholds
--   are callstate_setting's sla_seconds and short_abandon_seconds, which
--   callstate writes at start (SLA_SECONDS, SHORT_ABANDON_SECONDS).
-- * A user's answer ratio counts only the calls they could have
--   answered: those offered to them that nobody answered, and those they
--   answered; not those a colleague answered.

INSERT INTO callstate_setting (name, value) VALUES ('sla_seconds', '20'), ('short_abandon_seconds', '5')
ON CONFLICT (name) DO NOTHING;

CREATE FUNCTION callstate_setting_seconds(setting text, fallback double precision) RETURNS double precision
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN coalesce((SELECT value::double precision FROM callstate_setting WHERE name = setting), fallback);
END
$$;

-- Call-backs by answer: the journeys a person answered, ended or not.
CREATE INDEX journey_callback_out_answer_idx ON journey (to_party, started_at) WHERE direction = 'out' AND answered_at IS NOT NULL;
CREATE INDEX journey_callback_in_answer_idx ON journey (from_party, started_at) WHERE direction = 'in' AND answered_at IS NOT NULL;
DROP INDEX journey_callback_out_idx;
DROP INDEX journey_callback_in_idx;
CREATE INDEX journey_to_return_idx ON journey (started_at) WHERE outcome IN ('missed', 'voicemail');

CREATE TABLE missed_call_done (
    journey_id text PRIMARY KEY REFERENCES journey (journey_id) ON DELETE CASCADE,
    done_at    timestamptz NOT NULL,
    done_by    text NOT NULL CHECK (done_by <> '')
);

COMMENT ON TABLE missed_call_done IS 'Calls to return a lead marked as done: who and when; the first mark stands. Goes with its journey.';

-- missed_call: the calls to return (missed or voicemail) and whether they
-- were called back (called_back_at: the answer of the first later call to
-- or from the number that a person answered, each way, the earlier of
-- the two) or marked done.
CREATE OR REPLACE VIEW missed_call AS
SELECT m.journey_id,
       m.from_party AS number,
       m.started_at,
       m.ended_at,
       cb.at IS NOT NULL AS called_back,
       cb.at AS called_back_at,
       m.to_party,
       m.user_ids,
       m.day,
       m.outcome,
       d.done_at,
       d.done_by,
       cb.at IS NULL AND d.done_at IS NULL AS open
FROM journey m
LEFT JOIN missed_call_done d ON d.journey_id = m.journey_id
LEFT JOIN LATERAL (
    SELECT LEAST(
        (SELECT x.answered_at FROM journey x
         WHERE x.direction = 'out' AND x.answered_at IS NOT NULL AND x.to_party = m.from_party AND x.started_at > m.started_at
         ORDER BY x.started_at LIMIT 1),
        (SELECT x.answered_at FROM journey x
         WHERE x.direction = 'in' AND x.answered_at IS NOT NULL AND x.from_party = m.from_party AND x.started_at > m.started_at
         ORDER BY x.started_at LIMIT 1)
    ) AS at
) cb ON true
WHERE m.outcome IN ('missed', 'voicemail');

COMMENT ON VIEW missed_call IS 'Calls to return: missed and voicemail journeys; called_back once a later call to or from the number was answered by a person (at its answer), open unless called back or marked done (missed_call_done).';

-- The stats' parts gain the abandons and the service level's counts.
ALTER TABLE journey_stats_part
    ADD COLUMN abandoned       bigint NOT NULL DEFAULT 0,
    ADD COLUMN short_abandoned bigint NOT NULL DEFAULT 0,
    ADD COLUMN sl_answered     bigint NOT NULL DEFAULT 0,
    ADD COLUMN sl_offered      bigint NOT NULL DEFAULT 0;

-- journey_stats_rows: what journey j counts in the stats, times sign, one
-- row per user it concerns and one for the team (user_id ''), with sla
-- and short the service level's and a short abandon's seconds.
--   abandoned:    incoming, missed, and the caller hung up while waiting
--                 (sipgate cancel, SIP cancelled);
--   short:        abandoned within short seconds;
--   could:        the user could have answered it: the team always; a
--                 user unless a colleague answered it;
--   sl_offered:   incoming, ended answered, missed or voicemail, with a
--                 wait, not a short abandon, and could;
--   sl_answered:  of those, answered by the user (the team: anyone)
--                 within sla seconds.
DROP FUNCTION journey_stats_rows(journey, integer);
CREATE FUNCTION journey_stats_rows(j journey, sign integer, sla double precision, short double precision) RETURNS TABLE (
    day date, user_id text, base boolean, calls_in bigint, calls_out bigint, answered bigint, missed bigint,
    voicemail bigint, ratio_base bigint, answer_count bigint, answer_sum double precision,
    answer_max double precision, talk_seconds double precision,
    abandoned bigint, short_abandoned bigint, sl_answered bigint, sl_offered bigint)
LANGUAGE sql IMMUTABLE AS $$
SELECT j.day, u.user_id, false,
       (sign * (j.direction <> 'out')::int)::bigint,
       (sign * (j.direction = 'out')::int)::bigint,
       (sign * a.mine::int)::bigint,
       (sign * (j.outcome = 'missed')::int)::bigint,
       (sign * (j.outcome = 'voicemail')::int)::bigint,
       (sign * (j.direction <> 'out' AND j.outcome IN ('answered', 'missed', 'voicemail') AND a.could)::int)::bigint,
       (sign * a.mine::int)::bigint,
       CASE WHEN a.mine THEN sign * coalesce(j.wait_seconds, 0) ELSE 0 END::double precision,
       CASE WHEN a.mine AND sign > 0 THEN j.wait_seconds END::double precision,
       CASE WHEN u.user_id = '' OR j.answered_user_id = u.user_id OR j.direction = 'out'
            THEN sign * coalesce(j.talk_seconds, 0) ELSE 0 END::double precision,
       (sign * ab.abandoned::int)::bigint,
       (sign * (ab.abandoned AND ab.short)::int)::bigint,
       (sign * (sl.offered AND a.mine AND j.wait_seconds <= sla)::int)::bigint,
       (sign * sl.offered::int)::bigint
FROM unnest(array_append(j.user_ids, '')) AS u(user_id)
CROSS JOIN LATERAL (
    SELECT j.direction <> 'out' AND j.outcome = 'answered' AND (u.user_id = '' OR j.answered_user_id = u.user_id) AS mine,
           u.user_id = '' OR j.outcome <> 'answered' OR j.answered_user_id = u.user_id AS could
) a
CROSS JOIN LATERAL (
    SELECT j.direction <> 'out' AND j.outcome = 'missed' AND j.hangup_cause IN ('cancel', 'cancelled') AS abandoned,
           coalesce(j.wait_seconds, 0) < short AS short
) ab
CROSS JOIN LATERAL (
    SELECT j.direction <> 'out' AND j.outcome IN ('answered', 'missed', 'voicemail') AND j.wait_seconds IS NOT NULL
           AND NOT (ab.abandoned AND ab.short) AND a.could AS offered
) sl
WHERE j.day IS NOT NULL
$$;

-- journey_stats_key: what of a journey the stats read; a change that
-- leaves it alone adds no rows.
CREATE OR REPLACE FUNCTION journey_stats_key(j journey) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN concat_ws(E'\x1f', j.day, j.direction, j.outcome, array_to_string(j.user_ids, E'\x1e'),
                 j.answered_user_id, j.wait_seconds, j.hangup_cause, j.talk_seconds);

CREATE OR REPLACE FUNCTION journey_stats_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sla   double precision;
    short double precision;
BEGIN
    IF TG_OP = 'UPDATE' AND journey_stats_key(OLD) = journey_stats_key(NEW) THEN
        RETURN NULL;
    END IF;
    sla := callstate_setting_seconds('sla_seconds', 20);
    short := callstate_setting_seconds('short_abandon_seconds', 5);
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO journey_stats_part SELECT * FROM journey_stats_rows(OLD, -1, sla, short);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO journey_stats_part SELECT * FROM journey_stats_rows(NEW, 1, sla, short);
    END IF;
    RETURN NULL;
END
$$;

-- callstate_compact_journey_stats computes the days with changes again
-- from journey (see migration 016); with the thresholds of now.
CREATE OR REPLACE FUNCTION callstate_compact_journey_stats(max_days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    days  date[];
    sla   double precision := callstate_setting_seconds('sla_seconds', 20);
    short double precision := callstate_setting_seconds('short_abandon_seconds', 5);
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('callstate journey stats compaction', 0)) THEN
        RETURN -1;
    END IF;
    days := ARRAY(SELECT DISTINCT p.day FROM journey_stats_part p WHERE NOT p.base ORDER BY 1 DESC LIMIT max_days);
    IF cardinality(days) = 0 THEN
        RETURN 0;
    END IF;
    DELETE FROM journey_stats_part p WHERE p.day = ANY (days);
    INSERT INTO journey_stats_part
    SELECT r.day, r.user_id, true, sum(r.calls_in), sum(r.calls_out), sum(r.answered), sum(r.missed),
           sum(r.voicemail), sum(r.ratio_base), sum(r.answer_count), sum(r.answer_sum), max(r.answer_max),
           sum(r.talk_seconds), sum(r.abandoned), sum(r.short_abandoned), sum(r.sl_answered), sum(r.sl_offered)
    FROM journey j CROSS JOIN LATERAL journey_stats_rows(j, 1, sla, short) r
    WHERE j.day = ANY (days)
    GROUP BY r.day, r.user_id;
    RETURN cardinality(days);
END
$$;

-- callstate_rebuild_journey_stats computes every day's stats again, for
-- thresholds that changed (callstate at start) and below for the new
-- columns and answer ratios. Returns the rows it wrote.
CREATE FUNCTION callstate_rebuild_journey_stats() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    sla   double precision := callstate_setting_seconds('sla_seconds', 20);
    short double precision := callstate_setting_seconds('short_abandon_seconds', 5);
    done  integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('callstate journey stats compaction', 0));
    LOCK TABLE journey_stats_part IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM journey_stats_part;
    INSERT INTO journey_stats_part
    SELECT r.day, r.user_id, true, sum(r.calls_in), sum(r.calls_out), sum(r.answered), sum(r.missed),
           sum(r.voicemail), sum(r.ratio_base), sum(r.answer_count), sum(r.answer_sum), max(r.answer_max),
           sum(r.talk_seconds), sum(r.abandoned), sum(r.short_abandoned), sum(r.sl_answered), sum(r.sl_offered)
    FROM journey j CROSS JOIN LATERAL journey_stats_rows(j, 1, sla, short) r
    GROUP BY r.day, r.user_id;
    GET DIAGNOSTICS done = ROW_COUNT;
    RETURN done;
END
$$;

SELECT callstate_rebuild_journey_stats();

-- journey_stats_day: the same columns as before, and after them the
-- abandons and the service level (sl_answered / sl_offered, NULL when
-- nothing was offered).
CREATE OR REPLACE VIEW journey_stats_day AS
SELECT p.day,
       p.user_id,
       sum(p.calls_in)::bigint AS calls_in,
       sum(p.calls_out)::bigint AS calls_out,
       sum(p.answered)::bigint AS answered,
       sum(p.missed)::bigint AS missed,
       sum(p.voicemail)::bigint AS voicemail,
       sum(p.answered)::double precision / nullif(sum(p.ratio_base), 0) AS answer_ratio,
       sum(p.answer_sum) / nullif(sum(p.answer_count), 0) AS mean_answer_seconds,
       CASE WHEN sum(p.answer_count) > 0 THEN max(p.answer_max) END AS max_answer_seconds,
       sum(p.talk_seconds)::double precision AS talk_seconds,
       sum(p.abandoned)::bigint AS abandoned,
       sum(p.short_abandoned)::bigint AS short_abandoned,
       sum(p.sl_answered)::double precision / nullif(sum(p.sl_offered), 0) AS service_level,
       sum(p.sl_answered)::bigint AS sl_answered,
       sum(p.sl_offered)::bigint AS sl_offered
FROM journey_stats_part p
GROUP BY p.day, p.user_id
HAVING sum(p.calls_in) <> 0 OR sum(p.calls_out) <> 0;

COMMENT ON VIEW journey_stats_day IS 'Per day (callstate_setting time_zone) and user ('''' = team): calls in and out, answered, missed, voicemail, answer ratio (of the calls the user could have answered), time to answer, talk time, abandons, service level (callstate_setting sla_seconds, short_abandon_seconds). Kept in journey_stats_part.';
