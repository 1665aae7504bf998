-- The journal is partitioned by day (received_at, UTC), so that retention
-- (RETENTION_EVENTS) drops a day's events as one table instead of deleting
-- them row by row. A unique constraint of a partitioned table must contain
-- its partition key, and a repeated event comes with a receive time of its
-- own, so the dedup keys move to a table of their own, call_event_key, not
-- partitioned: an event is journaled only if its key is new there, in the
-- same statement, so that a repeat is told apart across partitions exactly
-- as before. Retention deletes the keys of the dropped days with them.
--
-- The journal's rows are copied into the new table, in this migration's
-- transaction (it takes a while at millions of rows), with their ids.

ALTER TABLE call_event RENAME TO call_event_unpartitioned;

CREATE TABLE call_event (
    id          bigint      NOT NULL,
    source      text        NOT NULL,
    dedup_key   text        NOT NULL,
    call_key    text        NOT NULL,
    type        text        NOT NULL,
    received_at timestamptz NOT NULL,
    payload     bytea       NOT NULL,
    call_update bytea
) PARTITION BY RANGE (received_at);

COMMENT ON TABLE call_event IS 'Append-only journal of every accepted event, payload as received; one partition a day (UTC) of received_at, call_event_YYYYMMDD.';
COMMENT ON COLUMN call_event.call_update IS 'What the event told about its call: callstate.Update as UTF-8 JSON (convert_from(call_update, ''UTF8'')::jsonb); NULL for events journaled before migration 010.';

CREATE TABLE call_event_key (
    source      text        NOT NULL,
    dedup_key   text        NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (source, dedup_key)
);

COMMENT ON TABLE call_event_key IS 'The dedup key of every event in call_event, with its receive time: a repeated event is not journaled again, whatever its partition.';

-- callstate_journal_partition creates the journal's partition of day (UTC)
-- unless it exists, and says whether it did. Instances creating the same
-- day at once wait for each other.
CREATE FUNCTION callstate_journal_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'call_event_' || to_char(day, 'YYYYMMDD');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('callstate_journal_partition'));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF call_event FOR VALUES FROM (%L) TO (%L)', name,
                   day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    RETURN true;
END $$;

SELECT callstate_journal_partition(d)
FROM (SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date AS d FROM call_event_unpartitioned
      UNION
      SELECT generate_series((now() AT TIME ZONE 'UTC')::date - 1, (now() AT TIME ZONE 'UTC')::date + 7, interval '1 day')::date) days
ORDER BY d;

INSERT INTO call_event (id, source, dedup_key, call_key, type, received_at, payload, call_update)
SELECT id, source, dedup_key, call_key, type, received_at, payload, call_update FROM call_event_unpartitioned;

INSERT INTO call_event_key (source, dedup_key, received_at)
SELECT source, dedup_key, received_at FROM call_event_unpartitioned;

CREATE SEQUENCE call_event_ids AS bigint OWNED BY call_event.id;
SELECT setval('call_event_ids', coalesce((SELECT max(id) FROM call_event_unpartitioned), 0) + 1, false);
ALTER TABLE call_event ALTER COLUMN id SET DEFAULT nextval('call_event_ids');

DROP TABLE call_event_unpartitioned;

ALTER TABLE call_event ADD PRIMARY KEY (id, received_at);
CREATE INDEX call_event_call_idx ON call_event (source, call_key, id);
-- Retention deletes the keys of whole days; they come in (nearly) in order.
CREATE INDEX call_event_key_received_idx ON call_event_key USING brin (received_at);
