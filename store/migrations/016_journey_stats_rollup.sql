-- journey_stats_day aggregated every journey of the days asked for: a
-- 30-day panel over 1,000,000 calls read some 300,000 journeys and took
-- seconds (docs/benchmarks.md). Now each day's stats are kept in
-- journey_stats_part, so that a panel reads a few rows per day and user:
--
--   * a trigger on journey adds, for every change of a journey that
--     changes what it counts, a row taking its old contribution away and
--     one adding its new one (one per user it concerns and one for the
--     team): rows are only ever inserted, so writers never wait for each
--     other on a day's row;
--   * callstate_compact_journey_stats, which callstate runs every few
--     seconds, computes the days those rows touched again from journey
--     and replaces their rows by one base row per day and user.
--
-- Sums are exact at any time. max_answer_seconds is exact after the
-- compaction; between two, a journey whose time to answer went down (an
-- earlier event arriving late) may still count with its former value.

CREATE TABLE journey_stats_part (
    day          date             NOT NULL,
    user_id      text             NOT NULL,
    base         boolean          NOT NULL DEFAULT false,
    calls_in     bigint           NOT NULL,
    calls_out    bigint           NOT NULL,
    answered     bigint           NOT NULL,
    missed       bigint           NOT NULL,
    voicemail    bigint           NOT NULL,
    ratio_base   bigint           NOT NULL,
    answer_count bigint           NOT NULL,
    answer_sum   double precision NOT NULL,
    answer_max   double precision,
    talk_seconds double precision NOT NULL
);

COMMENT ON TABLE journey_stats_part IS 'Parts of journey_stats_day: base rows (compacted, one per day and user) and the changes since; read journey_stats_day.';

CREATE INDEX journey_stats_part_day_idx ON journey_stats_part (day, user_id);
CREATE INDEX journey_stats_part_changes_idx ON journey_stats_part (day) WHERE NOT base;

-- journey_stats_rows: what journey j counts in the stats, times sign, one
-- row per user it concerns and one for the team (user_id '').
CREATE FUNCTION journey_stats_rows(j journey, sign integer) RETURNS TABLE (
    day date, user_id text, base boolean, calls_in bigint, calls_out bigint, answered bigint, missed bigint,
    voicemail bigint, ratio_base bigint, answer_count bigint, answer_sum double precision,
    answer_max double precision, talk_seconds double precision)
LANGUAGE sql IMMUTABLE AS $$
SELECT j.day, u.user_id, false,
       (sign * (j.direction <> 'out')::int)::bigint,
       (sign * (j.direction = 'out')::int)::bigint,
       (sign * a.mine::int)::bigint,
       (sign * (j.outcome = 'missed')::int)::bigint,
       (sign * (j.outcome = 'voicemail')::int)::bigint,
       (sign * (j.direction <> 'out' AND j.outcome IN ('answered', 'missed', 'voicemail'))::int)::bigint,
       (sign * a.mine::int)::bigint,
       CASE WHEN a.mine THEN sign * coalesce(j.wait_seconds, 0) ELSE 0 END::double precision,
       CASE WHEN a.mine AND sign > 0 THEN j.wait_seconds END::double precision,
       CASE WHEN u.user_id = '' OR j.answered_user_id = u.user_id OR j.direction = 'out'
            THEN sign * coalesce(j.talk_seconds, 0) ELSE 0 END::double precision
FROM unnest(array_append(j.user_ids, '')) AS u(user_id)
CROSS JOIN LATERAL (
    SELECT j.direction <> 'out' AND j.outcome = 'answered' AND (u.user_id = '' OR j.answered_user_id = u.user_id) AS mine
) a
WHERE j.day IS NOT NULL
$$;

-- journey_stats_key: what of a journey the stats read; a change that
-- leaves it alone adds no rows.
CREATE FUNCTION journey_stats_key(j journey) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN concat_ws(E'\x1f', j.day, j.direction, j.outcome, array_to_string(j.user_ids, E'\x1e'),
                 CASE WHEN j.outcome = 'answered' THEN j.answered_user_id || E'\x1e' || j.wait_seconds END,
                 j.talk_seconds);

CREATE FUNCTION journey_stats_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND journey_stats_key(OLD) = journey_stats_key(NEW) THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO journey_stats_part SELECT * FROM journey_stats_rows(OLD, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO journey_stats_part SELECT * FROM journey_stats_rows(NEW, 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER journey_stats_changed AFTER INSERT OR UPDATE OR DELETE ON journey
    FOR EACH ROW EXECUTE FUNCTION journey_stats_changed();

-- callstate_compact_journey_stats computes the days with changes again
-- from journey, one base row per day and user, in place of their rows. Run
-- it in a REPEATABLE READ transaction: it then deletes only the rows its
-- snapshot sees, which its computation includes, and leaves those that
-- transactions committing meanwhile add. Returns the days it compacted, or
-- -1 when another transaction is compacting.
CREATE FUNCTION callstate_compact_journey_stats(max_days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    days date[];
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
           sum(r.talk_seconds)
    FROM journey j CROSS JOIN LATERAL journey_stats_rows(j, 1) r
    WHERE j.day = ANY (days)
    GROUP BY r.day, r.user_id;
    RETURN cardinality(days);
END
$$;

-- The days so far, as base rows.
INSERT INTO journey_stats_part
SELECT r.day, r.user_id, true, sum(r.calls_in), sum(r.calls_out), sum(r.answered), sum(r.missed),
       sum(r.voicemail), sum(r.ratio_base), sum(r.answer_count), sum(r.answer_sum), max(r.answer_max),
       sum(r.talk_seconds)
FROM journey j CROSS JOIN LATERAL journey_stats_rows(j, 1) r
GROUP BY r.day, r.user_id;

-- The same columns as before; a day and user whose journeys all went (to
-- another day, or deleted) is left out.
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
       sum(p.talk_seconds)::double precision AS talk_seconds
FROM journey_stats_part p
GROUP BY p.day, p.user_id
HAVING sum(p.calls_in) <> 0 OR sum(p.calls_out) <> 0;

COMMENT ON VIEW journey_stats_day IS 'Per day (callstate_setting time_zone) and user ('''' = team): calls in and out, answered, missed, voicemail, answer ratio, time to answer, talk time. Kept in journey_stats_part.';

-- missed_call took the earliest answer among every later call to or from
-- the number (4 s for the missed calls of 30 days at 1,000,000 calls); it
-- now probes for the first later answered journey each way, by start, and
-- takes its answer: one index lookup each.
CREATE OR REPLACE VIEW missed_call AS
SELECT m.journey_id,
       m.from_party AS number,
       m.started_at,
       m.ended_at,
       cb.at IS NOT NULL AS called_back,
       cb.at AS called_back_at,
       m.to_party,
       m.user_ids,
       m.day
FROM journey m
LEFT JOIN LATERAL (
    SELECT LEAST(
        (SELECT x.answered_at FROM journey x
         WHERE x.direction = 'out' AND x.outcome = 'answered' AND x.to_party = m.from_party AND x.started_at > m.started_at
         ORDER BY x.started_at LIMIT 1),
        (SELECT x.answered_at FROM journey x
         WHERE x.direction = 'in' AND x.outcome = 'answered' AND x.from_party = m.from_party AND x.started_at > m.started_at
         ORDER BY x.started_at LIMIT 1)
    ) AS at
) cb ON true
WHERE m.outcome = 'missed';

COMMENT ON VIEW missed_call IS 'Missed incoming calls; called_back once a later call to or from the number was answered (called_back_at: the answer of the first such call each way, the earlier of the two).';

-- The journeys' refresh runs in every write's transaction; it spent most
-- of its time planning: a SQL function's statement is planned at every
-- call, where PL/pgSQL keeps its plans (the writers' connections use
-- generic ones). The same functions, in PL/pgSQL, and the day computed
-- with the time zone read once per refresh.
CREATE OR REPLACE FUNCTION callstate_time_zone() RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN coalesce((SELECT value FROM callstate_setting WHERE name = 'time_zone'), 'UTC');
END
$$;

CREATE OR REPLACE FUNCTION callstate_refresh_calls(sources text[], keys text[]) RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    RETURN callstate_refresh_journeys(ARRAY(
        SELECT x FROM call_state c
        JOIN unnest(sources, keys) AS k(source, call_key) ON c.source = k.source AND c.call_key = k.call_key
        CROSS JOIN LATERAL (VALUES (c.journey_id), (c.call_id), (c.call_key), ('sip:' || c.call_key)) AS v(x)));
END
$$;

CREATE OR REPLACE FUNCTION callstate_refresh_journeys(ids text[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    jid  text;
    tz   text := callstate_time_zone();
    done integer;
BEGIN
    ids := ARRAY(SELECT DISTINCT x COLLATE "C" FROM unnest(ids) AS x WHERE x IS NOT NULL AND x <> '' ORDER BY 1);
    FOREACH jid IN ARRAY ids LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('callstate journey ' || jid, 0));
    END LOOP;
    DELETE FROM journey j
    WHERE j.journey_id = ANY (ids)
      AND NOT EXISTS (SELECT 1 FROM call_state c WHERE c.journey_id = j.journey_id);
    INSERT INTO journey AS j (journey_id, source, direction, from_party, to_party, started_at, answered_at, ended_at,
                              outcome, answered_by, answered_user_id, wait_seconds, talk_seconds, user_ids, legs,
                              hangup_cause, voicemail_at, updated_at, day)
    SELECT f.journey_id, f.source, f.direction, f.from_party, f.to_party, f.started_at, f.answered_at, f.ended_at,
           f.outcome, f.answered_by, f.answered_user_id, f.wait_seconds, f.talk_seconds, f.user_ids, f.legs,
           f.hangup_cause, f.voicemail_at, f.updated_at, (f.started_at AT TIME ZONE tz)::date
    FROM journey_from_legs f
    WHERE f.journey_id = ANY (ids)
    ON CONFLICT (journey_id) DO UPDATE SET
        source = EXCLUDED.source, direction = EXCLUDED.direction, from_party = EXCLUDED.from_party,
        to_party = EXCLUDED.to_party, started_at = EXCLUDED.started_at, answered_at = EXCLUDED.answered_at,
        ended_at = EXCLUDED.ended_at, outcome = EXCLUDED.outcome, answered_by = EXCLUDED.answered_by,
        answered_user_id = EXCLUDED.answered_user_id, wait_seconds = EXCLUDED.wait_seconds,
        talk_seconds = EXCLUDED.talk_seconds, user_ids = EXCLUDED.user_ids, legs = EXCLUDED.legs,
        hangup_cause = EXCLUDED.hangup_cause, voicemail_at = EXCLUDED.voicemail_at,
        updated_at = EXCLUDED.updated_at, day = EXCLUDED.day
    WHERE (j.*) IS DISTINCT FROM (EXCLUDED.*);
    GET DIAGNOSTICS done = ROW_COUNT;
    RETURN done;
END
$$;
