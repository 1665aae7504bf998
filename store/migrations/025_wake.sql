-- Waking the phone before it rings (docs/wake.md): the devices that
-- subscribed to Web Push for a sipgate user or a PBX extension, one-time
-- enrollment tokens, the VAPID key every instance signs with, and the
-- pushes made (one per journey) with the devices' "ready" answers.
--
-- Credentials are kept as SHA-256 hashes only (they are 32 random bytes:
-- no salt or stretching is needed); what the device or the link holds
-- cannot be read back from here.

CREATE TABLE wake_device (
    id           text        PRIMARY KEY,
    user_id      text        NOT NULL DEFAULT '',
    extension    text        NOT NULL DEFAULT '',
    name         text        NOT NULL DEFAULT '',
    endpoint     text        NOT NULL UNIQUE,
    p256dh       text        NOT NULL,
    auth         text        NOT NULL,
    secret_hash  bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((user_id = '') <> (extension = ''))
);

COMMENT ON TABLE wake_device IS 'Web Push subscriptions of a sipgate user or a PBX extension; secret_hash: SHA-256 of the device credential.';

CREATE INDEX wake_device_user_idx ON wake_device (user_id) WHERE user_id <> '';
CREATE INDEX wake_device_extension_idx ON wake_device (extension) WHERE extension <> '';

CREATE TABLE wake_enrollment (
    token_hash bytea       PRIMARY KEY,
    user_id    text        NOT NULL,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE wake_enrollment IS 'One-time links that register one device for one user; deleted when used.';

-- One key for all instances: the first to start makes it (insert if
-- absent), the others read it.
CREATE TABLE wake_vapid (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    private_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE wake_vapid IS 'The VAPID key pair (PKCS #8) every instance signs Web Push requests with.';

-- A journey's push: the first instance to insert its row pushes, no other
-- (one push per journey); the feed clears it once (cleared_at).
CREATE TABLE wake_push (
    journey_id  text        PRIMARY KEY,
    call_id     text        NOT NULL,
    user_ids    text[]      NOT NULL DEFAULT '{}',
    extension   text        NOT NULL DEFAULT '',
    pushed_at   timestamptz NOT NULL DEFAULT now(),
    cleared_at  timestamptz,
    clear_reason text       NOT NULL DEFAULT ''
);

CREATE INDEX wake_push_call_idx ON wake_push (call_id);
CREATE INDEX wake_push_pushed_idx ON wake_push (pushed_at);

CREATE TABLE wake_ready (
    call_id   text        NOT NULL,
    device_id text        NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, device_id)
);

CREATE INDEX wake_ready_at_idx ON wake_ready (at);

-- How far the feed has been read for clears and PBX pushes (one instance
-- at a time, the row locked).
CREATE TABLE wake_cursor (
    one    boolean PRIMARY KEY DEFAULT true CHECK (one),
    cursor bigint  NOT NULL
);

INSERT INTO wake_cursor (cursor) SELECT head FROM call_feed_head;

-- Every instance keeps the set of users and extensions with devices in
-- memory: a change to the devices tells them all.
CREATE FUNCTION callstate_wake_devices_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('callstate', 'devices 0 -');
    RETURN NULL;
END $$;

CREATE TRIGGER wake_device_changed AFTER INSERT OR UPDATE OF user_id, extension OR DELETE ON wake_device
FOR EACH STATEMENT EXECUTE FUNCTION callstate_wake_devices_changed();
