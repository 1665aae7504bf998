-- The journal keeps what each event told about its call (callstate.Update,
-- as JSON) beside the raw payload, so that a call's row can be computed
-- again from its journal alone (store.Recompute), whatever source and
-- adapter state made the event. Rows journaled before have none. It is
-- kept as bytes (UTF-8 JSON) rather than jsonb: parsing it into jsonb on
-- every write cost about twice what the bytes do (webhook rate -12 to -15 %
-- against -7 to -8 %); read it with convert_from(call_update, 'UTF8')::jsonb.

ALTER TABLE call_event ADD COLUMN call_update bytea;

COMMENT ON COLUMN call_event.call_update IS 'What the event told about its call: callstate.Update as UTF-8 JSON (convert_from(call_update, ''UTF8'')::jsonb); NULL for events journaled before migration 010.';
