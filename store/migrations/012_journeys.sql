-- Journeys: the legs of one call, as a person counts it, with one outcome.
-- The rules are callstate.Journey's (journey.go); this file implements them.
--
-- A leg is a call_state row. Its journey_id is computed from the row's own
-- merged columns, so it is as order-independent as they are:
--   sipgate: origCallId when there is one, else callId. sipgate gives the
--            legs it starts for a forward or the voicemail the first leg's
--            callId as their origCallId (the first leg carries its own).
--   sip:     'sip:' || the SIP Call-ID, so that the dialogs of one call on
--            several watched extensions join (same Call-ID: a forking proxy,
--            not a B2BUA, which gives each leg its own); without a Call-ID,
--            'sip:' || the row's key.
--
-- journey holds one row per journey, computed from all its legs by
-- callstate_refresh_journeys (a pure function of the legs, so recomputing
-- is idempotent and the order of writes does not matter). The store calls
-- it in the transaction of every write to call_state (events, recompute,
-- retention, erase); journeys are serialised by an advisory lock per
-- journey taken in a fixed order, so that two transactions writing legs of
-- one journey at once cannot leave it computed without one of them.

ALTER TABLE call_state ADD COLUMN journey_id text GENERATED ALWAYS AS (
    CASE WHEN source = 'sip' THEN 'sip:' || CASE WHEN call_id <> '' THEN call_id ELSE call_key END
         WHEN orig_call_id <> '' THEN orig_call_id
         WHEN call_id <> '' THEN call_id
         ELSE call_key END) STORED;

COMMENT ON COLUMN call_state.journey_id IS 'Journey the call is a leg of: sipgate origCallId (else callId); sip: ''sip:'' || Call-ID.';

CREATE INDEX call_state_journey_idx ON call_state (journey_id);

-- Settings the views read. time_zone cuts days in journey.day and
-- journey_stats_day; the service writes it at start (STATS_TIME_ZONE).
CREATE TABLE callstate_setting (
    name  text PRIMARY KEY,
    value text NOT NULL
);

COMMENT ON TABLE callstate_setting IS 'Settings the views read; time_zone (IANA name) cuts the days of journey_stats_day. Written by callstate at start.';

INSERT INTO callstate_setting (name, value) VALUES ('time_zone', 'UTC');

CREATE FUNCTION callstate_time_zone() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce((SELECT value FROM callstate_setting WHERE name = 'time_zone'), 'UTC');

-- callstate_union: the union of text arrays, for aggregating the users of
-- a journey's legs.
CREATE AGGREGATE callstate_union(text[]) (SFUNC = array_cat, STYPE = text[], INITCOND = '{}');

-- call_leg: every call_state row with what the journey rules read of it.
--   voicemail: a sipgate leg offered to user[]=voicemail alone.
--   person:    answered by a person: not a voicemail leg, and for an
--              incoming sipgate leg an answer naming a user or an
--              answering number. An answer with neither is voicemail or a
--              queue picking up (sipgate.io issue 70): the journey counts
--              as voicemail when no person answered.
--   failure:   the leg ended for a technical reason (sipgate congestion,
--              or the timeout of a call whose hangup never came; SIP error
--              or a PBX restart).
CREATE VIEW call_leg AS
SELECT c.*,
       v.voicemail,
       c.answered_at IS NOT NULL AND NOT v.voicemail
           AND (c.source = 'sip' OR c.direction = 'out' OR c.answered_by <> '' OR c.answering_number <> '') AS person,
       CASE WHEN c.answered_by <> '' THEN c.answered_by
            WHEN c.answering_number <> '' THEN c.answering_number
            ELSE c.extension END AS leg_answered_by,
       CASE WHEN c.hangup_cause = '' THEN false
            WHEN c.source = 'sipgate' THEN c.hangup_cause IN ('congestion', 'timeout')
            ELSE c.hangup_cause IN ('error', 'pbx-restart') END AS failure
FROM call_state c
CROSS JOIN LATERAL (SELECT c.source = 'sipgate' AND c.users = '{voicemail}'::text[] AS voicemail) v;

COMMENT ON VIEW call_leg IS 'call_state with what the journey rules read: voicemail leg, answered by a person, who, failure cause.';

-- journey_from_legs computes journeys from their legs (callstate.Journey).
CREATE VIEW journey_from_legs AS
WITH j AS (
    SELECT l.journey_id,
           min(l.source) AS source,
           CASE WHEN bool_or(l.direction = 'in') THEN 'in'
                WHEN bool_or(l.direction = 'out') THEN 'out'
                ELSE '' END AS direction,
           coalesce((array_agg(l.from_party ORDER BY l.started_at, l.source, l.call_key COLLATE "C")
                     FILTER (WHERE l.from_party <> ''))[1], '') AS from_party,
           coalesce((array_agg(l.to_party ORDER BY l.started_at, l.source, l.call_key COLLATE "C")
                     FILTER (WHERE l.to_party <> ''))[1], '') AS to_party,
           min(l.started_at) AS started_at,
           min(l.answered_at) FILTER (WHERE l.person) AS answered_at,
           min(l.answered_at) FILTER (WHERE NOT l.person) AS voicemail_at,
           bool_or(l.state <> 'ended') AS active,
           max(l.ended_at) AS last_end,
           (array_agg(l.hangup_cause ORDER BY l.ended_at DESC NULLS LAST, l.source DESC, l.call_key COLLATE "C" DESC))[1] AS last_cause,
           (array_agg(l.failure ORDER BY l.ended_at DESC NULLS LAST, l.source DESC, l.call_key COLLATE "C" DESC))[1] AS last_failed,
           coalesce((array_agg(l.leg_answered_by ORDER BY l.answered_at, l.source, l.call_key COLLATE "C")
                     FILTER (WHERE l.person))[1], '') AS answered_by,
           coalesce((array_agg(l.extension ORDER BY l.answered_at, l.source, l.call_key COLLATE "C")
                     FILTER (WHERE l.person))[1], '') AS answered_user_id,
           ARRAY(SELECT DISTINCT u COLLATE "C" FROM unnest(callstate_union(l.user_ids || l.extension)) AS u
                 WHERE u <> '' AND u <> 'voicemail' ORDER BY 1) AS user_ids,
           count(*)::integer AS legs,
           max(l.updated_at) AS updated_at
    FROM call_leg l
    GROUP BY l.journey_id
), o AS (
    SELECT j.*,
           CASE WHEN j.active THEN 'active'
                WHEN j.answered_at IS NOT NULL THEN 'answered'
                WHEN j.voicemail_at IS NOT NULL THEN 'voicemail'
                WHEN j.last_failed THEN 'failed'
                WHEN j.direction = 'out' THEN 'outgoing-unreached'
                WHEN j.last_cause = 'forwarded' THEN 'forwarded'
                WHEN j.last_cause = 'notFound' THEN 'failed'
                ELSE 'missed' END AS outcome
    FROM j
)
SELECT o.journey_id, o.source, o.direction, o.from_party, o.to_party,
       o.started_at, o.answered_at,
       CASE WHEN o.active THEN NULL ELSE o.last_end END AS ended_at,
       o.outcome, o.answered_by, o.answered_user_id,
       CASE WHEN o.active AND o.answered_at IS NULL THEN NULL
            ELSE extract(epoch FROM coalesce(o.answered_at, o.voicemail_at, o.last_end) - o.started_at)::double precision END AS wait_seconds,
       CASE WHEN o.outcome = 'answered' THEN extract(epoch FROM o.last_end - o.answered_at)::double precision END AS talk_seconds,
       o.user_ids, o.legs, o.last_cause AS hangup_cause, o.voicemail_at, o.updated_at,
       (o.started_at AT TIME ZONE callstate_time_zone())::date AS day
FROM o;

COMMENT ON VIEW journey_from_legs IS 'Journeys computed from their legs now; journey keeps them. Slow over all rows: filter by journey_id.';

CREATE TABLE journey (
    journey_id       text PRIMARY KEY,
    source           text NOT NULL,
    direction        text NOT NULL,
    from_party       text NOT NULL,
    to_party         text NOT NULL,
    started_at       timestamptz,
    answered_at      timestamptz,
    ended_at         timestamptz,
    outcome          text NOT NULL CHECK (outcome IN ('active', 'answered', 'voicemail', 'missed', 'forwarded', 'outgoing-unreached', 'failed')),
    answered_by      text NOT NULL,
    answered_user_id text NOT NULL,
    wait_seconds     double precision,
    talk_seconds     double precision,
    user_ids         text[] NOT NULL,
    legs             integer NOT NULL,
    hangup_cause     text NOT NULL,
    voicemail_at     timestamptz,
    updated_at       timestamptz NOT NULL,
    day              date
);

COMMENT ON TABLE journey IS 'One row per call journey (the legs of one call), kept from call_state by callstate_refresh_journeys; read call_journey.';
COMMENT ON COLUMN journey.day IS 'Day the journey started, in callstate_setting time_zone.';
COMMENT ON COLUMN journey.answered_user_id IS 'sipgate user id or SIP extension of the leg a person answered.';

CREATE INDEX journey_day_idx ON journey (day);
CREATE INDEX journey_started_idx ON journey (started_at, journey_id);
CREATE INDEX journey_ended_idx ON journey (ended_at, journey_id) WHERE ended_at IS NOT NULL;
CREATE INDEX journey_missed_idx ON journey (started_at) WHERE outcome = 'missed';
CREATE INDEX journey_callback_out_idx ON journey (to_party, started_at) WHERE direction = 'out' AND outcome = 'answered';
CREATE INDEX journey_callback_in_idx ON journey (from_party, started_at) WHERE direction = 'in' AND outcome = 'answered';
CREATE INDEX journey_active_idx ON journey (started_at) WHERE outcome = 'active';

-- callstate_refresh_journeys recomputes the given journeys from their
-- legs: a journey without legs is deleted. Each journey is locked
-- (advisory, to the end of the transaction) in byte order of its id before
-- anything is read, and the legs are read by a later statement, so they
-- include every leg committed by a transaction that held the lock before.
CREATE FUNCTION callstate_refresh_journeys(ids text[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    jid  text;
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
           f.hangup_cause, f.voicemail_at, f.updated_at, f.day
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

-- callstate_refresh_calls refreshes the journeys of the given calls
-- (source and key, element by element), and those they may have been
-- counted in before their journey id was known (their own call id).
CREATE FUNCTION callstate_refresh_calls(sources text[], keys text[]) RETURNS integer
LANGUAGE sql AS $$
SELECT callstate_refresh_journeys(ARRAY(
    SELECT x FROM call_state c
    JOIN unnest(sources, keys) AS k(source, call_key) ON c.source = k.source AND c.call_key = k.call_key
    CROSS JOIN LATERAL (VALUES (c.journey_id), (c.call_id), (c.call_key), ('sip:' || c.call_key)) AS v(x)))
$$;

-- Journeys of the calls already there.
INSERT INTO journey (journey_id, source, direction, from_party, to_party, started_at, answered_at, ended_at,
                     outcome, answered_by, answered_user_id, wait_seconds, talk_seconds, user_ids, legs,
                     hangup_cause, voicemail_at, updated_at, day)
SELECT journey_id, source, direction, from_party, to_party, started_at, answered_at, ended_at,
       outcome, answered_by, answered_user_id, wait_seconds, talk_seconds, user_ids, legs,
       hangup_cause, voicemail_at, updated_at, day
FROM journey_from_legs;

-- call_journey: one row per journey (the contract of dashboards).
CREATE VIEW call_journey AS
SELECT journey_id, direction, from_party, to_party, started_at, answered_at, ended_at, outcome,
       answered_by, wait_seconds, talk_seconds, user_ids,
       answered_user_id, source, legs, hangup_cause, day, updated_at
FROM journey;

COMMENT ON VIEW call_journey IS 'One row per call as a person counts it (legs of forwards and voicemail joined) with its outcome: active, answered, voicemail, missed, forwarded, outgoing-unreached, failed.';

-- missed_call: missed journeys, whom to call back, and whether someone
-- did: a later outgoing journey to the number, or a later incoming one
-- from it, answered by a person.
CREATE VIEW missed_call AS
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
        (SELECT min(x.answered_at) FROM journey x
         WHERE x.direction = 'out' AND x.outcome = 'answered' AND x.to_party = m.from_party AND x.started_at > m.started_at),
        (SELECT min(x.answered_at) FROM journey x
         WHERE x.direction = 'in' AND x.outcome = 'answered' AND x.from_party = m.from_party AND x.started_at > m.started_at)
    ) AS at
) cb ON true
WHERE m.outcome = 'missed';

COMMENT ON VIEW missed_call IS 'Missed incoming calls; called_back once a later call to or from the number was answered.';

-- journey_stats_day: per day (callstate_setting time_zone) and user (''
-- for the whole team): journeys in and out, the outcomes of the incoming
-- ones, the answer ratio (answered / answered, missed or voicemail), the
-- time to answer, and talk time. A user counts a journey offered to them
-- (user_ids) and the answers and talk that were theirs.
CREATE VIEW journey_stats_day AS
SELECT j.day,
       u.user_id,
       count(*) FILTER (WHERE j.direction <> 'out') AS calls_in,
       count(*) FILTER (WHERE j.direction = 'out') AS calls_out,
       count(*) FILTER (WHERE j.direction <> 'out' AND j.outcome = 'answered' AND (u.user_id = '' OR j.answered_user_id = u.user_id)) AS answered,
       count(*) FILTER (WHERE j.outcome = 'missed') AS missed,
       count(*) FILTER (WHERE j.outcome = 'voicemail') AS voicemail,
       (count(*) FILTER (WHERE j.direction <> 'out' AND j.outcome = 'answered' AND (u.user_id = '' OR j.answered_user_id = u.user_id)))::double precision
           / nullif(count(*) FILTER (WHERE j.direction <> 'out' AND j.outcome IN ('answered', 'missed', 'voicemail')), 0) AS answer_ratio,
       avg(j.wait_seconds) FILTER (WHERE j.direction <> 'out' AND j.outcome = 'answered' AND (u.user_id = '' OR j.answered_user_id = u.user_id)) AS mean_answer_seconds,
       max(j.wait_seconds) FILTER (WHERE j.direction <> 'out' AND j.outcome = 'answered' AND (u.user_id = '' OR j.answered_user_id = u.user_id)) AS max_answer_seconds,
       coalesce(sum(j.talk_seconds) FILTER (WHERE u.user_id = '' OR j.answered_user_id = u.user_id
                                                  OR (j.direction = 'out' AND u.user_id = ANY (j.user_ids))), 0)::double precision AS talk_seconds
FROM journey j
CROSS JOIN LATERAL unnest(array_append(j.user_ids, '')) AS u(user_id)
WHERE j.day IS NOT NULL
GROUP BY j.day, u.user_id;

COMMENT ON VIEW journey_stats_day IS 'Per day (callstate_setting time_zone) and user ('''' = team): calls in and out, answered, missed, voicemail, answer ratio, time to answer, talk time.';
