-- The day stats' base rows were summed by the same query in two functions,
-- callstate_compact_journey_stats (the days with changes, every few
-- seconds) and callstate_rebuild_journey_stats (every day, after a change
-- of the SLA settings); callstate_journey_stats_base is that query, once.

-- callstate_journey_stats_base returns the base rows of the stats of the
-- journeys of days: one row a day and user, the sums of journey_stats_rows
-- with the SLA and the short-abandon time given.
CREATE FUNCTION callstate_journey_stats_base(days date[], sla double precision, short double precision)
RETURNS SETOF journey_stats_part
LANGUAGE sql STABLE AS $$
SELECT r.day, r.user_id, true, sum(r.calls_in), sum(r.calls_out), sum(r.answered), sum(r.missed),
       sum(r.voicemail), sum(r.ratio_base), sum(r.answer_count), sum(r.answer_sum), max(r.answer_max),
       sum(r.talk_seconds), sum(r.abandoned), sum(r.short_abandoned), sum(r.sl_answered), sum(r.sl_offered)
FROM journey j CROSS JOIN LATERAL journey_stats_rows(j, 1, sla, short) r
WHERE j.day = ANY (days)
GROUP BY r.day, r.user_id
$$;

-- callstate_compact_journey_stats computes the days with changes again
-- (the latest max_days of them) into one base row a day and user, under
-- the compaction lock; -1 when another instance holds it.
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
    INSERT INTO journey_stats_part SELECT * FROM callstate_journey_stats_base(days, sla, short);
    RETURN cardinality(days);
END
$$;

-- callstate_rebuild_journey_stats computes every day's stats again, for
-- thresholds that changed (callstate at start). Returns the rows it wrote.
CREATE OR REPLACE FUNCTION callstate_rebuild_journey_stats() RETURNS integer
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
    SELECT * FROM callstate_journey_stats_base(ARRAY(SELECT DISTINCT day FROM journey WHERE day IS NOT NULL), sla, short);
    GET DIAGNOSTICS done = ROW_COUNT;
    RETURN done;
END
$$;
