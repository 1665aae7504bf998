-- PBX extensions watched by the SIP subscriber, and their lamps.
-- Rows can be added, disabled or removed at runtime; the subscriber picks
-- changes up without a restart. SIP_EXTENSIONS seeds rows at start.

CREATE TABLE sip_extension (
    extension       text        PRIMARY KEY CHECK (extension ~ '^[A-Za-z0-9._~*#+-]{1,64}$'),
    enabled         boolean     NOT NULL DEFAULT true,
    subscription    text        NOT NULL DEFAULT 'pending'
                                CHECK (subscription IN ('pending', 'active', 'retrying', 'refused', 'terminated')),
    reason          text        NOT NULL DEFAULT '',
    presence_status text        NOT NULL DEFAULT ''
                                CHECK (presence_status IN ('', 'idle', 'ringing', 'busy', 'unavailable')),
    presence_note   text        NOT NULL DEFAULT '',
    added_at        timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE sip_extension IS 'PBX extensions the SIP subscriber watches; insert a row to watch one more.';
COMMENT ON COLUMN sip_extension.subscription IS 'State of the dialog subscription: pending, active, retrying, refused (will not retry), terminated.';
COMMENT ON COLUMN sip_extension.reason IS 'Why the subscription is not active, as the PBX or the subscriber said.';

CREATE INDEX call_state_active_by_extension_idx ON call_state (source, extension)
    WHERE state IN ('ringing', 'answered');

-- sip_lamp is what a BLF key shows for each watched extension:
-- unavailable (not watched or subscription down), hold (every answered call
-- held), busy (in a call), ringing, else the presence status or idle.
CREATE VIEW sip_lamp AS
SELECT e.extension,
       CASE
           WHEN NOT e.enabled OR e.subscription <> 'active' THEN 'unavailable'
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

COMMENT ON VIEW sip_lamp IS 'Current lamp of every watched PBX extension: idle, ringing, busy, hold or unavailable.';
