-- Dashboards: a change sequence and notifications for the live stream,
-- sipgate users and their lamps, views for SQL dashboards, and indexes for
-- the HTTP API's filters.
--
-- Every write to call_state or sip_extension takes the next value of
-- change_seq and sends NOTIFY callstate with a small payload naming the row
-- ("call <id> <seq>", "ext <seq> <extension>"); listeners re-read the row.
-- The notification is sent when, and only if, the write commits. The stream's
-- event ids are change_seq values, shared by every instance, so a client can
-- resume on any instance with Last-Event-ID.

CREATE SEQUENCE change_seq AS bigint;

ALTER TABLE call_state ADD COLUMN change_seq bigint NOT NULL DEFAULT nextval('change_seq');
ALTER TABLE sip_extension ADD COLUMN change_seq bigint NOT NULL DEFAULT nextval('change_seq');

COMMENT ON COLUMN call_state.change_seq IS 'Value of the change_seq sequence at the last write: the live stream''s event id.';
COMMENT ON COLUMN sip_extension.change_seq IS 'Value of the change_seq sequence at the last write: the live stream''s event id.';

-- sipgate_user: the sipgate users seen in calls (the users a call was
-- offered to, and the one whose call it is), so that each has a lamp even
-- when idle. Kept by call_state's trigger.
CREATE TABLE sipgate_user (
    user_id    text        PRIMARY KEY,
    name       text        NOT NULL DEFAULT '',
    first_seen timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE sipgate_user IS 'sipgate users seen in calls (userId and name); delete a row to hide a user''s lamp until its next call.';

INSERT INTO sipgate_user (user_id, name)
SELECT DISTINCT ON (id) id, name
FROM (
    SELECT u.id, coalesce(u.name, '') AS name
    FROM call_state c, unnest(c.user_ids, c.users) AS u(id, name)
    WHERE c.source = 'sipgate'
    UNION ALL
    SELECT extension, '' FROM call_state WHERE source = 'sipgate'
) x
WHERE id IS NOT NULL AND id <> ''
ORDER BY id, name DESC;

CREATE FUNCTION change_seq_next() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.change_seq := nextval('change_seq');
    RETURN NEW;
END
$$;

-- Inserts take change_seq from the column default; updates from this trigger.
CREATE TRIGGER call_state_change_seq BEFORE UPDATE ON call_state
    FOR EACH ROW EXECUTE FUNCTION change_seq_next();
CREATE TRIGGER sip_extension_change_seq BEFORE UPDATE ON sip_extension
    FOR EACH ROW EXECUTE FUNCTION change_seq_next();

CREATE FUNCTION call_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.source = 'sipgate' AND (TG_OP = 'INSERT'
        OR OLD.extension IS DISTINCT FROM NEW.extension
        OR OLD.user_ids IS DISTINCT FROM NEW.user_ids) THEN
        INSERT INTO sipgate_user AS s (user_id, name)
        SELECT DISTINCT ON (id) id, name
        FROM (
            SELECT u.id, coalesce(u.name, '') AS name FROM unnest(NEW.user_ids, NEW.users) AS u(id, name)
            UNION ALL
            SELECT NEW.extension, ''
        ) x
        WHERE id IS NOT NULL AND id <> ''
        ORDER BY id, name DESC
        ON CONFLICT (user_id) DO UPDATE SET name = EXCLUDED.name
            WHERE s.name = '' AND EXCLUDED.name <> '';
    END IF;
    PERFORM pg_notify('callstate', 'call ' || NEW.id || ' ' || NEW.change_seq);
    RETURN NULL;
END
$$;

CREATE TRIGGER call_state_changed AFTER INSERT OR UPDATE ON call_state
    FOR EACH ROW EXECUTE FUNCTION call_state_changed();

CREATE FUNCTION sip_extension_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('callstate', 'ext ' || nextval('change_seq') || ' ' || OLD.extension);
    ELSE
        PERFORM pg_notify('callstate', 'ext ' || NEW.change_seq || ' ' || NEW.extension);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER sip_extension_changed AFTER INSERT OR UPDATE OR DELETE ON sip_extension
    FOR EACH ROW EXECUTE FUNCTION sip_extension_changed();

-- Indexes for the API's filters and for dashboards over millions of rows.
CREATE INDEX call_state_change_seq_idx ON call_state (change_seq);
CREATE INDEX call_state_updated_idx ON call_state (updated_at, id);
CREATE INDEX call_state_started_idx ON call_state (started_at, id);
CREATE INDEX call_state_extension_idx ON call_state (extension, id);
CREATE INDEX call_state_active_idx ON call_state (id) WHERE state IN ('ringing', 'answered');

-- active_calls: calls ringing or answered now, with how long they have been
-- in their state.
CREATE VIEW active_calls AS
SELECT id, source, extension, direction, from_party, to_party, users, answered_by,
       state::text AS state, on_hold, started_at, answered_at, updated_at,
       now() - coalesce(answered_at, started_at) AS duration
FROM call_state
WHERE state IN ('ringing', 'answered');

COMMENT ON VIEW active_calls IS 'Calls ringing or answered now; duration is since answered (or since the first event while ringing).';

-- call_history: ended calls with their ring and talk times.
CREATE VIEW call_history AS
SELECT id, source, extension, direction, from_party, to_party, users, answered_by,
       answered_at IS NOT NULL AS answered, hangup_cause,
       started_at, answered_at, ended_at,
       coalesce(answered_at, ended_at) - started_at AS ring_time,
       ended_at - answered_at AS talk_time
FROM call_state
WHERE state = 'ended';

COMMENT ON VIEW call_history IS 'Ended calls; talk_time is null for calls never answered.';

-- user_lamp: the lamp of every sipgate user. sipgate tells neither hold nor
-- registration, so a user is busy (an answered call is theirs: call_state.
-- extension, pinned to who answered), ringing (a ringing call is theirs or
-- offered to them: user_ids), else idle.
CREATE VIEW user_lamp AS
SELECT u.user_id AS extension,
       u.name,
       CASE
           WHEN a.answered > 0 THEN 'busy'
           WHEN a.ringing > 0  THEN 'ringing'
           ELSE 'idle'
       END AS lamp,
       a.active_calls,
       coalesce(a.last_change, u.first_seen) AS updated_at
FROM sipgate_user u
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE c.state = 'answered') AS answered,
           count(*) FILTER (WHERE c.state = 'ringing')  AS ringing,
           count(*)                                     AS active_calls,
           max(c.updated_at)                            AS last_change
    FROM call_state c
    WHERE c.source = 'sipgate' AND c.state IN ('ringing', 'answered')
      AND (c.extension = u.user_id OR (c.state = 'ringing' AND u.user_id = ANY (c.user_ids)))
) a;

COMMENT ON VIEW user_lamp IS 'Current lamp of every sipgate user seen in calls: idle, ringing or busy.';

-- lamp: every lamp, PBX extensions (sip_lamp) and sipgate users (user_lamp).
CREATE VIEW lamp AS
SELECT 'sip'::text AS source, extension, ''::text AS name, lamp, active_calls, updated_at
FROM sip_lamp
UNION ALL
SELECT 'sipgate'::text, extension, name, lamp, active_calls, updated_at
FROM user_lamp;

COMMENT ON VIEW lamp IS 'Lamp of every PBX extension (source sip) and sipgate user (source sipgate): idle, ringing, busy, hold or unavailable.';
