#!/usr/bin/env bash
# Webhook benchmark: drives sipgate-like traffic at a running callstate on
# 127.0.0.1 with durable writes (its private PostgreSQL, fsync and
# synchronous_commit on: every event committed before its 200) and, side by
# side, at sipgate's official Node webhook server (npm sipgateio) with its
# signature check on.
#
#   scripts/bench-webhooks.sh                    # every scenario once, 10 s each
#   OLD=/tmp/callstate-before scripts/bench-webhooks.sh   # also the build before a change
#   RUNS=3 scripts/bench-webhooks.sh             # three rounds, to see the spread
#   DURATION=30s CONC=64 scripts/bench-webhooks.sh
#
# Scenarios (each callstate one on a fresh database):
#   off      signatures off, as fast as answers come (closed loop, CONC requests at once;
#            a call's newCall, answer and hangup are in flight at once)
#   off-high signatures off, CONC_HIGH (160) requests at once: more events share each
#            commit, so the rate is higher and so is the latency
#   percall  the same as off, but each of the CONC senders posts a call's three events one
#            after the other, as sipgate does (answer and hangup only come after
#            newCall's answer)
#   signed   signatures on (a 4096-bit key, like sipgate's), as fast as answers come
#   signed-nowait  the same with DATABASE_BATCH_WAIT=0 (no group commit wait)
#   rate1000 signatures on, 1,000 events/s scheduled: latency at a steady load,
#            measured from each event's scheduled time
#   old-off, old-signed  with OLD=path (a build from before a change): the
#            same as off and signed with that build, in the same round
#   pgbench  pgbench's two-statement event transaction on the same private
#            PostgreSQL, durable, CONC clients: a journal row inserted and a
#            call row upserted, one commit each (the floor of any durable
#            webhook path that writes both)
#   replay   sipgate's captured request again and again, callstate and Node:
#            both verify sipgate's real signature; callstate journals the
#            first and answers the repeats as duplicates (a database round
#            trip, no write), Node stores nothing
#
# After each callstate scenario the journal's rows are counted, so that the
# events answered 200 can be seen to be stored. Each load run is followed
# by a CPU line: the server's (callstate's or Node's), PostgreSQL's and the
# rest of the machine's CPU per event, and how much of the machine was idle. Signing with a 4096-bit key
# takes ~5 ms a body, so signed events are made once and kept in $BENCH_DIR
# (default ./data/bench, with the key pair and the Node server's
# node_modules). Needs Go, the PostgreSQL server, and Node.js with npm for
# the comparison (skipped, with a note, when npm is missing). Everything runs
# on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
DURATION=${DURATION:-10s}
CONC=${CONC:-48}
CONC_HIGH=${CONC_HIGH:-160}
RUNS=${RUNS:-1}
BENCH_DIR=${BENCH_DIR:-$root/data/bench}
case $DURATION in
*s) secs=${DURATION%s} ;;
*) echo "DURATION: give seconds, such as 10s" >&2; exit 2 ;;
esac
mkdir -p "$BENCH_DIR"
tmp=$(mktemp -d)
chmod 755 "$tmp" # the private PostgreSQL runs as an unprivileged user
cs_pid=
cs_dir=
node_pid=
cleanup() {
  for p in $cs_pid $node_pid; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ -n "${NEW:-}" ]; then cp "$NEW" "$tmp/callstate"; else go build -o "$tmp/callstate" ./cmd/callstate; fi
go build -o "$tmp/load" ./cmd/callstate-load
port=18180
pgport=25480
nodeport=18190
hook="http://127.0.0.1:$port/webhooks/sipgate"
db="postgres://postgres@127.0.0.1:$pgport/callstate?sslmode=disable"
capture=handlers/testdata/captured-newcall.http

# start_callstate NAME [VAR=value...]: a fresh callstate on a fresh database.
start_callstate() {
  local name=$1; shift
  stop_callstate
  cs_dir=$tmp/data-$name
  rm -rf "$cs_dir"
  env DATA_DIR="$cs_dir" LOCAL_POSTGRES_PORT=$pgport LISTEN_ADDR=127.0.0.1:$port \
    PUBLIC_URL=http://127.0.0.1:$port LOG_LEVEL=warn "$@" "${BIN:-$tmp/callstate}" >"$tmp/$name.log" 2>&1 &
  cs_pid=$!
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "callstate did not start:" >&2
  cat "$tmp/$name.log" >&2
  exit 1
}
stop_callstate() {
  if [ -n "$cs_pid" ]; then
    kill -INT "$cs_pid" 2>/dev/null || true
    wait "$cs_pid" 2>/dev/null || true
    cs_pid=
    rm -rf "$cs_dir"
  fi
}
# journal: the events stored in this run's database, and how many of them
# went through the local spool instead of straight into PostgreSQL (an
# event the database does not take within DATABASE_WRITE_TIMEOUT is
# spooled, and while the spool holds events every later one queues behind
# them: such a run measures the spool's fsync, not PostgreSQL's commit).
journal() {
  local rows spooled
  rows=$(psql "$db" -Atc "SELECT count(*) FROM call_event" 2>/dev/null || echo "?")
  spooled=$(curl -s "http://127.0.0.1:$port/metrics" | awk '$1 == "callstate_spool_appended_total" {print $2}')
  echo "$rows, of them through the spool: ${spooled:-?}"
  if [ -n "$spooled" ] && [ "$spooled" != 0 ]; then
    echo "  WARNING: events went through the spool; this run is not a measure of durable PostgreSQL writes" >&2
    # Its RESULT line leaves the results: relabelled SPOOLED, listed apart.
    local last
    last=$(grep -n '^RESULT ' "$tmp/out" | tail -1 | cut -d: -f1)
    [ -n "$last" ] && sed -i "${last}s/^RESULT /SPOOLED $spooled events: /" "$tmp/out"
  fi
}
. scripts/lib/cpu.sh
# load ARGS...: one run of the load generator; its RESULT line is kept
# for the results at the end (journal may still set it apart), not shown
# now. A CPU line follows it: what each part used per event answered 200
# (callstate or the Node server, PostgreSQL, and the rest of the machine:
# the load generator and whatever else runs), in microseconds, and the
# share of the machine's CPU left idle. Where the two cores go sets how
# far a rate can rise on this machine.
load() {
  local server=${cs_pid:-$node_pid} hz per_tick before after busy0 all0 busy1 all1 pg0 pg1 sv0 sv1 ok
  hz=$(getconf CLK_TCK)
  per_tick=$((1000000 / hz))
  pg0=$(ticks $(postgres_pids "$db")); sv0=$(ticks $server); read -r busy0 all0 < <(machine_ticks)
  "$tmp/load" "$@" | tee -a "$tmp/out" | { grep -v '^RESULT ' || true; }
  pg1=$(ticks $(postgres_pids "$db")); sv1=$(ticks $server); read -r busy1 all1 < <(machine_ticks)
  ok=$(grep '^RESULT ' "$tmp/out" | tail -1 | sed -n 's/.* ok=\([0-9]*\) .*/\1/p')
  if [ -n "$ok" ] && [ "$ok" -gt 0 ]; then
    echo "CPU label=$(grep '^RESULT ' "$tmp/out" | tail -1 | sed -n 's/.*label=\([^ ]*\) .*/\1/p')" \
      "server_us=$(((sv1 - sv0) * per_tick / ok)) postgres_us=$(((pg1 - pg0) * per_tick / ok))" \
      "rest_us=$((((busy1 - busy0) - (sv1 - sv0) - (pg1 - pg0)) * per_tick / ok))" \
      "idle_pct=$((100 - 100 * (busy1 - busy0) / (all1 - all0)))" | tee -a "$tmp/out"
  fi
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(postgres --version 2>/dev/null || echo PostgreSQL), load average $(cut -d' ' -f1-3 /proc/loadavg)"

[ -f "$BENCH_DIR/private.pem" ] || "$tmp/load" -genkey "$BENCH_DIR" >/dev/null
signed_n=$((secs * 6000))
signed="$BENCH_DIR/signed-$signed_n.txt"
if [ ! -f "$signed" ]; then
  # Before any measured run, so that no run's CPU or rate includes it.
  echo "== signing $signed_n events once (4096-bit RSA, ~5 ms each, kept in $BENCH_DIR)"
  "$tmp/load" -key "$BENCH_DIR/private.pem" -signed "$signed" -n "$signed_n" -sign-only >/dev/null
fi
node_ok=
if command -v npm >/dev/null 2>&1; then
  node_dir=$BENCH_DIR/sipgateio-node
  mkdir -p "$node_dir"
  cp scripts/sipgateio-node/package.json scripts/sipgateio-node/server.js "$node_dir/"
  (cd "$node_dir" && npm install --no-audit --no-fund --silent >/dev/null)
  node_ok=1
  echo "== sipgateio $(node -p "require('$node_dir/node_modules/sipgateio/package.json').version"), node $(node --version)"
else
  echo "== npm not found: the sipgateio Node comparison is skipped (apt-get install npm)"
fi

for run in $(seq "$RUNS"); do
  echo "== round $run of $RUNS"
  start_callstate off SIPGATE_VERIFY_SIGNATURE=false
  if [ "$run" = 1 ]; then
    echo "== PostgreSQL: fsync $(psql "$db" -Atc 'SHOW fsync'), synchronous_commit $(psql "$db" -Atc 'SHOW synchronous_commit')"
  fi
  load -url "$hook" -c "$CONC" -d "$DURATION" -label callstate-sig-off
  echo "  journal rows: $(journal)"

  # pgbench's two-statement event transaction on this run's PostgreSQL.
  psql "$db" -q <<'SQL'
CREATE TABLE IF NOT EXISTS bench_event (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, call_key text NOT NULL,
  type text NOT NULL, payload bytea NOT NULL, received_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS bench_call (call_key text PRIMARY KEY, state text NOT NULL, updated_at timestamptz NOT NULL);
SQL
  cat >"$tmp/event.sql" <<'SQL'
\set k random(1, 100000000)
BEGIN;
INSERT INTO bench_event (call_key, type, payload, received_at) VALUES (:k, 'newCall', '\x6576656e743d6e657743616c6c26646972656374696f6e3d696e2666726f6d3d3439313730313233343536373826746f3d3439333031323334353637383926', now());
INSERT INTO bench_call (call_key, state, updated_at) VALUES (:k, 'ringing', now())
  ON CONFLICT (call_key) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at;
END;
SQL
  pgbench -n -c "$CONC" -j 2 -T "$secs" -f "$tmp/event.sql" "$db" >"$tmp/pgbench.out" 2>&1 || cat "$tmp/pgbench.out" >&2
  echo "RESULT label=pgbench-event-transaction events_per_s=$(awk '/^tps/ {print int($3); exit}' "$tmp/pgbench.out") latency_avg_ms=$(awk '/latency average/ {print $4; exit}' "$tmp/pgbench.out")" | tee -a "$tmp/out"

  if [ -n "${OLD:-}" ]; then
    BIN=$OLD start_callstate old-off SIPGATE_VERIFY_SIGNATURE=false
    load -url "$hook" -c "$CONC" -d "$DURATION" -label old-callstate-sig-off
    echo "  journal rows: $(journal)"
    BIN=$OLD start_callstate old-signed SIPGATE_PUBLIC_KEY_FILE="$BENCH_DIR/public.pem"
    load -url "$hook" -c "$CONC" -d "$DURATION" -key "$BENCH_DIR/private.pem" \
      -signed "$signed" -n "$signed_n" -label old-callstate-sig-on
    echo "  journal rows: $(journal)"
  fi

  start_callstate offhigh SIPGATE_VERIFY_SIGNATURE=false
  load -url "$hook" -c "$CONC_HIGH" -d "$DURATION" -label callstate-sig-off-c$CONC_HIGH
  echo "  journal rows: $(journal)"

  start_callstate percall SIPGATE_VERIFY_SIGNATURE=false
  load -url "$hook" -c "$CONC" -d "$DURATION" -per-call -label callstate-sig-off-per-call
  echo "  journal rows: $(journal)"

  start_callstate signed SIPGATE_PUBLIC_KEY_FILE="$BENCH_DIR/public.pem"
  load -url "$hook" -c "$CONC" -d "$DURATION" -key "$BENCH_DIR/private.pem" \
    -signed "$signed" -n "$signed_n" -label callstate-sig-on
  echo "  journal rows: $(journal)"

  # The same without group commit: 48 senders that each wait for their
  # answer lose rate to every millisecond the answer waits (benchmarks.md).
  start_callstate signed-nowait SIPGATE_PUBLIC_KEY_FILE="$BENCH_DIR/public.pem" DATABASE_BATCH_WAIT=0
  load -url "$hook" -c "$CONC" -d "$DURATION" -key "$BENCH_DIR/private.pem" \
    -signed "$signed" -n "$signed_n" -label callstate-sig-on-batch-wait-0
  echo "  journal rows: $(journal)"

  start_callstate rate1000 SIPGATE_PUBLIC_KEY_FILE="$BENCH_DIR/public.pem"
  load -url "$hook" -c 64 -d "$DURATION" -rate 1000 -key "$BENCH_DIR/private.pem" \
    -signed "$signed" -n "$signed_n" -label callstate-sig-on-1000-per-s
  echo "  journal rows: $(journal)"

  start_callstate replay
  load -url "$hook" -c "$CONC" -d "$DURATION" -replay "$capture" -expect '<Response' -label callstate-replay
  echo "  journal rows: $(journal) (the first request; the rest are duplicates)"
  stop_callstate

  if [ -n "$node_ok" ]; then
    node "$node_dir/server.js" $nodeport >"$tmp/node.log" 2>&1 &
    node_pid=$!
    for _ in $(seq 100); do grep -q "webhook server" "$tmp/node.log" && break; sleep 0.1; done
    load -url "http://127.0.0.1:$nodeport/" -c "$CONC" -d "$DURATION" -replay "$capture" \
      -expect '<Response' -label sipgateio-node-replay
    kill -INT "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    node_pid=
    if grep -qv "webhook server" "$tmp/node.log"; then
      echo "  the Node server logged:"; grep -v "webhook server" "$tmp/node.log" | sort | uniq -c | head
    fi
  fi
done

echo "== results (events/s; latency in ms)"
grep '^RESULT ' "$tmp/out" | sed 's/^RESULT //'
echo "== CPU per event answered (µs; the rest: the load generator and whatever else ran; idle: of the whole machine)"
grep '^CPU ' "$tmp/out" | sed 's/^CPU //'
if grep -q '^SPOOLED ' "$tmp/out"; then
  echo "== runs left out: their events went through the spool, so they measure the spool's fsync, not PostgreSQL's commit"
  grep '^SPOOLED ' "$tmp/out"
fi
