-- call_feed: one durable, ordered feed of typed call events (feed.go in
-- the module root describes the types and why each is produced once).
--
-- Events are written by triggers in the transaction that makes their
-- transition visible, comparing the row before and after:
--   * call_state (callstate_feed_call): call.ringing, call.answered,
--     call.held, call.dtmf, call.ended, and call.updated for a change that
--     is none of these;
--   * journey (callstate_feed_journey): journey.ended, call.missed,
--     call.voicemail;
--   * the lamps, which are a view, by callstate_feed_lamps, which compares
--     the view with call_feed_lamp (the lamps the feed told last) under a
--     lock: lamp.changed, and lamp.updated when only the count of calls or
--     the name changed.
--
-- Feed ids are in commit order. A row is inserted with id NULL; after its
-- transaction commits, callstate_feed_assign, run by any instance and one
-- at a time (an advisory lock), numbers the committed rows that have none,
-- in insertion order, from call_feed_head. Each numbering transaction sees
-- every one before it, so an id is only ever given to a committed row,
-- above every id given before: a reader that read up to id N and reads
-- id > N later misses nothing, however late an event's transaction
-- committed. The price is one UPDATE per row, a few milliseconds after its
-- commit (the store runs it right after its writes commit, and every
-- second for what a crashed instance left).

CREATE TABLE call_feed (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         bigint UNIQUE,
    type       text        NOT NULL,
    at         timestamptz NOT NULL,
    journey_id text        NOT NULL DEFAULT '',
    source     text        NOT NULL DEFAULT '',
    call_key   text        NOT NULL DEFAULT '',
    data       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE call_feed IS 'Typed call events (call.*, journey.ended, lamp.*), each once per transition; id: feed id in commit order, NULL until numbered just after the commit.';
COMMENT ON COLUMN call_feed.seq IS 'Insertion order; feed ids follow it among rows numbered at once.';
COMMENT ON COLUMN call_feed.at IS 'When the transition happened (the event time of the change that made it).';

CREATE INDEX call_feed_unnumbered_idx ON call_feed (seq) WHERE id IS NULL;
CREATE INDEX call_feed_created_idx ON call_feed (created_at);
CREATE INDEX call_feed_call_idx ON call_feed (source, call_key) WHERE call_key <> '';
CREATE INDEX call_feed_journey_idx ON call_feed (journey_id) WHERE journey_id <> '';

-- call_feed_head: the last feed id given, and the floor: every id up to
-- it may have been deleted by retention, so a reader that last read below
-- it may have missed events.
CREATE TABLE call_feed_head (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    head  bigint NOT NULL,
    floor bigint NOT NULL
);

INSERT INTO call_feed_head (head, floor) VALUES (0, 0);

-- callstate_feed_assign numbers up to max_rows committed rows without an
-- id, in insertion order, and returns how many it numbered.
CREATE FUNCTION callstate_feed_assign(max_rows integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    last bigint;
    n    integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('callstate feed ids', 0));
    -- A statement after the lock: its snapshot sees every numbering
    -- committed before.
    SELECT head INTO last FROM call_feed_head FOR UPDATE;
    WITH p AS (
        SELECT seq, last + row_number() OVER (ORDER BY seq) AS id
        FROM (SELECT seq FROM call_feed WHERE id IS NULL ORDER BY seq LIMIT max_rows) s
    )
    UPDATE call_feed f SET id = p.id FROM p WHERE f.seq = p.seq;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN
        UPDATE call_feed_head SET head = head + n;
    END IF;
    RETURN n;
END
$$;

-- callstate_feed_call writes the events of a change of a call_state row.
-- Each is a transition of the merged row, which is a join (the state only
-- rises, answered_at once set stays set, presses are a growing set): the
-- upsert locks the row, so every write sees the row as the last one left
-- it, and exactly one committed write makes each transition. A repeated
-- event writes nothing; one arriving late joins in without going back.
CREATE FUNCTION callstate_feed_call() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    c jsonb;
    n integer;
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
    c := jsonb_build_object('journey_id', NEW.journey_id, 'call', to_jsonb(NEW));
    INSERT INTO call_feed (type, at, journey_id, source, call_key, data)
    SELECT e.type, coalesce(e.at, NEW.updated_at), NEW.journey_id, NEW.source, NEW.call_key, c || e.extra
    FROM (
        SELECT 1 AS ord, '' AS k, 'call.ringing' AS type, NEW.started_at AS at, '{}'::jsonb AS extra
        WHERE TG_OP = 'INSERT'
        UNION ALL
        SELECT 2, '', 'call.answered', NEW.answered_at, '{}'
        WHERE NEW.answered_at IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.answered_at IS NULL)
        UNION ALL
        SELECT 3, '', 'call.held', NEW.hold_at, '{}'
        WHERE NEW.state <> 'ended' AND (CASE WHEN TG_OP = 'INSERT' THEN NEW.on_hold ELSE OLD.on_hold <> NEW.on_hold END)
        UNION ALL
        SELECT 4, p.k, 'call.dtmf', to_timestamp(split_part(p.k, ':', 1)::bigint / 1000000.0),
               jsonb_build_object('press', p.k)
        FROM (SELECT unnest(NEW.dtmf_presses) AS k
              EXCEPT
              SELECT unnest(CASE WHEN TG_OP = 'INSERT' THEN '{}'::text[] ELSE OLD.dtmf_presses END)) p
        UNION ALL
        SELECT 5, '', 'call.ended', NEW.ended_at, '{}'
        WHERE NEW.state = 'ended' AND (TG_OP = 'INSERT' OR OLD.state <> 'ended')
    ) e
    ORDER BY e.ord, e.k;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        INSERT INTO call_feed (type, at, journey_id, source, call_key, data)
        VALUES ('call.updated', NEW.updated_at, NEW.journey_id, NEW.source, NEW.call_key, c);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER call_state_feed AFTER INSERT OR UPDATE ON call_state
    FOR EACH ROW EXECUTE FUNCTION callstate_feed_call();

-- callstate_feed_journey writes the events of a change of a journey row:
-- journey.ended when it stops being active, call.missed and
-- call.voicemail when its outcome becomes one of them. Journeys are
-- written under an advisory lock per journey and only when they change
-- (callstate_refresh_journeys), so each transition is seen by one write.
CREATE FUNCTION callstate_feed_journey() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    j jsonb;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.outcome = NEW.outcome AND OLD.ended_at IS NOT DISTINCT FROM NEW.ended_at THEN
        RETURN NULL;
    END IF;
    j := jsonb_build_object('journey_id', NEW.journey_id, 'journey', to_jsonb(NEW));
    INSERT INTO call_feed (type, at, journey_id, source, data)
    SELECT e.type, coalesce(e.at, NEW.updated_at), NEW.journey_id, NEW.source, j
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
    ORDER BY e.ord;
    RETURN NULL;
END
$$;

CREATE TRIGGER journey_feed AFTER INSERT OR UPDATE ON journey
    FOR EACH ROW EXECUTE FUNCTION callstate_feed_journey();

-- call_feed_lamp: every lamp as the feed last told it.
CREATE TABLE call_feed_lamp (
    source       text    NOT NULL,
    extension    text    NOT NULL,
    name         text    NOT NULL,
    lamp         text    NOT NULL,
    active_calls bigint  NOT NULL,
    PRIMARY KEY (source, extension)
);

COMMENT ON TABLE call_feed_lamp IS 'Each lamp as call_feed last told it; callstate_feed_lamps compares the lamp view with it.';

INSERT INTO call_feed_lamp (source, extension, name, lamp, active_calls)
SELECT source, extension, name, lamp, active_calls FROM lamp;

-- callstate_feed_lamps writes lamp.changed (the lamp changed) or
-- lamp.updated (only its count of calls or its name) for every lamp that
-- differs from call_feed_lamp, a removed one as lamp "removed", and
-- returns how many it wrote. One runs at a time (an advisory lock), and
-- the lamps are read after the lock, so each change is written once;
-- changes back and forth between two runs are not seen.
CREATE FUNCTION callstate_feed_lamps() RETURNS integer
LANGUAGE plpgsql AS $$
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
    )
    INSERT INTO call_feed (type, at, source, data)
    SELECT CASE WHEN d.lamp <> d.previous THEN 'lamp.changed' ELSE 'lamp.updated' END,
           d.updated_at, d.source,
           jsonb_build_object('lamp', jsonb_build_object('source', d.source, 'extension', d.extension,
                                                         'name', d.name, 'lamp', d.lamp,
                                                         'active_calls', d.active_calls,
                                                         'updated_at', d.updated_at),
                              'previous', d.previous)
    FROM diff d
    ORDER BY d.source, d.extension;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
