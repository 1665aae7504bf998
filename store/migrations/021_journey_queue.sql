-- journey_pending: the calls whose journeys must be computed again, kept
-- with the writes that cause them. Each batch of events inserts its calls
-- here in its own transaction, so a committed leg always has its row; any
-- instance's refresher takes rows (FOR UPDATE SKIP LOCKED), computes their
-- journeys and deletes the rows in one transaction. An instance that dies
-- before it commits leaves the rows, unlocked as soon as its connection
-- is gone, to the next instance that looks (every second). Rows are only
-- inserted and deleted, so writers never wait for one another or for a
-- refresher here.
CREATE TABLE journey_pending (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source   text        NOT NULL,
    call_key text        NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE journey_pending IS 'Calls whose journeys wait to be computed again; written with their events, taken by any instance.';
