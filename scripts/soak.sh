#!/usr/bin/env bash
# Soak: runs callstate on 127.0.0.1 (private PostgreSQL, fsync on) under a
# steady webhook load and compares its memory and goroutines before and
# after, from /metrics, to show that nothing leaks.
#
#   scripts/soak.sh                       # 2 minutes at 500 events/s
#   SOAK_DURATION=1h SOAK_RATE=1000 scripts/soak.sh
#
# The short form runs in the tests (cmd/callstate TestNoLeak).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${SOAK_DURATION:-2m}
RATE=${SOAK_RATE:-500}
tmp=$(mktemp -d)
chmod 755 "$tmp" # the private PostgreSQL runs as an unprivileged user
port=18280
cleanup() {
  [ -n "${pid:-}" ] && kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/callstate" ./cmd/callstate
go build -o "$tmp/load" ./cmd/callstate-load
DATA_DIR="$tmp/data" LOCAL_POSTGRES_PORT=25481 LISTEN_ADDR=127.0.0.1:$port PUBLIC_URL=http://127.0.0.1:$port \
  SIPGATE_VERIFY_SIGNATURE=false LOG_LEVEL=warn "$tmp/callstate" >"$tmp/callstate.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

sample() { # prints goroutines, heap in use (MiB), resident set (MiB)
  curl -s "http://127.0.0.1:$port/metrics" | awk '
    /^go_goroutines /                { g = $2 }
    /^go_memstats_heap_inuse_bytes / { h = $2 / 1048576 }
    /^process_resident_memory_bytes / { r = $2 / 1048576 }
    END { printf "goroutines %d, heap in use %.1f MiB, resident %.1f MiB\n", g, h, r }'
}

"$tmp/load" -url "http://127.0.0.1:$port/webhooks/sipgate" -rate 200 -d 5s -label warmup >/dev/null
sleep 2
echo "before: $(sample)"
"$tmp/load" -url "http://127.0.0.1:$port/webhooks/sipgate" -rate "$RATE" -c 64 -d "$DURATION" -label soak
sleep 5 # idle connections close, timers wind down
echo "after:  $(sample)"
