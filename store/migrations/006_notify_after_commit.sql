-- A NOTIFY inside the writing transaction serialises commits (PostgreSQL
-- takes a global lock on the notification queue at commit) and halved the
-- webhook write rate. Writes to call_state are now announced by the store
-- after they commit, one coalesced NOTIFY for many writes; listeners then
-- read what changed by change_seq. change_seq is set by the upsert itself
-- instead of a trigger. sip_extension, written rarely and by hand too,
-- keeps its triggers.

DROP TRIGGER call_state_changed ON call_state;
DROP TRIGGER call_state_change_seq ON call_state;
DROP FUNCTION call_state_changed();

-- Keep sipgate_user (the users a sipgate call was offered to, for their
-- lamps) up to date; the WHEN conditions keep the function off the write
-- path of every other row. ON CONFLICT DO NOTHING and an UPDATE that
-- matches only a missing name take no lock on a known user's row: with
-- DO UPDATE, every new call to the same user waited for the previous one
-- to commit.
CREATE FUNCTION sipgate_users_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sipgate_user (user_id, name)
    SELECT DISTINCT ON (id) id, name
    FROM (
        SELECT u.id, coalesce(u.name, '') AS name FROM unnest(NEW.user_ids, NEW.users) AS u(id, name)
        UNION ALL
        SELECT NEW.extension, ''
    ) x
    WHERE id IS NOT NULL AND id <> ''
    ORDER BY id, name DESC
    ON CONFLICT (user_id) DO NOTHING;
    UPDATE sipgate_user s SET name = u.name
    FROM unnest(NEW.user_ids, NEW.users) AS u(id, name)
    WHERE s.user_id = u.id AND s.name = '' AND coalesce(u.name, '') <> '';
    RETURN NULL;
END
$$;

CREATE TRIGGER call_state_sipgate_users_insert AFTER INSERT ON call_state
    FOR EACH ROW WHEN (NEW.source = 'sipgate')
    EXECUTE FUNCTION sipgate_users_seen();
CREATE TRIGGER call_state_sipgate_users_update AFTER UPDATE ON call_state
    FOR EACH ROW WHEN (NEW.source = 'sipgate' AND (OLD.extension IS DISTINCT FROM NEW.extension
                                                   OR OLD.user_ids IS DISTINCT FROM NEW.user_ids))
    EXECUTE FUNCTION sipgate_users_seen();
