#!/usr/bin/env bash
# Where PostgreSQL's time goes on the webhook path: one build (BIN=path) on
# a fresh private PostgreSQL with pg_stat_statements (track = all) loaded,
# sipgate-like webhooks in at RATE events/s for DURATION (signatures off,
# durable), then per event of the journal: each statement's total execution
# time, calls and WAL (top TOP), top-level and nested apart, and the
# PL/pgSQL functions' self time (track_functions = all). WARMUP (default
# 10s) of the same load and VACUUM ANALYZE come first, not profiled.
#
#   BIN=/tmp/callstate-main scripts/profile-events.sh
#   BIN=... RATE=1000 DURATION=15s TOP=25 scripts/profile-events.sh
# Extra environment for the service: EXTRA="EVENTS_WEBHOOK_URL=... ...";
# SQL="..." runs before the load (e.g. ALTER TABLE ... DISABLE TRIGGER ...).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BIN:?BIN=path of a callstate build}"
DURATION=${DURATION:-15s}
RATE=${RATE:-1000}
TOP=${TOP:-25}
WARMUP=${WARMUP:-10s} # 0s: profile a fresh database from its first second
tmp=$(mktemp -d)
chmod 755 "$tmp"
pid=
trap 'rc=$?; [ "$rc" != 0 ] && tail -20 "$tmp/log" >&2; [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/load" ./cmd/callstate-load
port=${PORTS:-18580} # PostgreSQL on port+7200
pgport=$((port + 7200))
db="postgres://postgres@127.0.0.1:$pgport/callstate?sslmode=disable"
start() {
  # shellcheck disable=SC2086
  env DATA_DIR="$tmp/data" LOCAL_POSTGRES_PORT=$pgport LISTEN_ADDR=127.0.0.1:$port \
    PUBLIC_URL=http://127.0.0.1:$port LOG_LEVEL=warn SIPGATE_VERIFY_SIGNATURE=false ${EXTRA:-} \
    "$BIN" serve -env-file /dev/null >>"$tmp/log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.1; done
  echo "not ready:"; cat "$tmp/log"; exit 1
}
# The private PostgreSQL may still be shutting down when the service has
# exited: wait until its port is free, so that the next start finds it so.
portfree() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || return 0; sleep 0.1; done; }
stop() { kill -INT "$pid"; wait "$pid" 2>/dev/null || true; pid=; portfree "$pgport"; }
start
conf="$(psql "$db" -Atc 'SHOW data_directory')/postgresql.conf"
stop
cat >>"$conf" <<'CONF'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.max = 5000
track_functions = all
CONF
start
if [ "$WARMUP" != 0s ]; then
  # As bench-events.sh: the same load first, then planner statistics, so
  # that the profile is of a database that has taken calls for a while.
  "$tmp/load" -url "http://127.0.0.1:$port/webhooks/sipgate" -label warmup -c 64 -d "$WARMUP" -rate "$RATE" >/dev/null
  psql "$db" -qc 'VACUUM ANALYZE'
fi
psql "$db" -qc 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' -c 'SELECT pg_stat_statements_reset()' -c 'SELECT pg_stat_reset()' >/dev/null
if [ -n "${SQL:-}" ]; then psql "$db" -qc "$SQL"; fi # e.g. a trigger disabled, to see what it costs
echo "== $("$BIN" version) $BIN, load average $(cut -d' ' -f1-3 /proc/loadavg)"
. scripts/lib/cpu.sh
pg0=$(ticks $(postgres_pids "$db"))
perf=
if [ -n "${PERF:-}" ]; then
  perf record -q -o "$PERF" ${PERF_FLAGS:--F 499 -a} -- sleep "${DURATION%s}" >/dev/null 2>&1 &
  perf=$!
fi
"$tmp/load" -url "http://127.0.0.1:$port/webhooks/sipgate" -label profile -c 64 -d "$DURATION" -rate "$RATE" | grep '^RESULT'
[ -n "$perf" ] && wait "$perf"
sleep 2 # the journeys' grace and the readers catch up
pg1=$(ticks $(postgres_pids "$db"))
n=$(psql "$db" -Atc "SELECT count(*) FROM call_event WHERE received_at >= (SELECT stats_reset FROM pg_stat_statements_info)")
echo "postgres CPU per event (with the 2 s after): $(((pg1 - pg0) * 1000000 / $(getconf CLK_TCK) / n)) us"
echo "journal=$n feed=$(psql "$db" -Atc "SELECT CASE WHEN to_regclass('call_feed') IS NULL THEN 0 ELSE (SELECT count(*) FROM call_feed) END") load average $(cut -d' ' -f1-3 /proc/loadavg)"
psql "$db" -P pager=off -c "
SELECT round(sum(total_exec_time)::numeric * 1000 / $n, 1) AS us_per_event_toplevel,
       round(sum(wal_bytes)::numeric / $n) AS wal_b_per_event_toplevel,
       round(sum(calls)::numeric / $n, 2) AS calls_per_event_toplevel
FROM pg_stat_statements WHERE toplevel" -c "
SELECT CASE WHEN toplevel THEN 'top' ELSE 'nested' END AS lvl,
       round((total_exec_time * 1000 / $n)::numeric, 1) AS us_ev,
       round(calls::numeric / $n, 3) AS calls_ev,
       round(wal_bytes::numeric / $n) AS wal_ev,
       round((total_exec_time * 1000 / greatest(calls, 1))::numeric, 1) AS us_call,
       round(rows::numeric / greatest(calls, 1), 1) AS rows_call,
       left(regexp_replace(query, '\s+', ' ', 'g'), 150) AS query
FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT $TOP" -c "
SELECT funcname, round(calls::numeric / $n, 3) AS calls_ev,
       round((self_time * 1000 / $n)::numeric, 1) AS self_us_ev,
       round((total_time * 1000 / $n)::numeric, 1) AS total_us_ev
FROM pg_stat_user_functions ORDER BY total_time DESC LIMIT 15"
stop
