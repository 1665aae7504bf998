#!/usr/bin/env bash
# Webhook benchmark: drives sipgate-like traffic at a running callstate on
# 127.0.0.1 with durable writes (its private PostgreSQL, fsync on: every
# event committed before its 200) and, side by side, at sipgate's official
# Node webhook server (npm sipgateio) with its signature check on.
#
#   scripts/bench-webhooks.sh            # every scenario, 10 s each
#   DURATION=30s scripts/bench-webhooks.sh
#
# Scenarios (each callstate one on a fresh database):
#   off      signatures off, as fast as answers come
#   signed   signatures on (a 4096-bit key, like sipgate's), as fast as answers come
#   rate1000 signatures on, 1,000 events/s scheduled: latency at a steady load
#   replay   sipgate's captured request again and again, callstate and Node:
#            both verify sipgate's real signature; callstate journals the
#            first and answers the repeats as duplicates, Node stores nothing
#
# Signing with a 4096-bit key takes ~5 ms a body, so signed events are made
# once and kept in $BENCH_DIR (default ./data/bench). Needs Go, the
# PostgreSQL server, and Node.js with npm for the comparison (skipped, with a
# note, when npm is missing). Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
DURATION=${DURATION:-10s}
CONC=${CONC:-48}
BENCH_DIR=${BENCH_DIR:-$root/data/bench}
secs=${DURATION%s}
mkdir -p "$BENCH_DIR"
tmp=$(mktemp -d)
chmod 755 "$tmp" # the private PostgreSQL runs as an unprivileged user
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/callstate" ./cmd/callstate
go build -o "$tmp/load" ./cmd/callstate-load
port=18180
pgport=55480
hook="http://127.0.0.1:$port/webhooks/sipgate"

# start_callstate NAME [VAR=value...]: a fresh callstate on a fresh database.
start_callstate() {
  local name=$1; shift
  stop_callstate
  env DATA_DIR="$tmp/$name" LOCAL_POSTGRES_PORT=$pgport LISTEN_ADDR=127.0.0.1:$port \
    PUBLIC_URL=http://127.0.0.1:$port LOG_LEVEL=warn "$@" "$tmp/callstate" >"$tmp/$name.log" 2>&1 &
  cs_pid=$!
  pids+=("$cs_pid")
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "callstate did not start:" >&2
  cat "$tmp/$name.log" >&2
  exit 1
}
stop_callstate() {
  if [ -n "${cs_pid:-}" ]; then
    kill -INT "$cs_pid" 2>/dev/null || true
    wait "$cs_pid" 2>/dev/null || true
    cs_pid=
  fi
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(postgres --version 2>/dev/null || echo PostgreSQL)"

[ -f "$BENCH_DIR/private.pem" ] || "$tmp/load" -genkey "$BENCH_DIR" >/dev/null
signed_n=$((secs * 6000))
if [ ! -f "$BENCH_DIR/signed-$signed_n.txt" ]; then
  echo "== signing $signed_n events once (4096-bit RSA, ~5 ms each, kept in $BENCH_DIR)"
fi

start_callstate off SIPGATE_VERIFY_SIGNATURE=false
"$tmp/load" -url "$hook" -c "$CONC" -d "$DURATION" -label callstate-sig-off

start_callstate signed SIPGATE_PUBLIC_KEY_FILE="$BENCH_DIR/public.pem"
"$tmp/load" -url "$hook" -c "$CONC" -d "$DURATION" -key "$BENCH_DIR/private.pem" \
  -signed "$BENCH_DIR/signed-$signed_n.txt" -n "$signed_n" -label callstate-sig-on

start_callstate rate1000 SIPGATE_PUBLIC_KEY_FILE="$BENCH_DIR/public.pem"
"$tmp/load" -url "$hook" -c 64 -d "$DURATION" -rate 1000 -key "$BENCH_DIR/private.pem" \
  -signed "$BENCH_DIR/signed-$signed_n.txt" -n "$signed_n" -label callstate-sig-on-1000-per-s

start_callstate replay
"$tmp/load" -url "$hook" -c 32 -d "$DURATION" -replay handlers/testdata/captured-newcall.http -label callstate-replay
stop_callstate

if command -v npm >/dev/null 2>&1; then
  node_dir=$BENCH_DIR/sipgateio-node
  mkdir -p "$node_dir"
  cp scripts/sipgateio-node/package.json scripts/sipgateio-node/server.js "$node_dir/"
  (cd "$node_dir" && npm install --no-audit --no-fund --silent >/dev/null)
  node "$node_dir/server.js" 18190 >"$tmp/node.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 100); do grep -q "webhook server" "$tmp/node.log" && break; sleep 0.1; done
  "$tmp/load" -url http://127.0.0.1:18190/ -c 32 -d "$DURATION" -replay handlers/testdata/captured-newcall.http -label sipgateio-node-replay
else
  echo "== npm not found: the sipgateio Node comparison is skipped (apt-get install npm)"
fi
