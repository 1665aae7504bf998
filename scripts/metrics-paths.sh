#!/usr/bin/env bash
# /metrics under made-up paths: starts callstate on 127.0.0.1 (its private
# PostgreSQL, API_TOKEN set), sends N requests (default 100,000), each to a
# path of its own (half made-up, half /api/calls/<id> with no token), and
# prints /metrics' size and series, the resident memory and one scrape's
# time before and after. handlers.TestMetricsBoundedByPaths checks the same
# in process with 2,000 paths.
#
#   scripts/metrics-paths.sh
#   N=20000 scripts/metrics-paths.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
port=18280
pgport=25580
tmp=$(mktemp -d)
chmod 755 "$tmp" # the private PostgreSQL runs as an unprivileged user
pid=
trap '[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/callstate" ./cmd/callstate
env DATA_DIR="$tmp/data" LOCAL_POSTGRES_PORT=$pgport LISTEN_ADDR=127.0.0.1:$port \
  PUBLIC_URL=http://127.0.0.1:$port API_TOKEN=metrics-paths-token-0123456789 LOG_LEVEL=error \
  "$tmp/callstate" serve -env-file /dev/null >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$tmp/log" >&2; exit 1; }
measure() { # LABEL
  curl -s -o /dev/null "http://127.0.0.1:$port/metrics" # its own series first
  local t0 t1 bytes series rss
  t0=$(date +%s%N)
  curl -s -o "$tmp/m" "http://127.0.0.1:$port/metrics"
  t1=$(date +%s%N)
  bytes=$(wc -c <"$tmp/m")
  series=$(grep -vc '^#' "$tmp/m")
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  echo "$1: /metrics $bytes bytes, $series series, scrape $(((t1 - t0) / 1000000)) ms, RSS $((rss / 1024)) MiB"
}
# One of each first, so that their series exist before.
curl -s -o /dev/null "http://127.0.0.1:$port/made-up/0"
curl -s -o /dev/null "http://127.0.0.1:$port/api/calls/x0"
measure before
half=$((N / 2))
start=$(date +%s)
# One curl each, keeping its connection: [1-n] makes a URL apiece.
curl -s -o /dev/null "http://127.0.0.1:$port/made-up/[1-$half]" &
c1=$!
curl -s -o /dev/null "http://127.0.0.1:$port/api/calls/x[1-$((N - half))]"
wait "$c1"
echo "$N requests to distinct paths in $(($(date +%s) - start)) s"
measure after
grep -o 'route="[^"]*"' "$tmp/m" | sort | uniq -c | sed 's/^/  /'
