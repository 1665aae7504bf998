-- The store records sipgate users itself (store/users.go), only when a call
-- names one it has not recorded lately: the trigger ran a PL/pgSQL function
-- with two statements for every new sipgate call, a tenth of the webhook
-- write rate (docs/benchmarks.md).

DROP TRIGGER call_state_sipgate_users_insert ON call_state;
DROP TRIGGER call_state_sipgate_users_update ON call_state;
DROP FUNCTION sipgate_users_seen();
