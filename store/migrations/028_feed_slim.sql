-- The feed, slimmer: what a feed row costs the webhook path.
--
-- Measured (pg_stat_statements, docs/benchmarks.md), each call row's event
-- was the whole row as JSON (about 1 kB, written once) and then written
-- again, whole, with every index, when callstate_feed_assign numbered it:
-- the feed wrote 2.5 times the WAL of the rest of an event's write. Now:
--
--   * A call event keeps only what its transition changes (state, hold,
--     answer and end times, cause, who answered, change_seq, the time of
--     the write) and the call row's id; the rest of the call (parties,
--     users, direction, ...) is joined from call_state when the feed is
--     read. A journey event keeps the outcome and end it told; the rest of
--     the journey is joined from journey. Lamps keep their JSON (few, small).
--   * Numbering no longer rewrites the row. A new row's seq goes into
--     call_feed_new (one bigint) in the same statement; after commit,
--     callstate_feed_assign moves the committed seqs from call_feed_new to
--     call_feed_id (id, seq), in seq order, from call_feed_head, under the
--     same lock as before: ids are still given only to committed rows, each
--     above every id given before, so a reader that read up to id N and
--     reads id > N later misses nothing, however late a row committed.
--   * Indexes: the feed's rows are found by id (call_feed_id), by journey
--     (erasure: a call's events carry its journey) and by time (retention,
--     a BRIN index, which costs nothing per row).
--
-- call_feed_event is the feed as it reads: id, type, at, journey_id,
-- source, call_key and data (the JSON the triggers wrote before).

DROP INDEX call_feed_unnumbered_idx;
DROP INDEX call_feed_call_idx;
DROP INDEX call_feed_created_idx;

ALTER TABLE call_feed
    ALTER COLUMN data DROP NOT NULL,
    ADD COLUMN call_id     bigint,
    ADD COLUMN state       text,
    ADD COLUMN on_hold     boolean,
    ADD COLUMN answered_at timestamptz,
    ADD COLUMN ended_at    timestamptz,
    ADD COLUMN cause       text,
    ADD COLUMN answered_by text,
    ADD COLUMN change_seq  bigint,
    ADD COLUMN updated_at  timestamptz,
    ADD COLUMN outcome     text;

COMMENT ON COLUMN call_feed.call_id IS 'call.* events: call_state.id; the call is read joined, with the columns state .. updated_at as the transition left them.';
COMMENT ON COLUMN call_feed.outcome IS 'Journey events: the outcome told (with ended_at); the rest of the journey is read joined.';
COMMENT ON COLUMN call_feed.data IS 'lamp.* events: the lamp; call.dtmf: the press; else NULL (old rows: the whole call or journey).';

CREATE INDEX call_feed_created_brin ON call_feed USING brin (created_at);

CREATE TABLE call_feed_new (
    seq bigint PRIMARY KEY
);

COMMENT ON TABLE call_feed_new IS 'Feed rows written and not numbered yet (their seq); callstate_feed_assign moves them to call_feed_id.';

CREATE TABLE call_feed_id (
    id  bigint PRIMARY KEY,
    seq bigint NOT NULL
);

COMMENT ON TABLE call_feed_id IS 'Feed ids, in commit order: call_feed row seq got id.';

INSERT INTO call_feed_id (id, seq) SELECT id, seq FROM call_feed WHERE id IS NOT NULL;
INSERT INTO call_feed_new (seq) SELECT seq FROM call_feed WHERE id IS NULL;
ALTER TABLE call_feed DROP COLUMN id;

CREATE OR REPLACE FUNCTION callstate_feed_assign(max_rows integer) RETURNS integer
LANGUAGE plpgsql AS $$
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

-- callstate_feed_call: as in migration 020 (the events, and why each is
-- written once), with the slim row.
CREATE OR REPLACE FUNCTION callstate_feed_call() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
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
    WITH ins AS (
        INSERT INTO call_feed (type, at, journey_id, source, call_key, data, call_id, state, on_hold,
                               answered_at, ended_at, cause, answered_by, change_seq, updated_at)
        SELECT e.type, coalesce(e.at, NEW.updated_at), NEW.journey_id, NEW.source, NEW.call_key, e.extra,
               NEW.id, NEW.state, NEW.on_hold, NEW.answered_at, NEW.ended_at, NEW.hangup_cause,
               NEW.answered_by, NEW.change_seq, NEW.updated_at
        FROM (
            SELECT 1 AS ord, '' AS k, 'call.ringing' AS type, NEW.started_at AS at, NULL::jsonb AS extra
            WHERE TG_OP = 'INSERT'
            UNION ALL
            SELECT 2, '', 'call.answered', NEW.answered_at, NULL
            WHERE NEW.answered_at IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.answered_at IS NULL)
            UNION ALL
            SELECT 3, '', 'call.held', NEW.hold_at, NULL
            WHERE NEW.state <> 'ended' AND (CASE WHEN TG_OP = 'INSERT' THEN NEW.on_hold ELSE OLD.on_hold <> NEW.on_hold END)
            UNION ALL
            SELECT 4, p.k, 'call.dtmf', to_timestamp(split_part(p.k, ':', 1)::bigint / 1000000.0),
                   jsonb_build_object('press', p.k)
            FROM (SELECT unnest(NEW.dtmf_presses) AS k
                  EXCEPT
                  SELECT unnest(CASE WHEN TG_OP = 'INSERT' THEN '{}'::text[] ELSE OLD.dtmf_presses END)) p
            UNION ALL
            SELECT 5, '', 'call.ended', NEW.ended_at, NULL
            WHERE NEW.state = 'ended' AND (TG_OP = 'INSERT' OR OLD.state <> 'ended')
        ) e
        ORDER BY e.ord, e.k
        RETURNING seq
    )
    INSERT INTO call_feed_new (seq) SELECT seq FROM ins;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        WITH ins AS (
            INSERT INTO call_feed (type, at, journey_id, source, call_key, call_id, state, on_hold,
                                   answered_at, ended_at, cause, answered_by, change_seq, updated_at)
            VALUES ('call.updated', NEW.updated_at, NEW.journey_id, NEW.source, NEW.call_key,
                    NEW.id, NEW.state, NEW.on_hold, NEW.answered_at, NEW.ended_at, NEW.hangup_cause,
                    NEW.answered_by, NEW.change_seq, NEW.updated_at)
            RETURNING seq
        )
        INSERT INTO call_feed_new (seq) SELECT seq FROM ins;
    END IF;
    RETURN NULL;
END
$$;

-- callstate_feed_journey: as in migration 020, with the slim row.
CREATE OR REPLACE FUNCTION callstate_feed_journey() RETURNS trigger
LANGUAGE plpgsql AS $$
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

-- callstate_feed_lamps: as in migration 020; its rows go to call_feed_new.
CREATE OR REPLACE FUNCTION callstate_feed_lamps() RETURNS integer
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

-- call_feed_event: the feed as readers see it, numbered, each event with
-- its call or journey as JSON (data), as migration 020 wrote it: the
-- call's or journey's row now, with what the transition changed as the
-- transition left it.
CREATE VIEW call_feed_event AS
SELECT i.id, f.type, f.at, f.journey_id, f.source, f.call_key, f.created_at,
       CASE
           WHEN f.call_id IS NOT NULL THEN
               jsonb_build_object('journey_id', f.journey_id, 'call',
                   coalesce(to_jsonb(c), jsonb_build_object('id', f.call_id, 'source', f.source,
                                                            'call_key', f.call_key, 'journey_id', f.journey_id))
                   || jsonb_build_object('state', f.state, 'on_hold', f.on_hold, 'answered_at', f.answered_at,
                                         'ended_at', f.ended_at, 'hangup_cause', f.cause,
                                         'answered_by', f.answered_by, 'change_seq', f.change_seq,
                                         'updated_at', f.updated_at))
               || coalesce(f.data, '{}')
           WHEN f.outcome IS NOT NULL THEN
               jsonb_build_object('journey_id', f.journey_id, 'journey',
                   coalesce(to_jsonb(j), jsonb_build_object('journey_id', f.journey_id, 'source', f.source))
                   || jsonb_build_object('outcome', f.outcome, 'ended_at', f.ended_at))
           ELSE f.data
       END AS data
FROM call_feed_id i
JOIN call_feed f ON f.seq = i.seq
LEFT JOIN call_state c ON f.call_id IS NOT NULL AND c.id = f.call_id
LEFT JOIN journey j ON f.outcome IS NOT NULL AND j.journey_id = f.journey_id;

COMMENT ON VIEW call_feed_event IS 'The feed as it reads: id (commit order), type, at, journey_id, data (the call or journey as JSON, lamp.* the lamp). Read it by id: WHERE id > $1 ORDER BY id.';
