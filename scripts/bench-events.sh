#!/usr/bin/env bash
# The feed and webhooks out under load: sipgate-like webhooks in at RATE
# events/s (default 1,000, signatures off, durable: callstate's private
# PostgreSQL with fsync and synchronous_commit on), and, side by side in
# the same run, in turns:
#   old      a build from before the feed (OLD=path), no webhooks out
#   feed     this tree's build, the feed written, no endpoint
#   prev     with PREV=path: another build with the feed (e.g. main before
#            a change to it), no endpoint, for a before/after in one run
#   webhook  this tree's build with one endpoint (EVENTS_WEBHOOK_URL) at a
#            local receiver (scripts/webhook-sink) that checks signatures
# For each: events/s answered and the answer's p99 (from callstate-load),
# and per event the CPU time of callstate and PostgreSQL and the WAL; for
# webhook also messages delivered, their rate, and the lag from the
# event's time (the webhook's receipt, a millisecond or two before its
# commit) to the delivery, p50/p99, over the calls' events.
#
#   git worktree add /tmp/old OLDCOMMIT && (cd /tmp/old && go build -o /tmp/callstate-old ./cmd/callstate)
#   OLD=/tmp/callstate-old scripts/bench-events.sh
#   RUNS=3 DURATION=20s RATE=1000 OLD=... scripts/bench-events.sh
#   PREV=/tmp/callstate-main OLD=... scripts/bench-events.sh
#   SCENARIOS="prev feed" RUNS=4 PREV=... OLD=... scripts/bench-events.sh   # some, in this order
#   SCENARIOS="old prev feed next" NEXT=path ...   # next: a third build with the feed, no endpoint
# Each build first takes WARMUP (default 10s, 0s for none) of the same load,
# then VACUUM ANALYZE, and only then is measured: a fresh database has no
# planner statistics for its first minute and reads its small tables whole,
# which is neither build's cost in production.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OLD:?OLD=path of a build from before the feed}"
RUNS=${RUNS:-2}
DURATION=${DURATION:-15s}
RATE=${RATE:-1000}
WARMUP=${WARMUP:-10s}
SCENARIOS=${SCENARIOS:-old prev feed webhook}
tmp=$(mktemp -d)
chmod 755 "$tmp" # the private PostgreSQL runs as an unprivileged user
pid=
sink=
trap '[ -n "${KEEP:-}" ] && cp "$tmp/log" /tmp/bench-events-last.log; [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; [ -n "$sink" ] && kill "$sink" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
NEW=${NEW:-$tmp/callstate-new}
[ -x "$NEW" ] || go build -o "$NEW" ./cmd/callstate
go build -o "$tmp/load" ./cmd/callstate-load
go build -o "$tmp/sink" ./scripts/webhook-sink
# Ports: set PORTS=base for another run beside this one on the machine
# (base, base+10 the receiver, base+7200 PostgreSQL).
port=${PORTS:-18480}
pgport=$((port + 7200))
sinkport=$((port + 10))
secret=whsec_$(head -c 32 /dev/urandom | base64)
hook="http://127.0.0.1:$port/webhooks/sipgate"
db="postgres://postgres@127.0.0.1:$pgport/callstate?sslmode=disable"
echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); old $OLD, new $NEW${PREV:+, prev $PREV}${NEXT:+, next $NEXT}"
. scripts/lib/cpu.sh
# one BUILD NAME [ENV...]: a fresh database, RATE events/s for DURATION.
one() {
  local bin=$1 name=$2; shift 2
  rm -rf "$tmp/data"
  if [ "$name" = webhook ]; then
    "$tmp/sink" -addr 127.0.0.1:$sinkport -secret "$secret" >"$tmp/sink.log" 2>&1 &
    sink=$!
  fi
  env DATA_DIR="$tmp/data" LOCAL_POSTGRES_PORT=$pgport LISTEN_ADDR=127.0.0.1:$port \
    PUBLIC_URL=http://127.0.0.1:$port LOG_LEVEL=warn SIPGATE_VERIFY_SIGNATURE=false "$@" \
    "$bin" serve -env-file /dev/null >"$tmp/log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  local lsn0 lsn1 rows rows0=0 feed0=0 pgs cs0 cs1 pg0 pg1 hz n out
  hz=$(getconf CLK_TCK)
  if [ "$WARMUP" != 0s ]; then
    # A database that has taken calls for a while, as in production: the
    # first seconds of a fresh one have no planner statistics (autovacuum
    # looks once a minute), and its small tables are read whole.
    "$tmp/load" -url "$hook" -label "$name-warmup" -c 64 -d "$WARMUP" -rate "$RATE" >/dev/null
    psql "$db" -qAtc 'VACUUM ANALYZE'
    rows0=$(psql "$db" -Atc 'SELECT count(*) FROM call_event')
    [ "$name" != old ] && feed0=$(psql "$db" -Atc 'SELECT count(*) FROM call_feed')
  fi
  lsn0=$(psql "$db" -Atc 'SELECT pg_current_wal_lsn()')
  pgs=$(postgres_pids "$db")
  cs0=$(ticks "$pid"); pg0=$(ticks $pgs)
  "$tmp/load" -url "$hook" -label "$name" -c 64 -d "$DURATION" -rate "$RATE" | grep '^RESULT' >"$tmp/result"
  if [ "$name" = webhook ]; then
    # Let the deliveries catch up (at most 30 s), counted in the CPU time.
    for _ in $(seq 300); do
      [ "$(psql "$db" -Atc "SELECT count(*) FROM webhook_delivery WHERE status = 'pending'")" = 0 ] && break
      sleep 0.1
    done
  fi
  pgs=$(postgres_pids "$db")
  cs1=$(ticks "$pid"); pg1=$(ticks $pgs)
  lsn1=$(psql "$db" -Atc 'SELECT pg_current_wal_lsn()')
  rows=$(($(psql "$db" -Atc 'SELECT count(*) FROM call_event') - rows0))
  n=$((rows > 0 ? rows : 1))
  out="$(sed 's/^RESULT //' "$tmp/result") journal=$rows wal_bytes_per_event=$(psql "$db" -Atc "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint / $n")"
  out="$out cpu_us_per_event: callstate=$(((cs1 - cs0) * 1000000 / hz / n)) postgres=$(((pg1 - pg0) * 1000000 / hz / n))"
  if [ "$name" != old ]; then
    out="$out feed_events=$(($(psql "$db" -Atc 'SELECT count(*) FROM call_feed') - feed0))"
  fi
  if [ "$name" = webhook ]; then
    out="$out deliveries: $(curl -s "http://127.0.0.1:$sinkport/stats") pending=$(psql "$db" -Atc "SELECT count(*) FROM webhook_delivery WHERE status = 'pending'")"
    kill "$sink"; wait "$sink" 2>/dev/null || true; sink=
  fi
  echo "$out load_average=$(cut -d' ' -f1 /proc/loadavg)"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true; pid=
  # The private PostgreSQL may still be shutting down: the next build's
  # start needs its port.
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$pgport") 2>/dev/null || break; sleep 0.1; done
}
for run in $(seq "$RUNS"); do
  for s in $SCENARIOS; do
    case $s in
    old) one "$OLD" old ;;
    prev) if [ -n "${PREV:-}" ]; then one "$PREV" prev; fi ;;
    feed) one "$NEW" feed ;;
    next) one "$NEXT" next ;;
    webhook)
      one "$NEW" webhook EVENTS_WEBHOOK_URL="http://127.0.0.1:$sinkport/hook" EVENTS_WEBHOOK_SECRET="$secret" \
        EVENTS_WEBHOOK_ALLOW_PRIVATE=true EVENTS_WEBHOOK_TYPES=call.ringing,call.answered,call.ended,journey.ended,call.missed
      ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
    esac
  done
done
