-- Several callstate instances against one database share the watched
-- extensions: each extension is leased to one live instance, which renews
-- the lease while it runs. A dead instance's leases run out and others
-- take them over.

CREATE TABLE callstate_instance (
    id         text        PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE callstate_instance IS 'Running callstate instances and their last heartbeat.';

ALTER TABLE sip_extension
    ADD COLUMN owner       text        NOT NULL DEFAULT '',
    ADD COLUMN lease_until timestamptz;

COMMENT ON COLUMN sip_extension.owner IS 'callstate instance that watches the extension; empty: none.';
COMMENT ON COLUMN sip_extension.lease_until IS 'The owner must renew its lease before this; after it, the extension is free to take.';

-- A lamp whose watcher stopped renewing its lease is unavailable: nobody
-- is listening to the PBX for it.
CREATE OR REPLACE VIEW sip_lamp AS
SELECT e.extension,
       CASE
           WHEN NOT e.enabled OR e.subscription <> 'active'
                OR e.lease_until < now()                    THEN 'unavailable'
           WHEN a.answered > 0 AND a.answered = a.held      THEN 'hold'
           WHEN a.answered > 0                               THEN 'busy'
           WHEN a.ringing > 0                                THEN 'ringing'
           WHEN e.presence_status IN ('busy', 'ringing', 'unavailable') THEN e.presence_status
           ELSE 'idle'
       END AS lamp,
       a.active_calls,
       e.subscription,
       e.reason,
       e.presence_status,
       e.presence_note,
       GREATEST(e.updated_at, a.last_change) AS updated_at
FROM sip_extension e
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE c.state = 'answered')                AS answered,
           count(*) FILTER (WHERE c.state = 'answered' AND c.on_hold)  AS held,
           count(*) FILTER (WHERE c.state = 'ringing')                 AS ringing,
           count(*)                                                    AS active_calls,
           max(c.updated_at)                                           AS last_change
    FROM call_state c
    WHERE c.source = 'sip' AND c.extension = e.extension AND c.state IN ('ringing', 'answered')
) a;
