#!/usr/bin/env bash
# Two builds of callstate in turns, on the same machine in one run: each
# round starts each build on a fresh private PostgreSQL (durable: fsync and
# synchronous_commit on) and drives webhooks at it, signatures off, 48 in
# flight (bench-webhooks.sh's first scenario), then with -rate at a steady
# rate; it prints events/s, latency, and per event the WAL written and the
# CPU time callstate and PostgreSQL spent (which depend on the machine's
# other load much less than the rate does), and how long their threads
# waited for a CPU (/proc/PID/task/*/schedstat: the share of the latency
# that is the machine's).
#
#   git worktree add /tmp/old OLDCOMMIT && (cd /tmp/old && go build -o /tmp/callstate-old ./cmd/callstate)
#   OLD=/tmp/callstate-old scripts/bench-builds.sh          # against this tree's build
#   RUNS=5 DURATION=10s RATE=1000 OLD=... NEW=... scripts/bench-builds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OLD:?OLD=path of the older build}"
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
RATE=${RATE:-1000}
CONC=${CONC:-48}
tmp=$(mktemp -d)
chmod 755 "$tmp" # the private PostgreSQL runs as an unprivileged user
pid=
trap '[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
if [ -z "${NEW:-}" ]; then
  NEW=$tmp/callstate-new
  go build -o "$NEW" ./cmd/callstate
fi
go build -o "$tmp/load" ./cmd/callstate-load
port=18480
pgport=25680
hook="http://127.0.0.1:$port/webhooks/sipgate"
db="postgres://postgres@127.0.0.1:$pgport/callstate?sslmode=disable"
echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); old $("$OLD" version), new $("$NEW" version)"
. scripts/lib/cpu.sh
# one BUILD NAME LOADARGS...: a fresh database, the load, the WAL and the
# CPU time (callstate's, PostgreSQL's) per event.
one() {
  local bin=$1 name=$2; shift 2
  rm -rf "$tmp/data"
  env DATA_DIR="$tmp/data" LOCAL_POSTGRES_PORT=$pgport LISTEN_ADDR=127.0.0.1:$port \
    PUBLIC_URL=http://127.0.0.1:$port LOG_LEVEL=warn SIPGATE_VERIFY_SIGNATURE=false \
    "$bin" serve -env-file /dev/null >"$tmp/log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  local lsn0 lsn1 rows pgs cs0 cs1 pg0 pg1 cq0 cq1 pq0 pq1 hz n
  hz=$(getconf CLK_TCK)
  lsn0=$(psql "$db" -Atc 'SELECT pg_current_wal_lsn()')
  pgs=$(postgres_pids "$db")
  cs0=$(ticks "$pid"); pg0=$(ticks $pgs); cq0=$(runq "$pid"); pq0=$(runq $pgs)
  "$tmp/load" -url "$hook" -label "$name" "$@" | grep '^RESULT' >"$tmp/result"
  pgs=$(postgres_pids "$db")
  cs1=$(ticks "$pid"); pg1=$(ticks $pgs); cq1=$(runq "$pid"); pq1=$(runq $pgs)
  lsn1=$(psql "$db" -Atc 'SELECT pg_current_wal_lsn()')
  rows=$(psql "$db" -Atc 'SELECT count(*) FROM call_event')
  wal=$(psql "$db" -Atc "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint / greatest($rows, 1)")
  n=$((rows > 0 ? rows : 1))
  echo "$(sed 's/^RESULT //' "$tmp/result") journal=$rows wal_bytes_per_event=$wal" \
    "cpu_us_per_event: callstate=$(((cs1 - cs0) * 1000000 / hz / n)) postgres=$(((pg1 - pg0) * 1000000 / hz / n))" \
    "waiting_for_a_cpu_us_per_event: callstate=$(((cq1 - cq0) / n)) postgres=$(((pq1 - pq0) / n))"
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true; pid=
}
for run in $(seq "$RUNS"); do
  for b in old new; do
    bin=$OLD; [ $b = new ] && bin=$NEW
    one "$bin" "$b-closed" -c "$CONC" -d "$DURATION"
    one "$bin" "$b-rate$RATE" -c 64 -d "$DURATION" -rate "$RATE"
  done
done
