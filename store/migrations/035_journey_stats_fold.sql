-- Compacting the day stats folds the changes into the base rows instead of
-- computing their days again from the journeys.
--
-- callstate_compact_journey_stats ran every 5 s and computed every day with
-- changes again from all of its journeys: today's, whole, each time. That
-- is about 130 µs a journey (journey_stats_rows), so a day of 30,000
-- journeys cost PostgreSQL some 4 s every 5 s by the evening.
--
-- The sums fold: a day and user's base row plus its change rows (each
-- journey's change is its new rows, +1, and its former rows, -1). The
-- longest time to answer does not: a change row that takes a journey back
-- (-1) does not say its wait (answer_max is NULL there), but its
-- answer_sum is minus that wait. Where a wait taken back reaches the
-- longest of the base and the new rows, that longest may be gone, and the
-- day and user are computed again from the journeys, exactly as before;
-- otherwise the longest is the greater of the base's and the new rows'.
CREATE OR REPLACE FUNCTION callstate_compact_journey_stats(max_days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    days        date[];
    again_days  date[];
    again_users text[];
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
    WITH gone AS (
        DELETE FROM journey_stats_part p WHERE p.day = ANY (days) RETURNING p.*
    ), folded AS MATERIALIZED (
        SELECT g.day, g.user_id, sum(g.calls_in)::bigint AS calls_in, sum(g.calls_out)::bigint AS calls_out,
               sum(g.answered)::bigint AS answered, sum(g.missed)::bigint AS missed, sum(g.voicemail)::bigint AS voicemail,
               sum(g.ratio_base)::bigint AS ratio_base, sum(g.answer_count)::bigint AS answer_count,
               sum(g.answer_sum) AS answer_sum, max(g.answer_max) AS answer_max, sum(g.talk_seconds) AS talk_seconds,
               sum(g.abandoned)::bigint AS abandoned, sum(g.short_abandoned)::bigint AS short_abandoned,
               sum(g.sl_answered)::bigint AS sl_answered, sum(g.sl_offered)::bigint AS sl_offered,
               coalesce(max(-g.answer_sum) FILTER (WHERE NOT g.base AND g.answer_count < 0) >= max(g.answer_max), false) AS exact
        FROM gone g
        GROUP BY g.day, g.user_id
    ), kept AS (
        INSERT INTO journey_stats_part
        SELECT f.day, f.user_id, true, f.calls_in, f.calls_out, f.answered, f.missed, f.voicemail, f.ratio_base,
               f.answer_count, f.answer_sum, f.answer_max, f.talk_seconds, f.abandoned, f.short_abandoned,
               f.sl_answered, f.sl_offered
        FROM folded f
        WHERE NOT f.exact AND (f.calls_in <> 0 OR f.calls_out <> 0)
    )
    SELECT coalesce(array_agg(f.day), '{}'), coalesce(array_agg(f.user_id), '{}') INTO again_days, again_users
    FROM folded f WHERE f.exact;
    -- The same snapshot (CompactJourneyStats runs it in a repeatable read
    -- transaction): the journeys are those whose changes were folded.
    IF cardinality(again_days) > 0 THEN
        INSERT INTO journey_stats_part
        SELECT b.* FROM callstate_journey_stats_base(ARRAY(SELECT DISTINCT unnest(again_days)), sla, short) b
        JOIN unnest(again_days, again_users) AS a(day, user_id) ON a.day = b.day AND a.user_id = b.user_id;
    END IF;
    RETURN cardinality(days);
END
$$;
