-- One row per call, whichever source reported it, and the journal of every
-- accepted event. Merge rules live in callstate.Call.Apply; store.go
-- implements them in one upsert.

CREATE TYPE call_phase AS ENUM ('unknown', 'ringing', 'answered', 'ended');

CREATE TABLE call_state (
    id               bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    source           text        NOT NULL CHECK (source IN ('sipgate', 'sip')),
    call_key         text        NOT NULL,
    call_id          text        NOT NULL DEFAULT '',
    orig_call_id     text        NOT NULL DEFAULT '',
    extension        text        NOT NULL DEFAULT '',
    direction        text        NOT NULL DEFAULT '' CHECK (direction IN ('', 'in', 'out')),
    from_party       text        NOT NULL DEFAULT '',
    to_party         text        NOT NULL DEFAULT '',
    users            text[]      NOT NULL DEFAULT '{}',
    user_ids         text[]      NOT NULL DEFAULT '{}',
    full_user_ids    text[]      NOT NULL DEFAULT '{}',
    answered_by      text        NOT NULL DEFAULT '',
    answering_number text        NOT NULL DEFAULT '',
    diversion        text        NOT NULL DEFAULT '',
    xcid             text        NOT NULL DEFAULT '',
    state            call_phase  NOT NULL,
    on_hold          boolean     NOT NULL DEFAULT false,
    hangup_cause     text        NOT NULL DEFAULT '',
    dtmf             text        NOT NULL DEFAULT '',
    started_at       timestamptz,
    answered_at      timestamptz,
    ended_at         timestamptz,
    updated_at       timestamptz NOT NULL,
    last_event_id    bigint      NOT NULL,
    PRIMARY KEY (source, call_key)
);

COMMENT ON TABLE call_state IS 'Current state of every call, one row per call and source.';
COMMENT ON COLUMN call_state.call_key IS 'Identity of the call within its source: sipgate callId, or SIP entity and dialog id.';
COMMENT ON COLUMN call_state.extension IS 'Extension or user the call concerns: the watched SIP extension, or the sipgate user id.';
COMMENT ON COLUMN call_state.direction IS 'in: the call came to us; out: we placed it; empty: unknown.';
COMMENT ON COLUMN call_state.dtmf IS 'All DTMF digits received for the call, in order of arrival.';
COMMENT ON COLUMN call_state.started_at IS 'Earliest event about the call.';
COMMENT ON COLUMN call_state.last_event_id IS 'call_event.id of the last event applied.';

CREATE TABLE call_event (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text        NOT NULL,
    dedup_key   text        NOT NULL,
    call_key    text        NOT NULL,
    type        text        NOT NULL,
    received_at timestamptz NOT NULL,
    payload     bytea       NOT NULL,
    UNIQUE (source, dedup_key)
);

COMMENT ON TABLE call_event IS 'Append-only journal of every accepted event, payload as received.';

CREATE INDEX call_event_call_idx ON call_event (source, call_key, id);
