-- callstate's schema as the migrations in store/migrations make it, dumped from PostgreSQL 15.
-- Generated: do not edit. `make schema` writes it again; TestSchemaFile fails when it is stale.
-- Name: call_phase; Type: TYPE; Schema: public; Owner: -

CREATE TYPE public.call_phase AS ENUM (
    'unknown',
    'ringing',
    'answered',
    'ended'
);

-- Name: callstate_capped(timestamp with time zone, timestamp with time zone); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_capped(answer timestamp with time zone, ended timestamp with time zone) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN (answer IS NULL) THEN NULL::timestamp with time zone ELSE LEAST(answer, ended) END;

-- Name: callstate_compact_journey_stats(integer); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_compact_journey_stats(max_days integer) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

-- Name: callstate_dtmf(text[], bigint); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_dtmf(presses text[], window_us bigint) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN COALESCE((SELECT string_agg(w.digits, ''::text ORDER BY (w.key COLLATE "C")) AS string_agg FROM (SELECT s.key, s.digits, s.digest, s.t, lag(s.t) OVER (PARTITION BY s.digest ORDER BY (s.key COLLATE "C")) AS prev FROM (SELECT p.p AS key, (split_part(p.p, ':'::text, 1))::bigint AS t, split_part(p.p, ':'::text, 2) AS digest, split_part(p.p, ':'::text, 3) AS digits FROM unnest(callstate_dtmf.presses) p(p)) s) w WHERE ((w.prev IS NULL) OR (w.digest = ''::text) OR ((w.t - w.prev) >= callstate_dtmf.window_us))), ''::text);

-- Name: callstate_feed_assign(integer); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_feed_assign(max_rows integer) RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    last bigint;
    n    integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('callstate feed ids', 0));
    -- A statement after the lock: its snapshot sees every numbering
    -- committed before.
    SELECT head INTO last FROM call_feed_head FOR UPDATE;
    WITH taken AS (
        DELETE FROM call_feed_new WHERE seq IN (
            SELECT seq FROM call_feed_new ORDER BY seq LIMIT max_rows)
        RETURNING seq
    )
    INSERT INTO call_feed_id (id, seq)
    SELECT last + row_number() OVER (ORDER BY seq), seq FROM taken;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        UPDATE call_feed_head SET head = head + n;
    END IF;
    RETURN n;
END
$$;

-- Name: callstate_feed_call(); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_feed_call() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    types  text[] := '{}';
    ats    timestamptz[] := '{}';
    extras jsonb[] := '{}';
    k      text;
BEGIN
    IF TG_OP = 'UPDATE' AND
       (OLD.call_id, OLD.orig_call_id, OLD.extension, OLD.direction, OLD.from_party, OLD.to_party,
        OLD.users, OLD.user_ids, OLD.full_user_ids, OLD.answered_by, OLD.answering_number,
        OLD.diversion, OLD.xcid, OLD.state, OLD.on_hold, OLD.hangup_cause, OLD.dtmf_presses,
        OLD.started_at, OLD.answered_at, OLD.ended_at)
       IS NOT DISTINCT FROM
       (NEW.call_id, NEW.orig_call_id, NEW.extension, NEW.direction, NEW.from_party, NEW.to_party,
        NEW.users, NEW.user_ids, NEW.full_user_ids, NEW.answered_by, NEW.answering_number,
        NEW.diversion, NEW.xcid, NEW.state, NEW.on_hold, NEW.hangup_cause, NEW.dtmf_presses,
        NEW.started_at, NEW.answered_at, NEW.ended_at) THEN
        RETURN NULL; -- nothing a reader sees changed
    END IF;
    -- In this order: ringing, answered, held, each new press (by its key),
    -- ended; call.updated when none of them.
    IF TG_OP = 'INSERT' THEN
        types := array_append(types, 'call.ringing');
        ats := array_append(ats, NEW.started_at);
        extras := array_append(extras, NULL::jsonb);
    END IF;
    IF NEW.answered_at IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.answered_at IS NULL) THEN
        types := array_append(types, 'call.answered');
        ats := array_append(ats, NEW.answered_at);
        extras := array_append(extras, NULL::jsonb);
    END IF;
    IF NEW.state <> 'ended' AND (CASE WHEN TG_OP = 'INSERT' THEN NEW.on_hold ELSE OLD.on_hold <> NEW.on_hold END) THEN
        types := array_append(types, 'call.held');
        ats := array_append(ats, NEW.hold_at);
        extras := array_append(extras, NULL::jsonb);
    END IF;
    IF cardinality(NEW.dtmf_presses) > 0 AND
       (TG_OP = 'INSERT' OR NEW.dtmf_presses IS DISTINCT FROM OLD.dtmf_presses) THEN
        FOR k IN
            SELECT p.k FROM (
                SELECT unnest(NEW.dtmf_presses) AS k
                EXCEPT
                SELECT unnest(CASE WHEN TG_OP = 'INSERT' THEN '{}'::text[] ELSE OLD.dtmf_presses END)) p
            ORDER BY p.k
        LOOP
            types := array_append(types, 'call.dtmf');
            ats := array_append(ats, to_timestamp(split_part(k, ':', 1)::bigint / 1000000.0));
            extras := array_append(extras, jsonb_build_object('press', k));
        END LOOP;
    END IF;
    IF NEW.state = 'ended' AND (TG_OP = 'INSERT' OR OLD.state <> 'ended') THEN
        types := array_append(types, 'call.ended');
        ats := array_append(ats, NEW.ended_at);
        extras := array_append(extras, NULL::jsonb);
    END IF;
    IF cardinality(types) = 0 THEN
        types := '{call.updated}';
        ats := ARRAY[NEW.updated_at];
        extras := '{NULL}';
    END IF;
    WITH ins AS (
        INSERT INTO call_feed (type, at, journey_id, source, call_key, data, call_id, state, on_hold,
                               answered_at, ended_at, cause, answered_by, change_seq, updated_at)
        SELECT e.type, coalesce(e.at, NEW.updated_at), NEW.journey_id, NEW.source, NEW.call_key, e.extra,
               NEW.id, NEW.state, NEW.on_hold, NEW.answered_at, NEW.ended_at, NEW.hangup_cause,
               NEW.answered_by, NEW.change_seq, NEW.updated_at
        FROM unnest(types, ats, extras) WITH ORDINALITY AS e(type, at, extra, n)
        ORDER BY e.n
        RETURNING seq
    )
    INSERT INTO call_feed_new (seq) SELECT seq FROM ins;
    RETURN NULL;
END
$$;

-- Name: callstate_feed_journey(); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_feed_journey() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.outcome = NEW.outcome AND OLD.ended_at IS NOT DISTINCT FROM NEW.ended_at THEN
        RETURN NULL;
    END IF;
    WITH ins AS (
        INSERT INTO call_feed (type, at, journey_id, source, outcome, ended_at, updated_at)
        SELECT e.type, coalesce(e.at, NEW.updated_at), NEW.journey_id, NEW.source, NEW.outcome, NEW.ended_at,
               NEW.updated_at
        FROM (
            SELECT 1 AS ord, 'journey.ended' AS type, NEW.ended_at AS at
            WHERE NEW.outcome <> 'active' AND (TG_OP = 'INSERT' OR OLD.outcome = 'active')
            UNION ALL
            SELECT 2, 'call.missed', NEW.ended_at
            WHERE NEW.outcome = 'missed' AND (TG_OP = 'INSERT' OR OLD.outcome <> 'missed')
            UNION ALL
            SELECT 3, 'call.voicemail', coalesce(NEW.voicemail_at, NEW.ended_at)
            WHERE NEW.outcome = 'voicemail' AND (TG_OP = 'INSERT' OR OLD.outcome <> 'voicemail')
        ) e
        ORDER BY e.ord
        RETURNING seq
    )
    INSERT INTO call_feed_new (seq) SELECT seq FROM ins;
    RETURN NULL;
END
$$;

-- Name: callstate_feed_lamps(); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_feed_lamps() RETURNS integer
    LANGUAGE plpgsql
    AS $$
DECLARE
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('callstate feed lamps', 0));
    WITH cur AS (
        SELECT source, extension, name, lamp, active_calls, updated_at FROM lamp
    ), diff AS (
        SELECT coalesce(c.source, o.source) AS source, coalesce(c.extension, o.extension) AS extension,
               coalesce(c.name, o.name) AS name, coalesce(c.lamp, 'removed') AS lamp,
               coalesce(c.active_calls, 0) AS active_calls, coalesce(c.updated_at, now()) AS updated_at,
               coalesce(o.lamp, '') AS previous, c.source IS NULL AS removed
        FROM cur c
        FULL JOIN call_feed_lamp o ON o.source = c.source AND o.extension = c.extension
        WHERE (c.name, c.lamp, c.active_calls) IS DISTINCT FROM (o.name, o.lamp, o.active_calls)
    ), up AS (
        INSERT INTO call_feed_lamp AS f (source, extension, name, lamp, active_calls)
        SELECT source, extension, name, lamp, active_calls FROM diff WHERE NOT removed
        ON CONFLICT (source, extension) DO UPDATE SET
            name = EXCLUDED.name, lamp = EXCLUDED.lamp, active_calls = EXCLUDED.active_calls
    ), del AS (
        DELETE FROM call_feed_lamp f USING diff d
        WHERE d.removed AND f.source = d.source AND f.extension = d.extension
    ), ins AS (
        INSERT INTO call_feed (type, at, source, data)
        SELECT CASE WHEN d.lamp <> d.previous THEN 'lamp.changed' ELSE 'lamp.updated' END,
               d.updated_at, d.source,
               jsonb_build_object('lamp', jsonb_build_object('source', d.source, 'extension', d.extension,
                                                             'name', d.name, 'lamp', d.lamp,
                                                             'active_calls', d.active_calls,
                                                             'updated_at', d.updated_at),
                                  'previous', d.previous)
        FROM diff d
        ORDER BY d.source, d.extension
        RETURNING seq
    )
    INSERT INTO call_feed_new (seq) SELECT seq FROM ins;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Name: callstate_join(text[], text[]); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_join(a text[], b text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN (cardinality(b) = 0) THEN a WHEN (cardinality(a) = 0) THEN b WHEN ((b COLLATE "C") > (a COLLATE "C")) THEN b ELSE a END;

-- Name: callstate_join(text, text); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_join(a text, b text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN ((b COLLATE "C") > (a COLLATE "C")) THEN b ELSE a END;

-- Name: callstate_journal_partition(date); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_journal_partition(day date) RETURNS boolean
    LANGUAGE plpgsql
    AS $$
DECLARE
    name text := 'call_event_' || to_char(day, 'YYYYMMDD');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('callstate_journal_partition'));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF call_event FOR VALUES FROM (%L) TO (%L)', name,
                   day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    RETURN true;
END $$;

-- Name: journey_stats_part; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.journey_stats_part (
    day date NOT NULL,
    user_id text NOT NULL,
    base boolean DEFAULT false NOT NULL,
    calls_in bigint NOT NULL,
    calls_out bigint NOT NULL,
    answered bigint NOT NULL,
    missed bigint NOT NULL,
    voicemail bigint NOT NULL,
    ratio_base bigint NOT NULL,
    answer_count bigint NOT NULL,
    answer_sum double precision NOT NULL,
    answer_max double precision,
    talk_seconds double precision NOT NULL,
    abandoned bigint DEFAULT 0 NOT NULL,
    short_abandoned bigint DEFAULT 0 NOT NULL,
    sl_answered bigint DEFAULT 0 NOT NULL,
    sl_offered bigint DEFAULT 0 NOT NULL
);

-- Name: TABLE journey_stats_part; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.journey_stats_part IS 'Parts of journey_stats_day: base rows (compacted, one per day and user) and the changes since; read journey_stats_day.';

-- Name: callstate_journey_stats_base(date[], double precision, double precision); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_journey_stats_base(days date[], sla double precision, short double precision) RETURNS SETOF public.journey_stats_part
    LANGUAGE sql STABLE
    AS $$
SELECT r.day, r.user_id, true, sum(r.calls_in), sum(r.calls_out), sum(r.answered), sum(r.missed),
       sum(r.voicemail), sum(r.ratio_base), sum(r.answer_count), sum(r.answer_sum), max(r.answer_max),
       sum(r.talk_seconds), sum(r.abandoned), sum(r.short_abandoned), sum(r.sl_answered), sum(r.sl_offered)
FROM journey j CROSS JOIN LATERAL journey_stats_rows(j, 1, sla, short) r
WHERE j.day = ANY (days)
GROUP BY r.day, r.user_id
$$;

-- Name: callstate_presses(text[], text[]); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_presses(a text[], b text[]) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN ARRAY(SELECT DISTINCT (p.p COLLATE "C") AS p FROM unnest((callstate_presses.a || callstate_presses.b)) p(p) ORDER BY (p.p COLLATE "C"));

-- Name: callstate_ranked(smallint, timestamp with time zone, smallint, timestamp with time zone, smallint); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_ranked(a_rank smallint, a timestamp with time zone, b_rank smallint, b timestamp with time zone, floor smallint) RETURNS timestamp with time zone
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN (GREATEST(a_rank, b_rank) < GREATEST((floor)::integer, 1)) THEN NULL::timestamp with time zone WHEN (a_rank > b_rank) THEN a WHEN (b_rank > a_rank) THEN b ELSE LEAST(a, b) END;

-- Name: callstate_rebuild_journey_stats(); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_rebuild_journey_stats() RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

-- Name: callstate_refresh_calls(text[], text[]); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_refresh_calls(sources text[], keys text[]) RETURNS integer
    LANGUAGE plpgsql
    AS $$
BEGIN
    RETURN callstate_refresh_journeys(ARRAY(
        SELECT x FROM call_state c
        JOIN unnest(sources, keys) AS k(source, call_key) ON c.source = k.source AND c.call_key = k.call_key
        CROSS JOIN LATERAL (VALUES (c.journey_id), (c.call_id), (c.call_key), ('sip:' || c.call_key)) AS v(x)));
END
$$;

-- Name: callstate_refresh_journeys(text[]); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_refresh_journeys(ids text[]) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

-- Name: callstate_refresh_taken(text[], text[], timestamp with time zone[]); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_refresh_taken(sources text[], keys text[], written timestamp with time zone[]) RETURNS integer
    LANGUAGE plpgsql
    AS $$
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

-- Name: FUNCTION callstate_refresh_taken(sources text[], keys text[], written timestamp with time zone[]); Type: COMMENT; Schema: public; Owner: -

COMMENT ON FUNCTION public.callstate_refresh_taken(sources text[], keys text[], written timestamp with time zone[]) IS 'Journeys of the calls taken from journey_pending, computed, or held for the grace, from one snapshot (migration 031).';

-- Name: callstate_setting_seconds(text, double precision); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_setting_seconds(setting text, fallback double precision) RETURNS double precision
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $$
BEGIN
    RETURN coalesce((SELECT value::double precision FROM callstate_setting WHERE name = setting), fallback);
END
$$;

-- Name: callstate_time_zone(); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_time_zone() RETURNS text
    LANGUAGE plpgsql STABLE PARALLEL SAFE
    AS $$
BEGIN
    RETURN coalesce((SELECT value FROM callstate_setting WHERE name = 'time_zone'), 'UTC');
END
$$;

-- Name: callstate_wake_devices_changed(); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_wake_devices_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    PERFORM pg_notify('callstate', 'devices 0 -');
    RETURN NULL;
END $$;

-- Name: callstate_webhook_endpoint_enabled(); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.callstate_webhook_endpoint_enabled() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE webhook_delivery SET next_at = now()
    WHERE endpoint_id = NEW.id AND status = 'pending' AND next_at > now();
    RETURN NULL;
END
$$;

-- Name: change_seq_next(); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.change_seq_next() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.change_seq := nextval('change_seq');
    RETURN NEW;
END
$$;

-- Name: journey_stats_changed(); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.journey_stats_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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

-- Name: journey; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.journey (
    journey_id text NOT NULL,
    source text NOT NULL,
    direction text NOT NULL,
    from_party text NOT NULL,
    to_party text NOT NULL,
    started_at timestamp with time zone,
    answered_at timestamp with time zone,
    ended_at timestamp with time zone,
    outcome text NOT NULL,
    answered_by text NOT NULL,
    answered_user_id text NOT NULL,
    wait_seconds double precision,
    talk_seconds double precision,
    user_ids text[] NOT NULL,
    legs integer NOT NULL,
    hangup_cause text NOT NULL,
    voicemail_at timestamp with time zone,
    updated_at timestamp with time zone NOT NULL,
    day date,
    CONSTRAINT journey_outcome_check CHECK ((outcome = ANY (ARRAY['active'::text, 'answered'::text, 'voicemail'::text, 'missed'::text, 'forwarded'::text, 'outgoing-unreached'::text, 'failed'::text])))
);

-- Name: TABLE journey; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.journey IS 'One row per call journey (the legs of one call), kept from call_state by callstate_refresh_journeys; read call_journey.';

-- Name: COLUMN journey.answered_user_id; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.journey.answered_user_id IS 'sipgate user id or SIP extension of the leg a person answered.';

-- Name: COLUMN journey.day; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.journey.day IS 'Day the journey started, in callstate_setting time_zone.';

-- Name: journey_stats_key(public.journey); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.journey_stats_key(j public.journey) RETURNS text
    LANGUAGE sql IMMUTABLE
    RETURN concat_ws(''::text, (j).day, (j).direction, (j).outcome, array_to_string((j).user_ids, ''::text), (j).answered_user_id, (j).wait_seconds, (j).hangup_cause, (j).talk_seconds);

-- Name: journey_stats_rows(public.journey, integer, double precision, double precision); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.journey_stats_rows(j public.journey, sign integer, sla double precision, short double precision) RETURNS TABLE(day date, user_id text, base boolean, calls_in bigint, calls_out bigint, answered bigint, missed bigint, voicemail bigint, ratio_base bigint, answer_count bigint, answer_sum double precision, answer_max double precision, talk_seconds double precision, abandoned bigint, short_abandoned bigint, sl_answered bigint, sl_offered bigint)
    LANGUAGE sql STABLE
    AS $$
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

-- Name: sip_extension_changed(); Type: FUNCTION; Schema: public; Owner: -

CREATE FUNCTION public.sip_extension_changed() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('callstate', 'ext ' || nextval('change_seq') || ' ' || OLD.extension);
    ELSE
        PERFORM pg_notify('callstate', 'ext ' || NEW.change_seq || ' ' || NEW.extension);
    END IF;
    RETURN NULL;
END
$$;

-- Name: callstate_union(text[]); Type: AGGREGATE; Schema: public; Owner: -

CREATE AGGREGATE public.callstate_union(text[]) (
    SFUNC = array_cat,
    STYPE = text[],
    INITCOND = '{}'
);

-- Name: change_seq; Type: SEQUENCE; Schema: public; Owner: -

CREATE SEQUENCE public.change_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

-- Name: call_state; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.call_state (
    id bigint NOT NULL,
    source text NOT NULL,
    call_key text NOT NULL,
    call_id text DEFAULT ''::text NOT NULL,
    orig_call_id text DEFAULT ''::text NOT NULL,
    extension text DEFAULT ''::text NOT NULL,
    direction text DEFAULT ''::text NOT NULL,
    from_party text DEFAULT ''::text NOT NULL,
    to_party text DEFAULT ''::text NOT NULL,
    users text[] DEFAULT '{}'::text[] NOT NULL,
    user_ids text[] DEFAULT '{}'::text[] NOT NULL,
    full_user_ids text[] DEFAULT '{}'::text[] NOT NULL,
    answered_by text DEFAULT ''::text NOT NULL,
    answering_number text DEFAULT ''::text NOT NULL,
    diversion text DEFAULT ''::text NOT NULL,
    xcid text DEFAULT ''::text NOT NULL,
    state public.call_phase NOT NULL,
    on_hold boolean DEFAULT false NOT NULL,
    hangup_cause text DEFAULT ''::text NOT NULL,
    dtmf text DEFAULT ''::text NOT NULL,
    started_at timestamp with time zone,
    answered_at timestamp with time zone,
    ended_at timestamp with time zone,
    updated_at timestamp with time zone NOT NULL,
    last_event_id bigint NOT NULL,
    change_seq bigint DEFAULT nextval('public.change_seq'::regclass) NOT NULL,
    extension_pinned boolean DEFAULT false NOT NULL,
    hold_at timestamp with time zone,
    cause_at timestamp with time zone,
    dtmf_presses text[] DEFAULT '{}'::text[] NOT NULL,
    journey_id text GENERATED ALWAYS AS (
CASE
    WHEN (source = 'sip'::text) THEN ('sip:'::text ||
    CASE
        WHEN (call_id <> ''::text) THEN call_id
        ELSE call_key
    END)
    WHEN (orig_call_id <> ''::text) THEN orig_call_id
    WHEN (call_id <> ''::text) THEN call_id
    ELSE call_key
END) STORED,
    learned boolean DEFAULT false NOT NULL,
    end_rank smallint DEFAULT 0 NOT NULL,
    answer_rank smallint DEFAULT 0 NOT NULL,
    answer_at timestamp with time zone,
    routed_rule text DEFAULT ''::text NOT NULL,
    routed_at timestamp with time zone,
    CONSTRAINT call_state_direction_check CHECK ((direction = ANY (ARRAY[''::text, 'in'::text, 'out'::text]))),
    CONSTRAINT call_state_routed_rule_check CHECK ((length(routed_rule) <= 100)),
    CONSTRAINT call_state_source_check CHECK ((source = ANY (ARRAY['sipgate'::text, 'sip'::text])))
);

-- Name: TABLE call_state; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.call_state IS 'Current state of every call, one row per call and source.';

-- Name: COLUMN call_state.call_key; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.call_key IS 'Identity of the call within its source: sipgate callId, or SIP entity and dialog id.';

-- Name: COLUMN call_state.extension; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.extension IS 'Extension or user the call concerns: the watched SIP extension, or the sipgate user id.';

-- Name: COLUMN call_state.direction; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.direction IS 'in: the call came to us; out: we placed it; empty: unknown.';

-- Name: COLUMN call_state.dtmf; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.dtmf IS 'DTMF digits in the order received; a copy of a request within callstate.ReplayWindow of the first is not counted again.';

-- Name: COLUMN call_state.started_at; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.started_at IS 'Earliest event about the call.';

-- Name: COLUMN call_state.answered_at; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.answered_at IS 'Earliest event saying answered, never after ended_at.';

-- Name: COLUMN call_state.last_event_id; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.last_event_id IS 'Greatest call_event.id applied to the row.';

-- Name: COLUMN call_state.change_seq; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.change_seq IS 'Value of the change_seq sequence at the last write: the live stream''s event id.';

-- Name: COLUMN call_state.extension_pinned; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.extension_pinned IS 'extension names who answered (sipgate answer), not a first guess.';

-- Name: COLUMN call_state.hold_at; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.hold_at IS 'Receive time of the latest event that stated on_hold.';

-- Name: COLUMN call_state.cause_at; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.cause_at IS 'Receive time of the earliest event that stated hangup_cause.';

-- Name: COLUMN call_state.dtmf_presses; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.dtmf_presses IS 'Every dtmf event: receive time (unix microseconds, 17 digits), digest of its bytes, digits; sorted.';

-- Name: COLUMN call_state.journey_id; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.journey_id IS 'Journey the call is a leg of: sipgate origCallId (else callId); sip: ''sip:'' || Call-ID.';

-- Name: COLUMN call_state.learned; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.learned IS 'Every event of the call was learned from sipgate''s history: its webhooks never came.';

-- Name: COLUMN call_state.end_rank; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.end_rank IS 'Rank of the updates ended_at and hangup_cause come from: 0 none, 1 guessed (timeout), 2 learned (sipgate history), 3 stated by an event.';

-- Name: COLUMN call_state.answer_rank; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.answer_rank IS 'Rank of the updates answer_at comes from (see end_rank); never below end_rank unless 0.';

-- Name: COLUMN call_state.answer_at; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.answer_at IS 'Earliest answer of rank answer_rank; answered_at is it, never after ended_at.';

-- Name: COLUMN call_state.routed_rule; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.routed_rule IS 'Name of the routing rule that answered the call''s newCall; '''' when none did.';

-- Name: COLUMN call_state.routed_at; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_state.routed_at IS 'Receive time of the earliest event that named routed_rule.';

-- Name: active_calls; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.active_calls AS
 SELECT call_state.id,
    call_state.source,
    call_state.extension,
    call_state.direction,
    call_state.from_party,
    call_state.to_party,
    call_state.users,
    call_state.answered_by,
    (call_state.state)::text AS state,
    call_state.on_hold,
    call_state.started_at,
    call_state.answered_at,
    call_state.updated_at,
    (now() - COALESCE(call_state.answered_at, call_state.started_at)) AS duration
   FROM public.call_state
  WHERE (call_state.state = ANY (ARRAY['ringing'::public.call_phase, 'answered'::public.call_phase]));

-- Name: VIEW active_calls; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.active_calls IS 'Calls ringing or answered now; duration is since answered (or since the first event while ringing).';

-- Name: call_event; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.call_event (
    id bigint NOT NULL,
    source text NOT NULL,
    dedup_key text NOT NULL,
    call_key text NOT NULL,
    type text NOT NULL,
    received_at timestamp with time zone NOT NULL,
    payload bytea NOT NULL,
    call_update bytea
)
PARTITION BY RANGE (received_at);

-- Name: TABLE call_event; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.call_event IS 'Append-only journal of every accepted event, payload as received; one partition a day (UTC) of received_at, call_event_YYYYMMDD.';

-- Name: COLUMN call_event.call_update; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_event.call_update IS 'What the event told about its call: callstate.Update as UTF-8 JSON (convert_from(call_update, ''UTF8'')::jsonb); NULL for events journaled before migration 010.';

-- Name: call_event_ids; Type: SEQUENCE; Schema: public; Owner: -

CREATE SEQUENCE public.call_event_ids
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

-- Name: call_event_ids; Type: SEQUENCE OWNED BY; Schema: public; Owner: -

ALTER SEQUENCE public.call_event_ids OWNED BY public.call_event.id;

-- Name: call_event_key; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.call_event_key (
    source text NOT NULL,
    dedup_key text NOT NULL,
    received_at timestamp with time zone NOT NULL
);

-- Name: TABLE call_event_key; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.call_event_key IS 'The dedup key of every event in call_event, with its receive time: a repeated event is not journaled again, whatever its partition.';

-- Name: call_feed; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.call_feed (
    seq bigint NOT NULL,
    type text NOT NULL,
    at timestamp with time zone NOT NULL,
    journey_id text DEFAULT ''::text NOT NULL,
    source text DEFAULT ''::text NOT NULL,
    call_key text DEFAULT ''::text NOT NULL,
    data jsonb,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    call_id bigint,
    state text,
    on_hold boolean,
    answered_at timestamp with time zone,
    ended_at timestamp with time zone,
    cause text,
    answered_by text,
    change_seq bigint,
    updated_at timestamp with time zone,
    outcome text,
    CONSTRAINT call_feed_type_check CHECK ((type = ANY (ARRAY['call.ringing'::text, 'call.answered'::text, 'call.held'::text, 'call.dtmf'::text, 'call.ended'::text, 'call.updated'::text, 'call.missed'::text, 'call.voicemail'::text, 'journey.ended'::text, 'lamp.changed'::text, 'lamp.updated'::text])))
);

-- Name: TABLE call_feed; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.call_feed IS 'Typed call events (call.*, journey.ended, lamp.*), each once per transition; id: feed id in commit order, NULL until numbered just after the commit.';

-- Name: COLUMN call_feed.seq; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_feed.seq IS 'Insertion order; feed ids follow it among rows numbered at once.';

-- Name: COLUMN call_feed.at; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_feed.at IS 'When the transition happened (the event time of the change that made it).';

-- Name: COLUMN call_feed.data; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_feed.data IS 'lamp.* events: the lamp; call.dtmf: the press; else NULL (old rows: the whole call or journey).';

-- Name: COLUMN call_feed.call_id; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_feed.call_id IS 'call.* events: call_state.id; the call is read joined, with the columns state .. updated_at as the transition left them.';

-- Name: COLUMN call_feed.outcome; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.call_feed.outcome IS 'Journey events: the outcome told (with ended_at); the rest of the journey is read joined.';

-- Name: call_feed_id; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.call_feed_id (
    id bigint NOT NULL,
    seq bigint NOT NULL
);

-- Name: TABLE call_feed_id; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.call_feed_id IS 'Feed ids, in commit order: call_feed row seq got id.';

-- Name: call_feed_event; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.call_feed_event AS
 SELECT i.id,
    f.type,
    f.at,
    f.journey_id,
    f.source,
    f.call_key,
    f.created_at,
        CASE
            WHEN (f.call_id IS NOT NULL) THEN (jsonb_build_object('journey_id', f.journey_id, 'call', (COALESCE(to_jsonb(c.*), jsonb_build_object('id', f.call_id, 'source', f.source, 'call_key', f.call_key, 'journey_id', f.journey_id)) || jsonb_build_object('state', f.state, 'on_hold', f.on_hold, 'answered_at', f.answered_at, 'ended_at', f.ended_at, 'hangup_cause', f.cause, 'answered_by', f.answered_by, 'change_seq', f.change_seq, 'updated_at', f.updated_at))) || COALESCE(f.data, '{}'::jsonb))
            WHEN (f.outcome IS NOT NULL) THEN jsonb_build_object('journey_id', f.journey_id, 'journey', (COALESCE(to_jsonb(j.*), jsonb_build_object('journey_id', f.journey_id, 'source', f.source)) || jsonb_build_object('outcome', f.outcome, 'ended_at', f.ended_at)))
            ELSE f.data
        END AS data
   FROM (((public.call_feed_id i
     JOIN public.call_feed f ON ((f.seq = i.seq)))
     LEFT JOIN public.call_state c ON (((f.call_id IS NOT NULL) AND (c.id = f.call_id))))
     LEFT JOIN public.journey j ON (((f.outcome IS NOT NULL) AND (j.journey_id = f.journey_id))));

-- Name: VIEW call_feed_event; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.call_feed_event IS 'The feed as it reads: id (commit order), type, at, journey_id, data (the call or journey as JSON, lamp.* the lamp). Read it by id: WHERE id > $1 ORDER BY id.';

-- Name: call_feed_head; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.call_feed_head (
    one boolean DEFAULT true NOT NULL,
    head bigint NOT NULL,
    floor bigint NOT NULL,
    CONSTRAINT call_feed_head_one_check CHECK (one)
);

-- Name: call_feed_lamp; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.call_feed_lamp (
    source text NOT NULL,
    extension text NOT NULL,
    name text NOT NULL,
    lamp text NOT NULL,
    active_calls bigint NOT NULL
);

-- Name: TABLE call_feed_lamp; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.call_feed_lamp IS 'Each lamp as call_feed last told it; callstate_feed_lamps compares the lamp view with it.';

-- Name: call_feed_new; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.call_feed_new (
    seq bigint NOT NULL
);

-- Name: TABLE call_feed_new; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.call_feed_new IS 'Feed rows written and not numbered yet (their seq); callstate_feed_assign moves them to call_feed_id.';

-- Name: call_feed_seq_seq; Type: SEQUENCE; Schema: public; Owner: -

ALTER TABLE public.call_feed ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.call_feed_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- Name: call_history; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.call_history AS
 SELECT call_state.id,
    call_state.source,
    call_state.extension,
    call_state.direction,
    call_state.from_party,
    call_state.to_party,
    call_state.users,
    call_state.answered_by,
    (call_state.answered_at IS NOT NULL) AS answered,
    call_state.hangup_cause,
    call_state.started_at,
    call_state.answered_at,
    call_state.ended_at,
    (COALESCE(call_state.answered_at, call_state.ended_at) - call_state.started_at) AS ring_time,
    (call_state.ended_at - call_state.answered_at) AS talk_time
   FROM public.call_state
  WHERE (call_state.state = 'ended'::public.call_phase);

-- Name: VIEW call_history; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.call_history IS 'Ended calls; talk_time is null for calls never answered.';

-- Name: call_journey; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.call_journey AS
 SELECT journey.journey_id,
    journey.direction,
    journey.from_party,
    journey.to_party,
    journey.started_at,
    journey.answered_at,
    journey.ended_at,
    journey.outcome,
    journey.answered_by,
    journey.wait_seconds,
    journey.talk_seconds,
    journey.user_ids,
    journey.answered_user_id,
    journey.source,
    journey.legs,
    journey.hangup_cause,
    journey.day,
    journey.updated_at
   FROM public.journey;

-- Name: VIEW call_journey; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.call_journey IS 'One row per call as a person counts it (legs of forwards and voicemail joined) with its outcome: active, answered, voicemail, missed, forwarded, outgoing-unreached, failed.';

-- Name: call_leg; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.call_leg AS
 SELECT c.id,
    c.source,
    c.call_key,
    c.call_id,
    c.orig_call_id,
    c.extension,
    c.direction,
    c.from_party,
    c.to_party,
    c.users,
    c.user_ids,
    c.full_user_ids,
    c.answered_by,
    c.answering_number,
    c.diversion,
    c.xcid,
    c.state,
    c.on_hold,
    c.hangup_cause,
    c.dtmf,
    c.started_at,
    c.answered_at,
    c.ended_at,
    c.updated_at,
    c.last_event_id,
    c.change_seq,
    c.extension_pinned,
    c.hold_at,
    c.cause_at,
    c.dtmf_presses,
    c.journey_id,
    v.voicemail,
    ((c.answered_at IS NOT NULL) AND (NOT v.voicemail) AND ((c.source = 'sip'::text) OR (c.direction = 'out'::text) OR (c.answered_by <> ''::text) OR (c.answering_number <> ''::text))) AS person,
        CASE
            WHEN (c.answered_by <> ''::text) THEN c.answered_by
            WHEN (c.answering_number <> ''::text) THEN c.answering_number
            ELSE c.extension
        END AS leg_answered_by,
        CASE
            WHEN (c.hangup_cause = ''::text) THEN false
            WHEN (c.source = 'sipgate'::text) THEN (c.hangup_cause = ANY (ARRAY['congestion'::text, 'timeout'::text]))
            ELSE (c.hangup_cause = ANY (ARRAY['error'::text, 'pbx-restart'::text, 'vanished'::text]))
        END AS failure
   FROM (public.call_state c
     CROSS JOIN LATERAL ( SELECT ((c.source = 'sipgate'::text) AND (c.users = '{voicemail}'::text[])) AS voicemail) v);

-- Name: VIEW call_leg; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.call_leg IS 'call_state with what the journey rules read: voicemail leg, answered by a person, who, failure cause.';

-- Name: call_state_id_seq; Type: SEQUENCE; Schema: public; Owner: -

ALTER TABLE public.call_state ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.call_state_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- Name: call_tombstone; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.call_tombstone (
    source text NOT NULL,
    call_key text NOT NULL,
    erased_at timestamp with time zone DEFAULT now() NOT NULL
);

-- Name: TABLE call_tombstone; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.call_tombstone IS 'Calls erased by callstate forget: reconciliation with sipgate''s history does not create them again.';

-- Name: callstate_instance; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.callstate_instance (
    id text NOT NULL,
    started_at timestamp with time zone DEFAULT now() NOT NULL,
    seen_at timestamp with time zone DEFAULT now() NOT NULL
);

-- Name: TABLE callstate_instance; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.callstate_instance IS 'Running callstate instances and their last heartbeat.';

-- Name: callstate_setting; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.callstate_setting (
    name text NOT NULL,
    value text NOT NULL
);

-- Name: TABLE callstate_setting; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.callstate_setting IS 'Settings the views read; time_zone (IANA name) cuts the days of journey_stats_day. Written by callstate at start.';

-- Name: contact; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.contact (
    id bigint NOT NULL,
    name text NOT NULL,
    numbers text[] NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    groups text[] DEFAULT '{}'::text[] NOT NULL,
    CONSTRAINT contact_groups_check CHECK ((cardinality(groups) <= 20)),
    CONSTRAINT contact_name_check CHECK (((name <> ''::text) AND (length(name) <= 200))),
    CONSTRAINT contact_numbers_check CHECK (((cardinality(numbers) >= 1) AND (cardinality(numbers) <= 20)))
);

-- Name: TABLE contact; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.contact IS 'Phonebook: one row per person or company, with every number that is theirs.';

-- Name: COLUMN contact.numbers; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.contact.numbers IS 'E.164 digits without +, as sipgate sends them (4916012345678), or an internal number.';

-- Name: COLUMN contact.groups; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.contact.groups IS 'Groups the contact belongs to (VIP, suppliers), as written; routing rules match them regardless of case.';

-- Name: contact_id_seq; Type: SEQUENCE; Schema: public; Owner: -

ALTER TABLE public.contact ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.contact_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- Name: contact_number; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.contact_number AS
 SELECT DISTINCT ON (n.number) n.number,
    c.id AS contact_id,
    c.name
   FROM public.contact c,
    LATERAL unnest(c.numbers) n(number)
  ORDER BY n.number, c.id;

-- Name: VIEW contact_number; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.contact_number IS 'Name for each phonebook number, for joining call_state.from_party or to_party.';

-- Name: forgotten_number; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.forgotten_number (
    digest text NOT NULL,
    forgotten_at timestamp with time zone DEFAULT now() NOT NULL
);

-- Name: TABLE forgotten_number; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.forgotten_number IS 'SHA-256 (hex) of numbers erased by callstate forget: their calls before forgotten_at are not learned again from sipgate''s history.';

-- Name: journey_from_legs; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.journey_from_legs AS
 WITH j AS (
         SELECT l.journey_id,
            min(l.source) AS source,
                CASE
                    WHEN bool_or((l.direction = 'in'::text)) THEN 'in'::text
                    WHEN bool_or((l.direction = 'out'::text)) THEN 'out'::text
                    ELSE ''::text
                END AS direction,
            COALESCE((array_agg(l.from_party ORDER BY l.started_at, l.source, (l.call_key COLLATE "C")) FILTER (WHERE (l.from_party <> ''::text)))[1], ''::text) AS from_party,
            COALESCE((array_agg(l.to_party ORDER BY l.started_at, l.source, (l.call_key COLLATE "C")) FILTER (WHERE (l.to_party <> ''::text)))[1], ''::text) AS to_party,
            min(l.started_at) AS started_at,
            min(l.answered_at) FILTER (WHERE l.person) AS answered_at,
            min(l.answered_at) FILTER (WHERE (NOT l.person)) AS voicemail_at,
            bool_or((l.state <> 'ended'::public.call_phase)) AS active,
            max(l.ended_at) AS last_end,
            (array_agg(l.hangup_cause ORDER BY l.ended_at DESC NULLS LAST, l.source DESC, (l.call_key COLLATE "C") DESC))[1] AS last_cause,
            (array_agg(l.failure ORDER BY l.ended_at DESC NULLS LAST, l.source DESC, (l.call_key COLLATE "C") DESC))[1] AS last_failed,
            COALESCE((array_agg(l.leg_answered_by ORDER BY l.answered_at, l.source, (l.call_key COLLATE "C")) FILTER (WHERE l.person))[1], ''::text) AS answered_by,
            COALESCE((array_agg(l.extension ORDER BY l.answered_at, l.source, (l.call_key COLLATE "C")) FILTER (WHERE l.person))[1], ''::text) AS answered_user_id,
            ARRAY( SELECT DISTINCT (u.u COLLATE "C") AS u
                   FROM unnest(public.callstate_union((l.user_ids || l.extension))) u(u)
                  WHERE ((u.u <> ''::text) AND (u.u <> 'voicemail'::text))
                  ORDER BY (u.u COLLATE "C")) AS user_ids,
            (count(*))::integer AS legs,
            max(l.updated_at) AS updated_at
           FROM public.call_leg l
          GROUP BY l.journey_id
        ), o AS (
         SELECT j.journey_id,
            j.source,
            j.direction,
            j.from_party,
            j.to_party,
            j.started_at,
            j.answered_at,
            j.voicemail_at,
            j.active,
            j.last_end,
            j.last_cause,
            j.last_failed,
            j.answered_by,
            j.answered_user_id,
            j.user_ids,
            j.legs,
            j.updated_at,
                CASE
                    WHEN j.active THEN 'active'::text
                    WHEN (j.answered_at IS NOT NULL) THEN 'answered'::text
                    WHEN (j.voicemail_at IS NOT NULL) THEN 'voicemail'::text
                    WHEN j.last_failed THEN 'failed'::text
                    WHEN (j.direction = 'out'::text) THEN 'outgoing-unreached'::text
                    WHEN (j.last_cause = 'forwarded'::text) THEN 'forwarded'::text
                    WHEN (j.last_cause = 'notFound'::text) THEN 'failed'::text
                    ELSE 'missed'::text
                END AS outcome
           FROM j
        )
 SELECT o.journey_id,
    o.source,
    o.direction,
    o.from_party,
    o.to_party,
    o.started_at,
    o.answered_at,
        CASE
            WHEN o.active THEN NULL::timestamp with time zone
            ELSE o.last_end
        END AS ended_at,
    o.outcome,
    o.answered_by,
    o.answered_user_id,
        CASE
            WHEN (o.active AND (o.answered_at IS NULL)) THEN NULL::double precision
            ELSE (EXTRACT(epoch FROM (COALESCE(o.answered_at, o.voicemail_at, o.last_end) - o.started_at)))::double precision
        END AS wait_seconds,
        CASE
            WHEN (o.outcome = 'answered'::text) THEN (EXTRACT(epoch FROM (o.last_end - o.answered_at)))::double precision
            ELSE NULL::double precision
        END AS talk_seconds,
    o.user_ids,
    o.legs,
    o.last_cause AS hangup_cause,
    o.voicemail_at,
    o.updated_at,
    ((o.started_at AT TIME ZONE public.callstate_time_zone()))::date AS day
   FROM o;

-- Name: VIEW journey_from_legs; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.journey_from_legs IS 'Journeys computed from their legs now; journey keeps them. Slow over all rows: filter by journey_id.';

-- Name: journey_pending; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.journey_pending (
    id bigint NOT NULL,
    source text NOT NULL,
    call_key text NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    held boolean DEFAULT false NOT NULL
);

-- Name: TABLE journey_pending; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.journey_pending IS 'Calls whose journeys wait to be computed again; written with their events, taken by any instance.';

-- Name: COLUMN journey_pending.at; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.journey_pending.at IS 'When the row was written (by a batch of events), or, held, when it is due.';

-- Name: COLUMN journey_pending.held; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.journey_pending.held IS 'Queued again because its journey would have ended unanswered within the grace of a write.';

-- Name: journey_pending_id_seq; Type: SEQUENCE; Schema: public; Owner: -

ALTER TABLE public.journey_pending ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.journey_pending_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- Name: journey_stats_day; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.journey_stats_day AS
 SELECT p.day,
    p.user_id,
    (sum(p.calls_in))::bigint AS calls_in,
    (sum(p.calls_out))::bigint AS calls_out,
    (sum(p.answered))::bigint AS answered,
    (sum(p.missed))::bigint AS missed,
    (sum(p.voicemail))::bigint AS voicemail,
    ((sum(p.answered))::double precision / (NULLIF(sum(p.ratio_base), (0)::numeric))::double precision) AS answer_ratio,
    (sum(p.answer_sum) / (NULLIF(sum(p.answer_count), (0)::numeric))::double precision) AS mean_answer_seconds,
        CASE
            WHEN (sum(p.answer_count) > (0)::numeric) THEN max(p.answer_max)
            ELSE NULL::double precision
        END AS max_answer_seconds,
    sum(p.talk_seconds) AS talk_seconds,
    (sum(p.abandoned))::bigint AS abandoned,
    (sum(p.short_abandoned))::bigint AS short_abandoned,
    ((sum(p.sl_answered))::double precision / (NULLIF(sum(p.sl_offered), (0)::numeric))::double precision) AS service_level,
    (sum(p.sl_answered))::bigint AS sl_answered,
    (sum(p.sl_offered))::bigint AS sl_offered
   FROM public.journey_stats_part p
  GROUP BY p.day, p.user_id
 HAVING ((sum(p.calls_in) <> (0)::numeric) OR (sum(p.calls_out) <> (0)::numeric));

-- Name: VIEW journey_stats_day; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.journey_stats_day IS 'Per day (callstate_setting time_zone) and user ('''' = team): calls in and out, answered, missed, voicemail, answer ratio (of the calls the user could have answered), time to answer, talk time, abandons, service level (callstate_setting sla_seconds, short_abandon_seconds). Kept in journey_stats_part.';

-- Name: sip_extension; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.sip_extension (
    extension text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    subscription text DEFAULT 'pending'::text NOT NULL,
    reason text DEFAULT ''::text NOT NULL,
    presence_status text DEFAULT ''::text NOT NULL,
    presence_note text DEFAULT ''::text NOT NULL,
    added_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    change_seq bigint DEFAULT nextval('public.change_seq'::regclass) NOT NULL,
    owner text DEFAULT ''::text NOT NULL,
    lease_until timestamp with time zone,
    CONSTRAINT sip_extension_extension_check CHECK ((extension ~ '^[A-Za-z0-9._~*#+-]{1,64}$'::text)),
    CONSTRAINT sip_extension_presence_status_check CHECK ((presence_status = ANY (ARRAY[''::text, 'idle'::text, 'ringing'::text, 'busy'::text, 'unavailable'::text]))),
    CONSTRAINT sip_extension_subscription_check CHECK ((subscription = ANY (ARRAY['pending'::text, 'active'::text, 'retrying'::text, 'refused'::text, 'terminated'::text])))
);

-- Name: TABLE sip_extension; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.sip_extension IS 'PBX extensions the SIP subscriber watches; insert a row to watch one more.';

-- Name: COLUMN sip_extension.subscription; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.sip_extension.subscription IS 'State of the dialog subscription: pending, active, retrying, refused (will not retry), terminated.';

-- Name: COLUMN sip_extension.reason; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.sip_extension.reason IS 'Why the subscription is not active, as the PBX or the subscriber said.';

-- Name: COLUMN sip_extension.change_seq; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.sip_extension.change_seq IS 'Value of the change_seq sequence at the last write: the live stream''s event id.';

-- Name: COLUMN sip_extension.owner; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.sip_extension.owner IS 'callstate instance that watches the extension; empty: none.';

-- Name: COLUMN sip_extension.lease_until; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.sip_extension.lease_until IS 'The owner must renew its lease before this; after it, the extension is free to take.';

-- Name: sip_lamp; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.sip_lamp AS
 SELECT e.extension,
        CASE
            WHEN ((NOT e.enabled) OR (e.subscription <> 'active'::text) OR (e.lease_until < now())) THEN 'unavailable'::text
            WHEN ((a.answered > 0) AND (a.answered = a.held)) THEN 'hold'::text
            WHEN (a.answered > 0) THEN 'busy'::text
            WHEN (a.ringing > 0) THEN 'ringing'::text
            WHEN (e.presence_status = ANY (ARRAY['busy'::text, 'ringing'::text, 'unavailable'::text])) THEN e.presence_status
            ELSE 'idle'::text
        END AS lamp,
    a.active_calls,
    e.subscription,
    e.reason,
    e.presence_status,
    e.presence_note,
    GREATEST(e.updated_at, a.last_change) AS updated_at
   FROM (public.sip_extension e
     CROSS JOIN LATERAL ( SELECT count(*) FILTER (WHERE (c.state = 'answered'::public.call_phase)) AS answered,
            count(*) FILTER (WHERE ((c.state = 'answered'::public.call_phase) AND c.on_hold)) AS held,
            count(*) FILTER (WHERE (c.state = 'ringing'::public.call_phase)) AS ringing,
            count(*) AS active_calls,
            max(c.updated_at) AS last_change
           FROM public.call_state c
          WHERE ((c.source = 'sip'::text) AND (c.extension = e.extension) AND (c.state = ANY (ARRAY['ringing'::public.call_phase, 'answered'::public.call_phase])))) a);

-- Name: VIEW sip_lamp; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.sip_lamp IS 'Current lamp of every watched PBX extension: idle, ringing, busy, hold or unavailable.';

-- Name: sipgate_user; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.sipgate_user (
    user_id text NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    first_seen timestamp with time zone DEFAULT now() NOT NULL
);

-- Name: TABLE sipgate_user; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.sipgate_user IS 'sipgate users seen in calls (userId and name); delete a row to hide a user''s lamp until its next call.';

-- Name: user_lamp; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.user_lamp AS
 WITH concerns AS (
         SELECT DISTINCT c.id,
            x.user_id,
            c.state,
            c.updated_at
           FROM (public.call_state c
             CROSS JOIN LATERAL ( SELECT c.extension
                UNION
                 SELECT unnest(c.user_ids) AS unnest
                  WHERE (c.state = 'ringing'::public.call_phase)) x(user_id))
          WHERE ((c.source = 'sipgate'::text) AND (c.state = ANY (ARRAY['ringing'::public.call_phase, 'answered'::public.call_phase])) AND (x.user_id <> ''::text))
        ), counts AS (
         SELECT concerns.user_id,
            count(*) FILTER (WHERE (concerns.state = 'answered'::public.call_phase)) AS answered,
            count(*) FILTER (WHERE (concerns.state = 'ringing'::public.call_phase)) AS ringing,
            count(*) AS active_calls,
            max(concerns.updated_at) AS last_change
           FROM concerns
          GROUP BY concerns.user_id
        )
 SELECT u.user_id AS extension,
    u.name,
        CASE
            WHEN (a.answered > 0) THEN 'busy'::text
            WHEN (a.ringing > 0) THEN 'ringing'::text
            ELSE 'idle'::text
        END AS lamp,
    COALESCE(a.active_calls, (0)::bigint) AS active_calls,
    COALESCE(a.last_change, u.first_seen) AS updated_at
   FROM (public.sipgate_user u
     LEFT JOIN counts a ON ((a.user_id = u.user_id)));

-- Name: VIEW user_lamp; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.user_lamp IS 'Current lamp of every sipgate user seen in calls: idle, ringing or busy.';

-- Name: lamp; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.lamp AS
 SELECT 'sip'::text AS source,
    sip_lamp.extension,
    ''::text AS name,
    sip_lamp.lamp,
    sip_lamp.active_calls,
    sip_lamp.updated_at
   FROM public.sip_lamp
UNION ALL
 SELECT 'sipgate'::text AS source,
    user_lamp.extension,
    user_lamp.name,
    user_lamp.lamp,
    user_lamp.active_calls,
    user_lamp.updated_at
   FROM public.user_lamp;

-- Name: VIEW lamp; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.lamp IS 'Lamp of every PBX extension (source sip) and sipgate user (source sipgate): idle, ringing, busy, hold or unavailable.';

-- Name: missed_call_done; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.missed_call_done (
    journey_id text NOT NULL,
    done_at timestamp with time zone NOT NULL,
    done_by text NOT NULL,
    CONSTRAINT missed_call_done_done_by_check CHECK ((done_by <> ''::text))
);

-- Name: TABLE missed_call_done; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.missed_call_done IS 'Calls to return a lead marked as done: who and when; the first mark stands. Goes with its journey.';

-- Name: missed_call; Type: VIEW; Schema: public; Owner: -

CREATE VIEW public.missed_call AS
 SELECT m.journey_id,
    m.from_party AS number,
    m.started_at,
    m.ended_at,
    (cb.at IS NOT NULL) AS called_back,
    cb.at AS called_back_at,
    m.to_party,
    m.user_ids,
    m.day,
    m.outcome,
    d.done_at,
    d.done_by,
    ((cb.at IS NULL) AND (d.done_at IS NULL)) AS open
   FROM ((public.journey m
     LEFT JOIN public.missed_call_done d ON ((d.journey_id = m.journey_id)))
     LEFT JOIN LATERAL ( SELECT LEAST(( SELECT x.answered_at
                   FROM public.journey x
                  WHERE ((x.direction = 'out'::text) AND (x.answered_at IS NOT NULL) AND (x.to_party = m.from_party) AND (x.started_at > m.started_at))
                  ORDER BY x.started_at
                 LIMIT 1), ( SELECT x.answered_at
                   FROM public.journey x
                  WHERE ((x.direction = 'in'::text) AND (x.answered_at IS NOT NULL) AND (x.from_party = m.from_party) AND (x.started_at > m.started_at))
                  ORDER BY x.started_at
                 LIMIT 1)) AS at) cb ON (true))
  WHERE (m.outcome = ANY (ARRAY['missed'::text, 'voicemail'::text]));

-- Name: VIEW missed_call; Type: COMMENT; Schema: public; Owner: -

COMMENT ON VIEW public.missed_call IS 'Calls to return: missed and voicemail journeys; called_back once a later call to or from the number was answered by a person (at its answer), open unless called back or marked done (missed_call_done).';

-- Name: presence_account; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.presence_account (
    username text NOT NULL,
    realm text NOT NULL,
    ha1 text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT presence_account_ha1_check CHECK ((ha1 ~ '^[0-9a-f]{32}$'::text)),
    CONSTRAINT presence_account_username_check CHECK ((username ~ '^[A-Za-z0-9._~*#+!$&''()=,;?/-]{1,64}$'::text))
);

-- Name: TABLE presence_account; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.presence_account IS 'Digest accounts of presence-agent subscribers; ha1 = md5(username:realm:password).';

-- Name: presence_alias; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.presence_alias (
    alias text NOT NULL,
    source text NOT NULL,
    extension text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT presence_alias_alias_check CHECK (((alias <> ''::text) AND (length(alias) <= 64))),
    CONSTRAINT presence_alias_extension_check CHECK ((extension <> ''::text)),
    CONSTRAINT presence_alias_source_check CHECK ((source = ANY (ARRAY['sip'::text, 'sipgate'::text])))
);

-- Name: TABLE presence_alias; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.presence_alias IS 'Further names of lamps for presence-agent subscribers: a number or short name to a PBX extension (source sip) or sipgate user id (source sipgate).';

-- Name: reconcile_cursor; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.reconcile_cursor (
    name text NOT NULL,
    "position" timestamp with time zone NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

-- Name: TABLE reconcile_cursor; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.reconcile_cursor IS 'Where reconciliation with sipgate''s history has come: entries created before position were reconciled.';

-- Name: reconcile_lease; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.reconcile_lease (
    name text NOT NULL,
    owner text NOT NULL,
    lease_until timestamp with time zone NOT NULL
);

-- Name: TABLE reconcile_lease; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.reconcile_lease IS 'Which instance reconciles with sipgate now, until when.';

-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL,
    checksum text
);

-- Name: wake_cursor; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.wake_cursor (
    one boolean DEFAULT true NOT NULL,
    cursor bigint NOT NULL,
    CONSTRAINT wake_cursor_one_check CHECK (one)
);

-- Name: wake_device; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.wake_device (
    id text NOT NULL,
    user_id text DEFAULT ''::text NOT NULL,
    extension text DEFAULT ''::text NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    endpoint text NOT NULL,
    p256dh text NOT NULL,
    auth text NOT NULL,
    secret_hash bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_seen_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT wake_device_check CHECK (((user_id = ''::text) <> (extension = ''::text)))
);

-- Name: TABLE wake_device; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.wake_device IS 'Web Push subscriptions of a sipgate user or a PBX extension; secret_hash: SHA-256 of the device credential.';

-- Name: wake_enrollment; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.wake_enrollment (
    token_hash bytea NOT NULL,
    user_id text NOT NULL,
    expires_at timestamp with time zone NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

-- Name: TABLE wake_enrollment; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.wake_enrollment IS 'One-time links that register one device for one user; deleted when used.';

-- Name: wake_push; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.wake_push (
    journey_id text NOT NULL,
    call_id text NOT NULL,
    user_ids text[] DEFAULT '{}'::text[] NOT NULL,
    extension text DEFAULT ''::text NOT NULL,
    pushed_at timestamp with time zone DEFAULT now() NOT NULL,
    cleared_at timestamp with time zone,
    clear_reason text DEFAULT ''::text NOT NULL,
    clear_sent_at timestamp with time zone
);

-- Name: COLUMN wake_push.clear_sent_at; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.wake_push.clear_sent_at IS 'When the clear (cleared_at) was sent, or taken to be sent again; NULL: not yet.';

-- Name: wake_ready; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.wake_ready (
    call_id text NOT NULL,
    device_id text NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL
);

-- Name: wake_throttle; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.wake_throttle (
    origin text NOT NULL,
    until timestamp with time zone NOT NULL
);

-- Name: TABLE wake_throttle; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.wake_throttle IS 'Push services that asked to wait (Retry-After): no push to origin before until.';

-- Name: wake_vapid; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.wake_vapid (
    one boolean DEFAULT true NOT NULL,
    private_key bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT wake_vapid_one_check CHECK (one)
);

-- Name: TABLE wake_vapid; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.wake_vapid IS 'The VAPID key pair (PKCS #8) every instance signs Web Push requests with.';

-- Name: webhook_attempt; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.webhook_attempt (
    delivery_id bigint NOT NULL,
    at timestamp with time zone NOT NULL,
    status integer NOT NULL,
    error text NOT NULL,
    duration_ms integer NOT NULL
);

-- Name: TABLE webhook_attempt; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.webhook_attempt IS 'Every try of a delivery: HTTP status (0: none came) or error.';

-- Name: webhook_delivery; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.webhook_delivery (
    id bigint NOT NULL,
    endpoint_id bigint NOT NULL,
    feed_id bigint NOT NULL,
    msg_id text NOT NULL,
    journey_id text DEFAULT ''::text NOT NULL,
    order_key text NOT NULL,
    type text NOT NULL,
    body bytea NOT NULL,
    content_type text NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    next_at timestamp with time zone DEFAULT now() NOT NULL,
    last_status integer DEFAULT 0 NOT NULL,
    last_error text DEFAULT ''::text NOT NULL,
    delivered_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT webhook_delivery_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text])))
);

-- Name: TABLE webhook_delivery; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.webhook_delivery IS 'One message (msg_id, body) to one endpoint, whatever the tries.';

-- Name: webhook_delivery_id_seq; Type: SEQUENCE; Schema: public; Owner: -

ALTER TABLE public.webhook_delivery ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.webhook_delivery_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- Name: webhook_endpoint; Type: TABLE; Schema: public; Owner: -

CREATE TABLE public.webhook_endpoint (
    id bigint NOT NULL,
    url text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    secrets text[] NOT NULL,
    previous_until timestamp with time zone,
    types text[] DEFAULT '{}'::text[] NOT NULL,
    format text DEFAULT 'standard'::text NOT NULL,
    enabled boolean DEFAULT true NOT NULL,
    disabled_reason text DEFAULT ''::text NOT NULL,
    from_config boolean DEFAULT false NOT NULL,
    cursor bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    backfill_since timestamp with time zone,
    backfill_after bigint,
    backfill_upto bigint,
    CONSTRAINT webhook_endpoint_format_check CHECK ((format = ANY (ARRAY['standard'::text, 'zammad'::text, 'chat'::text])))
);

-- Name: TABLE webhook_endpoint; Type: COMMENT; Schema: public; Owner: -

COMMENT ON TABLE public.webhook_endpoint IS 'Endpoints that receive the feed''s events (Standard Webhooks); cursor: the feed id up to which deliveries are made.';

-- Name: COLUMN webhook_endpoint.backfill_since; Type: COMMENT; Schema: public; Owner: -

COMMENT ON COLUMN public.webhook_endpoint.backfill_since IS 'A replay''s backfill to do: feed events written since then, ids after backfill_after up to backfill_upto; NULL: none.';

-- Name: webhook_endpoint_id_seq; Type: SEQUENCE; Schema: public; Owner: -

ALTER TABLE public.webhook_endpoint ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.webhook_endpoint_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- Name: call_event id; Type: DEFAULT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_event ALTER COLUMN id SET DEFAULT nextval('public.call_event_ids'::regclass);

-- Name: call_event_key call_event_key_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_event_key
    ADD CONSTRAINT call_event_key_pkey PRIMARY KEY (source, dedup_key);

-- Name: call_event call_event_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_event
    ADD CONSTRAINT call_event_pkey PRIMARY KEY (id, received_at);

-- Name: call_feed_head call_feed_head_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_feed_head
    ADD CONSTRAINT call_feed_head_pkey PRIMARY KEY (one);

-- Name: call_feed_id call_feed_id_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_feed_id
    ADD CONSTRAINT call_feed_id_pkey PRIMARY KEY (id);

-- Name: call_feed_lamp call_feed_lamp_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_feed_lamp
    ADD CONSTRAINT call_feed_lamp_pkey PRIMARY KEY (source, extension);

-- Name: call_feed_new call_feed_new_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_feed_new
    ADD CONSTRAINT call_feed_new_pkey PRIMARY KEY (seq);

-- Name: call_feed call_feed_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_feed
    ADD CONSTRAINT call_feed_pkey PRIMARY KEY (seq);

-- Name: call_state call_state_id_key; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_state
    ADD CONSTRAINT call_state_id_key UNIQUE (id);

-- Name: call_state call_state_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_state
    ADD CONSTRAINT call_state_pkey PRIMARY KEY (source, call_key);

-- Name: call_tombstone call_tombstone_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.call_tombstone
    ADD CONSTRAINT call_tombstone_pkey PRIMARY KEY (source, call_key);

-- Name: callstate_instance callstate_instance_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.callstate_instance
    ADD CONSTRAINT callstate_instance_pkey PRIMARY KEY (id);

-- Name: callstate_setting callstate_setting_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.callstate_setting
    ADD CONSTRAINT callstate_setting_pkey PRIMARY KEY (name);

-- Name: contact contact_name_key; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.contact
    ADD CONSTRAINT contact_name_key UNIQUE (name);

-- Name: contact contact_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.contact
    ADD CONSTRAINT contact_pkey PRIMARY KEY (id);

-- Name: forgotten_number forgotten_number_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.forgotten_number
    ADD CONSTRAINT forgotten_number_pkey PRIMARY KEY (digest);

-- Name: journey_pending journey_pending_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.journey_pending
    ADD CONSTRAINT journey_pending_pkey PRIMARY KEY (id);

-- Name: journey journey_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.journey
    ADD CONSTRAINT journey_pkey PRIMARY KEY (journey_id);

-- Name: missed_call_done missed_call_done_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.missed_call_done
    ADD CONSTRAINT missed_call_done_pkey PRIMARY KEY (journey_id);

-- Name: presence_account presence_account_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.presence_account
    ADD CONSTRAINT presence_account_pkey PRIMARY KEY (username);

-- Name: presence_alias presence_alias_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.presence_alias
    ADD CONSTRAINT presence_alias_pkey PRIMARY KEY (alias);

-- Name: reconcile_cursor reconcile_cursor_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.reconcile_cursor
    ADD CONSTRAINT reconcile_cursor_pkey PRIMARY KEY (name);

-- Name: reconcile_lease reconcile_lease_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.reconcile_lease
    ADD CONSTRAINT reconcile_lease_pkey PRIMARY KEY (name);

-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

-- Name: sip_extension sip_extension_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.sip_extension
    ADD CONSTRAINT sip_extension_pkey PRIMARY KEY (extension);

-- Name: sipgate_user sipgate_user_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.sipgate_user
    ADD CONSTRAINT sipgate_user_pkey PRIMARY KEY (user_id);

-- Name: wake_cursor wake_cursor_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.wake_cursor
    ADD CONSTRAINT wake_cursor_pkey PRIMARY KEY (one);

-- Name: wake_device wake_device_endpoint_key; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.wake_device
    ADD CONSTRAINT wake_device_endpoint_key UNIQUE (endpoint);

-- Name: wake_device wake_device_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.wake_device
    ADD CONSTRAINT wake_device_pkey PRIMARY KEY (id);

-- Name: wake_enrollment wake_enrollment_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.wake_enrollment
    ADD CONSTRAINT wake_enrollment_pkey PRIMARY KEY (token_hash);

-- Name: wake_push wake_push_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.wake_push
    ADD CONSTRAINT wake_push_pkey PRIMARY KEY (journey_id);

-- Name: wake_ready wake_ready_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.wake_ready
    ADD CONSTRAINT wake_ready_pkey PRIMARY KEY (call_id, device_id);

-- Name: wake_throttle wake_throttle_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.wake_throttle
    ADD CONSTRAINT wake_throttle_pkey PRIMARY KEY (origin);

-- Name: wake_vapid wake_vapid_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.wake_vapid
    ADD CONSTRAINT wake_vapid_pkey PRIMARY KEY (one);

-- Name: webhook_delivery webhook_delivery_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.webhook_delivery
    ADD CONSTRAINT webhook_delivery_pkey PRIMARY KEY (id);

-- Name: webhook_endpoint webhook_endpoint_pkey; Type: CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.webhook_endpoint
    ADD CONSTRAINT webhook_endpoint_pkey PRIMARY KEY (id);

-- Name: call_event_call_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_event_call_idx ON ONLY public.call_event USING btree (source, call_key, id);

-- Name: call_event_key_received_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_event_key_received_idx ON public.call_event_key USING brin (received_at);

-- Name: call_feed_created_brin; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_feed_created_brin ON public.call_feed USING brin (created_at);

-- Name: call_feed_journey_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_feed_journey_idx ON public.call_feed USING btree (journey_id) WHERE (journey_id <> ''::text);

-- Name: call_state_active_by_extension_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_state_active_by_extension_idx ON public.call_state USING btree (source, extension) WHERE (state = ANY (ARRAY['ringing'::public.call_phase, 'answered'::public.call_phase]));

-- Name: call_state_active_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_state_active_idx ON public.call_state USING btree (id) WHERE (state = ANY (ARRAY['ringing'::public.call_phase, 'answered'::public.call_phase]));

-- Name: call_state_change_seq_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_state_change_seq_idx ON public.call_state USING btree (change_seq);

-- Name: call_state_ended_at_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_state_ended_at_idx ON public.call_state USING btree (ended_at) WHERE (state = 'ended'::public.call_phase);

-- Name: call_state_extension_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_state_extension_idx ON public.call_state USING btree (extension, id);

-- Name: call_state_journey_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_state_journey_idx ON public.call_state USING btree (journey_id);

-- Name: call_state_started_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_state_started_idx ON public.call_state USING btree (started_at, id);

-- Name: call_state_updated_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX call_state_updated_idx ON public.call_state USING btree (updated_at, id);

-- Name: contact_numbers_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX contact_numbers_idx ON public.contact USING gin (numbers);

-- Name: journey_active_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX journey_active_idx ON public.journey USING btree (started_at) WHERE (outcome = 'active'::text);

-- Name: journey_callback_in_answer_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX journey_callback_in_answer_idx ON public.journey USING btree (from_party, started_at) WHERE ((direction = 'in'::text) AND (answered_at IS NOT NULL));

-- Name: journey_callback_out_answer_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX journey_callback_out_answer_idx ON public.journey USING btree (to_party, started_at) WHERE ((direction = 'out'::text) AND (answered_at IS NOT NULL));

-- Name: journey_day_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX journey_day_idx ON public.journey USING btree (day);

-- Name: journey_ended_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX journey_ended_idx ON public.journey USING btree (ended_at, journey_id) WHERE (ended_at IS NOT NULL);

-- Name: journey_missed_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX journey_missed_idx ON public.journey USING btree (started_at) WHERE (outcome = 'missed'::text);

-- Name: journey_started_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX journey_started_idx ON public.journey USING btree (started_at, journey_id);

-- Name: journey_stats_part_changes_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX journey_stats_part_changes_idx ON public.journey_stats_part USING btree (day) WHERE (NOT base);

-- Name: journey_stats_part_day_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX journey_stats_part_day_idx ON public.journey_stats_part USING btree (day, user_id);

-- Name: journey_to_return_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX journey_to_return_idx ON public.journey USING btree (started_at) WHERE (outcome = ANY (ARRAY['missed'::text, 'voicemail'::text]));

-- Name: wake_device_extension_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX wake_device_extension_idx ON public.wake_device USING btree (extension) WHERE (extension <> ''::text);

-- Name: wake_device_user_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX wake_device_user_idx ON public.wake_device USING btree (user_id) WHERE (user_id <> ''::text);

-- Name: wake_push_call_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX wake_push_call_idx ON public.wake_push USING btree (call_id);

-- Name: wake_push_clear_unsent_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX wake_push_clear_unsent_idx ON public.wake_push USING btree (cleared_at) WHERE ((cleared_at IS NOT NULL) AND (clear_sent_at IS NULL));

-- Name: wake_push_pushed_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX wake_push_pushed_idx ON public.wake_push USING btree (pushed_at);

-- Name: wake_push_uncleared_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX wake_push_uncleared_idx ON public.wake_push USING btree (journey_id) WHERE (cleared_at IS NULL);

-- Name: wake_ready_at_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX wake_ready_at_idx ON public.wake_ready USING btree (at);

-- Name: webhook_attempt_delivery_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX webhook_attempt_delivery_idx ON public.webhook_attempt USING btree (delivery_id, at);

-- Name: webhook_delivery_created_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX webhook_delivery_created_idx ON public.webhook_delivery USING btree (created_at);

-- Name: webhook_delivery_due_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX webhook_delivery_due_idx ON public.webhook_delivery USING btree (next_at, id) WHERE ((status = 'pending'::text) AND (attempts >= 0));

-- Name: webhook_delivery_endpoint_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX webhook_delivery_endpoint_idx ON public.webhook_delivery USING btree (endpoint_id, id);

-- Name: webhook_delivery_feed_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX webhook_delivery_feed_idx ON public.webhook_delivery USING btree (endpoint_id, feed_id);

-- Name: webhook_delivery_journey_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX webhook_delivery_journey_idx ON public.webhook_delivery USING btree (journey_id) WHERE (journey_id <> ''::text);

-- Name: webhook_delivery_order_idx; Type: INDEX; Schema: public; Owner: -

CREATE INDEX webhook_delivery_order_idx ON public.webhook_delivery USING btree (endpoint_id, order_key, id) INCLUDE (status);

-- Name: webhook_endpoint_config_idx; Type: INDEX; Schema: public; Owner: -

CREATE UNIQUE INDEX webhook_endpoint_config_idx ON public.webhook_endpoint USING btree (from_config) WHERE from_config;

-- Name: call_state call_state_feed; Type: TRIGGER; Schema: public; Owner: -

CREATE TRIGGER call_state_feed AFTER INSERT OR UPDATE ON public.call_state FOR EACH ROW EXECUTE FUNCTION public.callstate_feed_call();

-- Name: journey journey_feed; Type: TRIGGER; Schema: public; Owner: -

CREATE TRIGGER journey_feed AFTER INSERT OR UPDATE ON public.journey FOR EACH ROW EXECUTE FUNCTION public.callstate_feed_journey();

-- Name: journey journey_stats_changed; Type: TRIGGER; Schema: public; Owner: -

CREATE TRIGGER journey_stats_changed AFTER INSERT OR DELETE OR UPDATE ON public.journey FOR EACH ROW EXECUTE FUNCTION public.journey_stats_changed();

-- Name: sip_extension sip_extension_change_seq; Type: TRIGGER; Schema: public; Owner: -

CREATE TRIGGER sip_extension_change_seq BEFORE UPDATE ON public.sip_extension FOR EACH ROW EXECUTE FUNCTION public.change_seq_next();

-- Name: sip_extension sip_extension_changed; Type: TRIGGER; Schema: public; Owner: -

CREATE TRIGGER sip_extension_changed AFTER INSERT OR DELETE OR UPDATE ON public.sip_extension FOR EACH ROW EXECUTE FUNCTION public.sip_extension_changed();

-- Name: wake_device wake_device_changed; Type: TRIGGER; Schema: public; Owner: -

CREATE TRIGGER wake_device_changed AFTER INSERT OR DELETE OR UPDATE OF user_id, extension ON public.wake_device FOR EACH STATEMENT EXECUTE FUNCTION public.callstate_wake_devices_changed();

-- Name: webhook_endpoint webhook_endpoint_enabled; Type: TRIGGER; Schema: public; Owner: -

CREATE TRIGGER webhook_endpoint_enabled AFTER UPDATE OF enabled ON public.webhook_endpoint FOR EACH ROW WHEN ((new.enabled AND (NOT old.enabled))) EXECUTE FUNCTION public.callstate_webhook_endpoint_enabled();

-- Name: missed_call_done missed_call_done_journey_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.missed_call_done
    ADD CONSTRAINT missed_call_done_journey_id_fkey FOREIGN KEY (journey_id) REFERENCES public.journey(journey_id) ON DELETE CASCADE;

-- Name: webhook_attempt webhook_attempt_delivery_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.webhook_attempt
    ADD CONSTRAINT webhook_attempt_delivery_id_fkey FOREIGN KEY (delivery_id) REFERENCES public.webhook_delivery(id) ON DELETE CASCADE;

-- Name: webhook_delivery webhook_delivery_endpoint_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -

ALTER TABLE ONLY public.webhook_delivery
    ADD CONSTRAINT webhook_delivery_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES public.webhook_endpoint(id) ON DELETE CASCADE;
