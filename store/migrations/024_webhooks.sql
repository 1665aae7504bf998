-- Webhooks out (package webhook): endpoints, and one delivery per feed
-- event and endpoint, with its tries.
--
-- A delivery is made from the feed by any instance, for one endpoint at a
-- time (its row locked): the feed's events after the endpoint's cursor
-- become deliveries, in feed order, and the cursor moves, in one
-- transaction. Any instance then takes due deliveries (FOR UPDATE SKIP
-- LOCKED) and leases them (next_at moves past the HTTP timeout) while it
-- sends them; a crash means the lease runs out and another instance sends
-- again, with the same webhook-id and body. A delivery is only taken when
-- no earlier pending one of the same endpoint and order key (the call's
-- journey) is waiting: one call's events reach an endpoint in order.

CREATE TABLE webhook_endpoint (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    secrets         text[]      NOT NULL,
    previous_until  timestamptz,
    types           text[]      NOT NULL DEFAULT '{}',
    format          text        NOT NULL DEFAULT 'standard' CHECK (format IN ('standard', 'zammad', 'chat')),
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_reason text        NOT NULL DEFAULT '',
    from_config     boolean     NOT NULL DEFAULT false,
    cursor          bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE webhook_endpoint IS 'Endpoints that receive the feed''s events (Standard Webhooks); cursor: the feed id up to which deliveries are made.';

CREATE UNIQUE INDEX webhook_endpoint_config_idx ON webhook_endpoint (from_config) WHERE from_config;

CREATE TABLE webhook_delivery (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id  bigint      NOT NULL REFERENCES webhook_endpoint ON DELETE CASCADE,
    feed_id      bigint      NOT NULL,
    msg_id       text        NOT NULL,
    journey_id   text        NOT NULL DEFAULT '',
    order_key    text        NOT NULL,
    type         text        NOT NULL,
    body         bytea       NOT NULL,
    content_type text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts     integer     NOT NULL DEFAULT 0,
    next_at      timestamptz NOT NULL DEFAULT now(),
    last_status  integer     NOT NULL DEFAULT 0,
    last_error   text        NOT NULL DEFAULT '',
    delivered_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE webhook_delivery IS 'One message (msg_id, body) to one endpoint, whatever the tries.';

CREATE INDEX webhook_delivery_due_idx ON webhook_delivery (next_at) WHERE status = 'pending';
CREATE INDEX webhook_delivery_order_idx ON webhook_delivery (endpoint_id, order_key, id) WHERE status = 'pending';
CREATE INDEX webhook_delivery_endpoint_idx ON webhook_delivery (endpoint_id, id);
CREATE INDEX webhook_delivery_journey_idx ON webhook_delivery (journey_id) WHERE journey_id <> '';
CREATE INDEX webhook_delivery_created_idx ON webhook_delivery (created_at);

CREATE TABLE webhook_attempt (
    delivery_id bigint      NOT NULL REFERENCES webhook_delivery ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    status      integer     NOT NULL,
    error       text        NOT NULL,
    duration_ms integer     NOT NULL
);

COMMENT ON TABLE webhook_attempt IS 'Every try of a delivery: HTTP status (0: none came) or error.';

CREATE INDEX webhook_attempt_delivery_idx ON webhook_attempt (delivery_id, at);
