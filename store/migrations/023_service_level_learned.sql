-- Calls learned only from sipgate's history (call_state.learned: their
-- webhooks never came) have no wait anyone saw: a journey all of whose
-- legs are learned is left out of the service level (sl_offered,
-- sl_answered). journey_stats_rows reads the journey's legs for it; when
-- a journey's legs change under it without its stats key changing, the
-- next compaction of its day computes the day again from the journeys.

CREATE OR REPLACE FUNCTION journey_stats_rows(j journey, sign integer, sla double precision, short double precision) RETURNS TABLE (
    day date, user_id text, base boolean, calls_in bigint, calls_out bigint, answered bigint, missed bigint,
    voicemail bigint, ratio_base bigint, answer_count bigint, answer_sum double precision,
    answer_max double precision, talk_seconds double precision,
    abandoned bigint, short_abandoned bigint, sl_answered bigint, sl_offered bigint)
LANGUAGE sql STABLE AS $$
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
FROM (SELECT j.direction <> 'out' AND j.outcome IN ('answered', 'missed', 'voicemail')
             AND NOT EXISTS (SELECT 1 FROM call_state c WHERE c.journey_id = j.journey_id AND NOT c.learned) AS learned) l
CROSS JOIN unnest(array_append(j.user_ids, '')) AS u(user_id)
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
           AND NOT (ab.abandoned AND ab.short) AND a.could AND NOT l.learned AS offered
) sl
WHERE j.day IS NOT NULL
$$;

SELECT callstate_rebuild_journey_stats();
