-- callstate_feed_call, leaner per row: the same events, in the same order,
-- with the same rows (migrations 020 and 028 say why each is written
-- once), but the transitions are found by plain comparisons in PL/pgSQL
-- and written by one INSERT from arrays, instead of one statement that
-- plans and runs a union of five branches, a set difference of the
-- presses and a sort for every row written to call_state. Measured
-- (docs/benchmarks.md, "The call row's feed trigger, leaner"): a quarter
-- to a half of the trigger's time; what it still costs is mostly its two
-- inserts.
CREATE OR REPLACE FUNCTION callstate_feed_call() RETURNS trigger
LANGUAGE plpgsql AS $$
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
