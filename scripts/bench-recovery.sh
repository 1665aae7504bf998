#!/usr/bin/env bash
# Recovery benchmark: how callstate's local spool takes a database outage
# under a steady webhook load, and how fast it gives the events back to
# PostgreSQL once the database returns.
#
#   scripts/bench-recovery.sh                  # 20 s warm-up, 60 s outage, 90 s after
#   OUTAGE=10 AFTER=30 scripts/bench-recovery.sh   # a quick try
#   RATE=2000 scripts/bench-recovery.sh
#
# Settings (environment): RATE (1000 events/s), WARMUP (20), OUTAGE (60),
# AFTER (90), TAIL (30) and ANCHOR (10) in seconds; CONC (48, the anchor's
# requests in flight), CONC_STEADY (64, the steady load's workers), PORT
# (18380), PG_PORT (25482; below the ephemeral range, 32768-60999, so that
# no outgoing connection holds it when PostgreSQL restarts), OUT (./data/bench-recovery: where the samples and
# logs are kept).
#
# What it does, all on 127.0.0.1:
#  1. builds callstate and callstate-load, starts a private PostgreSQL of its
#     own (durable: fsync and synchronous_commit on, as callstate's own
#     private cluster; as the postgres user when run as root), and callstate
#     against it with DATABASE_URL and SIPGATE_VERIFY_SIGNATURE=false;
#  2. anchor: callstate-load as fast as answers come (CONC in flight, ANCHOR
#     seconds): the direct, durable write rate, on which the spool must take
#     nothing (callstate_spool_appended_total must not move);
#  3. a steady load of RATE events/s (each latency measured from its
#     scheduled send time); after WARMUP s PostgreSQL is stopped (fast
#     shutdown) for OUTAGE s, started again, and the load goes on AFTER s
#     more; then the load stops and the spool is watched TAIL s longer;
#  4. /metrics once a second into $OUT/metrics.csv; every request's send
#     time, latency and status into $OUT/requests.txt.
#
# It reports the backlog (callstate_spool_events) over time, its peak, the
# time from the database's start until the backlog is 0, the drain rate
# (events/s leaving the spool: callstate_spool_drained_total when callstate
# has it, else the spooled rate minus the backlog's growth) and its ratio to
# the anchor, and the p50/p99 latency of the webhook answers to the requests
# sent from the database's start until the backlog is empty (exact, over
# those requests), against the targets: empty within 60 s, drain rate at
# least 0.8 of the direct rate, p99 under 50 ms. It stops by itself and
# stops everything it started, also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
RATE=${RATE:-1000}
WARMUP=${WARMUP:-20}
OUTAGE=${OUTAGE:-60}
AFTER=${AFTER:-90}
TAIL=${TAIL:-30}
ANCHOR=${ANCHOR:-10}
CONC=${CONC:-48}
CONC_STEADY=${CONC_STEADY:-64}
PORT=${PORT:-18380}
PG_PORT=${PG_PORT:-25482}
OUT=${OUT:-$root/data/bench-recovery}
for v in RATE WARMUP OUTAGE AFTER TAIL ANCHOR CONC CONC_STEADY PORT PG_PORT; do
  case ${!v} in
  '' | *[!0-9]*) echo "$v: give a whole number (seconds for the times), not '${!v}'" >&2; exit 2 ;;
  esac
done
if [ "$RATE" = 0 ] || [ "$AFTER" = 0 ] || [ "$ANCHOR" = 0 ]; then
  echo "RATE, AFTER and ANCHOR must be above 0" >&2; exit 2
fi
# The targets.
EMPTY_WITHIN=60   # s from the database's start to an empty spool
DRAIN_RATIO=0.8   # drain rate / direct rate
P99_MAX=50        # ms, live answers while draining

mkdir -p "$OUT"
rm -f "$OUT"/metrics.csv "$OUT"/requests.txt "$OUT"/intervals.txt "$OUT"/*.log "$OUT"/*.out
tmp=$(mktemp -d)
chmod 755 "$tmp" # PostgreSQL runs as an unprivileged user and must reach its data dir
cs_pid=
load_pid=
sampler_pid=
pg_started=
pgdata=$tmp/pgdata

now() { date +%s.%N; }
# sleep_until T: sleeps until Unix time T (fractional), at once if it passed.
sleep_until() {
  local d
  d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
  sleep "$d"
}
# stop_pid PID SIGNAL SECONDS: signals PID, waits up to SECONDS, then kills.
stop_pid() {
  local pid=$1 sig=$2 secs=$3 i
  [ -n "$pid" ] || return 0
  kill -"$sig" "$pid" 2>/dev/null || return 0
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# PostgreSQL: the server binaries as store/localpg finds them, run as the
# postgres user (else nobody) when we are root, since PostgreSQL refuses to
# run as root.
pgbin=
for d in "$(pg_config --bindir 2>/dev/null || true)" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5,5nr) /usr/local/pgsql/bin; do
  if [ -n "$d" ] && [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then pgbin=$d; break; fi
done
if [ -z "$pgbin" ]; then
  echo "no PostgreSQL server binaries (postgres, initdb, pg_ctl) found: apt-get install postgresql" >&2
  exit 1
fi
pguser=
if [ "$(id -u)" = 0 ]; then
  if id postgres >/dev/null 2>&1; then pguser=postgres; else pguser=nobody; fi
fi
aspg() {
  if [ -n "$pguser" ]; then
    runuser -u "$pguser" -- env -u PGDATA -u PGPORT -u PGHOST "$@"
  else
    env -u PGDATA -u PGPORT -u PGHOST "$@"
  fi
}
pg_start() {
  aspg "$pgbin/pg_ctl" -D "$pgdata" -l "$pgdata/postgres.log" -w -t 60 -s \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start
}
# pg_restart: pg_start, tried up to 5 times a second apart.
pg_restart() {
  local i
  for i in 1 2 3 4 5; do
    pg_start && return 0
    echo "  PostgreSQL did not start (try $i of 5):" >&2
    tail -n 3 "$pgdata/postgres.log" | sed 's/^/    /' >&2
    sleep 1
  done
  return 1
}
pg_stop() { # MODE: fast (the outage) or immediate (cleanup)
  aspg "$pgbin/pg_ctl" -D "$pgdata" -m "$1" -w -t 60 -s stop
}

cleanup() {
  set +e
  stop_pid "$load_pid" INT 20
  stop_pid "$sampler_pid" TERM 2
  stop_pid "$cs_pid" INT 20
  if [ -n "$pg_started" ]; then
    pg_stop immediate >/dev/null 2>&1
    cp "$pgdata/postgres.log" "$OUT/postgres.log" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== building callstate and callstate-load ($(git rev-parse --short HEAD 2>/dev/null || echo '?')$([ -z "$(git status --porcelain 2>/dev/null)" ] || echo ', with uncommitted changes'))"
go build -o "$tmp/callstate" ./cmd/callstate
go build -o "$tmp/load" ./cmd/callstate-load
hook="http://127.0.0.1:$PORT/webhooks/sipgate"
metrics="http://127.0.0.1:$PORT/metrics"
db="postgres://postgres@127.0.0.1:$PG_PORT/callstate?sslmode=disable"

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $("$pgbin/postgres" --version), load average $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -m 700 "$pgdata"
[ -z "$pguser" ] || chown "$pguser:" "$pgdata"
aspg "$pgbin/initdb" -D "$pgdata" --auth=trust --username=postgres --encoding=UTF8 --no-locale >"$tmp/initdb.log" 2>&1 ||
  { cat "$tmp/initdb.log" >&2; exit 1; }
pg_started=1
pg_start
psql "postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable" -qAtc 'CREATE DATABASE callstate'
echo "== PostgreSQL on 127.0.0.1:$PG_PORT: fsync $(psql "$db" -Atc 'SHOW fsync'), synchronous_commit $(psql "$db" -Atc 'SHOW synchronous_commit')"

env DATABASE_URL="$db" DATA_DIR="$tmp/cs" LISTEN_ADDR=127.0.0.1:$PORT PUBLIC_URL=http://127.0.0.1:$PORT \
  SIPGATE_VERIFY_SIGNATURE=false LOG_LEVEL=warn SHUTDOWN_TIMEOUT=5s \
  "$tmp/callstate" >"$OUT/callstate.log" 2>&1 &
cs_pid=$!
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  kill -0 "$cs_pid" 2>/dev/null || break
  sleep 0.1
done
if ! curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; then
  echo "callstate did not start:" >&2
  cat "$OUT/callstate.log" >&2
  exit 1
fi

# metric NAME [TEXT]: the value of an unlabelled metric ("" when absent).
metric() {
  local text=${2-}
  [ -n "$text" ] || text=$(curl -s -m 2 "$metrics" || true)
  awk -v n="$1" '$1 == n { printf "%.0f", $2; exit }' <<<"$text"
}
# result_field FILE KEY: a field of callstate-load's RESULT line.
result_field() { awk -v k="$2" '/^RESULT / { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$1"; }

echo "== anchor: direct writes, as fast as answers come, $CONC in flight, ${ANCHOR} s"
a0=$(metric callstate_spool_appended_total)
"$tmp/load" -url "$hook" -c "$CONC" -d "${ANCHOR}s" -label direct | tee "$OUT/anchor.out"
a1=$(metric callstate_spool_appended_total)
direct=$(result_field "$OUT/anchor.out" events_per_s)
direct_ok=$(result_field "$OUT/anchor.out" ok)
anchor_note=
if [ "${a0:-x}" != "${a1:-y}" ]; then
  anchor_note=" (WARNING: the spool took $((${a1:-0} - ${a0:-0})) events during the anchor: not a measure of direct writes)"
  echo "  WARNING: callstate_spool_appended_total went from ${a0:-?} to ${a1:-?} during the anchor" >&2
fi
echo "  through the spool: $((${a1:-0} - ${a0:-0}))"
sleep 2

# The steady load and the outage. Phase boundaries are Unix times.
echo warmup >"$tmp/phase"
total=$((WARMUP + OUTAGE + AFTER))
t0=$(now)
"$tmp/load" -url "$hook" -c "$CONC_STEADY" -rate "$RATE" -d "$((total + 120))s" -label steady \
  -interval 1s -interval-out "$OUT/intervals.txt" -requests "$OUT/requests.txt" >"$OUT/steady.out" 2>&1 &
load_pid=$!

# Sampler: /metrics once a second, on the second from t0, until told to stop.
(
  trap 'exit 0' TERM
  echo "t_s,unix_s,phase,spool_events,spool_appended_total,spool_drained_total" >"$OUT/metrics.csv"
  for ((i = 0; i < total + TAIL + 300; i++)); do
    [ -f "$tmp/stop-sampler" ] && break
    sleep_until "$(awk -v t="$t0" -v i="$i" 'BEGIN { printf "%.3f", t + i }')"
    text=$(curl -s -m 0.9 "$metrics" || true)
    ts=$(now)
    printf '%s,%s,%s,%s,%s,%s\n' "$(awk -v a="$ts" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')" "$ts" \
      "$(cat "$tmp/phase")" "$(metric callstate_spool_events "$text")" \
      "$(metric callstate_spool_appended_total "$text")" "$(metric callstate_spool_drained_total "$text")" >>"$OUT/metrics.csv"
  done
) &
sampler_pid=$!

echo "== steady load: $RATE events/s, $CONC_STEADY workers; PostgreSQL stops after ${WARMUP} s for ${OUTAGE} s, then ${AFTER} s more"
sleep_until "$(awk -v t="$t0" -v w="$WARMUP" 'BEGIN { printf "%.3f", t + w }')"
echo outage >"$tmp/phase"
t_stop=$(now)
pg_stop fast
t_down=$(now)
echo "  $(awk -v a="$t_down" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s: PostgreSQL stopped (fast shutdown took $(awk -v a="$t_down" -v b="$t_stop" 'BEGIN { printf "%.2f", a - b }') s)"
sleep_until "$(awk -v t="$t_down" -v o="$OUTAGE" 'BEGIN { printf "%.3f", t + o }')"
pg_restart
t_up=$(now)
echo recovery >"$tmp/phase"
echo "  $(awk -v a="$t_up" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s: PostgreSQL accepting connections again"
sleep_until "$(awk -v t="$t_up" -v a="$AFTER" 'BEGIN { printf "%.3f", t + a }')"
kill -INT "$load_pid" 2>/dev/null || true
wait "$load_pid" || echo "  callstate-load exited with an error" >&2
load_pid=
if ! kill -0 "$cs_pid" 2>/dev/null; then
  echo "callstate exited during the run:" >&2
  tail -n 20 "$OUT/callstate.log" >&2
  exit 1
fi
t_end=$(now)
echo tail >"$tmp/phase"
echo "  $(awk -v a="$t_end" -v b="$t0" 'BEGIN { printf "%.1f", a - b }') s: load stopped; watching the spool up to ${TAIL} s more"
t_tail_empty=
for ((i = 0; i < TAIL * 2; i++)); do
  kill -0 "$cs_pid" 2>/dev/null || break
  left=$(metric callstate_spool_events)
  if [ "${left:-1}" = 0 ]; then t_tail_empty=$(now); break; fi
  sleep 0.5
done
sleep 1.2 # one more sample
touch "$tmp/stop-sampler"
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=
grep -v '^INTERVAL\|^RESULT' "$OUT/steady.out" | sed 's/^/  /' || true

csv=$OUT/metrics.csv
has_drained=$(awk -F, 'NR > 1 && $6 != "" { print 1; exit }' "$csv")

# The window from the database's start until the backlog is empty, while
# the load runs.
t_empty=$(awk -F, -v up="$t_up" -v end="$t_end" 'NR > 1 && $2 >= up && $2 <= end && $4 == "0" { print $2; exit }' "$csv")
win_end=${t_empty:-$t_end}

# lat_window FROM TO: of the requests sent in [FROM, TO) (Unix times), the
# answered ones with p50, p99 and max latency in ms, and the failed ones.
lat_window() {
  local failed
  failed=$(awk -v from="$1" -v to="$2" 'BEGIN { f = from * 1e6; t = to * 1e6 }
    $1 >= f && $1 < t && !($3 >= 200 && $3 < 300) { n++ } END { print n + 0 }' "$OUT/requests.txt")
  awk -v from="$1" -v to="$2" 'BEGIN { f = from * 1e6; t = to * 1e6 }
    $1 >= f && $1 < t && $3 >= 200 && $3 < 300 { print $2 }' "$OUT/requests.txt" |
    sort -n | awk -v failed="$failed" '{ v[NR] = $1 }
      END {
        n = NR
        if (n == 0) { print 0, "-", "-", "-", failed; exit }
        i50 = int(0.5 * n); i99 = int(0.99 * n); if (i99 >= n) i99 = n - 1
        printf "%d %.2f %.2f %.2f %d\n", n, v[i50 + 1] / 1000, v[i99 + 1] / 1000, v[n] / 1000, failed
      }'
}

echo
echo "== backlog over time (every 5 s; in/s: events spooled, out/s: events leaving the spool; latency of the requests sent in those 5 s)"
# Latency per 5 s bucket of send time, relative to t0.
awk -v t0="$t0" '{ b = int(($1 / 1e6 - t0) / 5) * 5; if ($3 >= 200 && $3 < 300) print b, $2; else print b, -1 }' "$OUT/requests.txt" |
  sort -k1,1n -k2,2n | awk '
    function flush() {
      if (!started) return
      n = cnt
      if (n > 0) {
        i50 = int(0.5 * n); i99 = int(0.99 * n); if (i99 >= n) i99 = n - 1
        printf "%s %d %d %.1f %.1f\n", cur, n, fail, v[i50 + 1] / 1000, v[i99 + 1] / 1000
      } else printf "%s 0 %d - -\n", cur, fail
    }
    !started || $1 != cur { flush(); started = 1; cur = $1; cnt = 0; fail = 0 }
    $2 < 0 { fail++; next }
    { v[++cnt] = $2 }
    END { flush() }' >"$tmp/lat5"
awk -F, -v hd="$has_drained" '
  NR == FNR { split($0, f, " "); ok[f[1]] = f[2]; fl[f[1]] = f[3]; p50[f[1]] = f[4]; p99[f[1]] = f[5]; next }
  FNR == 1 { printf "%6s  %-8s  %8s  %7s  %7s  %7s  %6s  %8s  %8s\n", "t_s", "phase", "backlog", "in/s", "out/s", "ok/s", "failed", "p50 ms", "p99 ms"; next }
  {
    t = $1 + 0; s = int(t + 0.5)
    if (s % 5 != 0) next
    inr = "-"; outr = "-"
    if (havep && $5 != "" && pa != "") {
      dt = $2 - pu; inr = ($5 - pa) / dt
      outr = (hd && $6 != "" && pd != "") ? ($6 - pd) / dt : inr - ($4 - pe) / dt
      if (outr < 0) outr = 0
      inr = sprintf("%.0f", inr); outr = sprintf("%.0f", outr)
    }
    b = s - 5
    printf "%6d  %-8s  %8s  %7s  %7s  %7s  %6s  %8s  %8s\n", s, $3, $4, inr, outr,
      (b in ok) ? sprintf("%.0f", ok[b] / 5) : "-", (b in fl) ? fl[b] : "-", (b in p50) ? p50[b] : "-", (b in p99) ? p99[b] : "-"
    havep = 1; pu = $2; pa = $5; pe = $4; pd = $6
  }' "$tmp/lat5" "$csv"

# Peak backlog, the drain's start and rate.
read -r peak peak_t < <(awk -F, 'NR > 1 && $4 != "" && $4 + 0 > m { m = $4 + 0; t = $1 } END { print m + 0, t + 0 }' "$csv")
read -r drained drain_from drain_to < <(awk -F, -v up="$t_up" -v end="$win_end" -v hd="$has_drained" '
  NR == 1 { next }
  $4 == "" || $5 == "" { next }
  {
    if (have && $2 >= up && $2 <= end) {
      left = (hd && $6 != "" && pd != "") ? $6 - pd : ($5 - pa) - ($4 - pe)
      if (left > 0) { if (from == "") from = pu > up ? pu : up; to = $2; sum += left }
    }
    have = 1; pu = $2; pa = $5; pe = $4; pd = $6
  }
  END { if (from == "") print 0, 0, 0; else print sum, from, to }' "$csv")
drain_rate=$(awk -v n="$drained" -v a="$drain_from" -v b="$drain_to" 'BEGIN { d = b - a; printf "%.0f", (d > 0 ? n / d : 0) }')
ratio=$(awk -v r="$drain_rate" -v d="$direct" 'BEGIN { printf "%.2f", (d > 0 ? r / d : 0) }')
rel() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }

echo
echo "== latency of webhook answers by window (send time; ms)"
printf '  %-34s  %8s  %6s  %7s  %7s  %7s\n' window ok failed p50 p99 max
show_window() {
  local name=$1 from=$2 to=$3 n p50 p99 mx fl
  read -r n p50 p99 mx fl < <(lat_window "$from" "$to")
  printf '  %-34s  %8s  %6s  %7s  %7s  %7s\n' "$name" "$n" "$fl" "$p50" "$p99" "$mx"
}
show_window "warm-up (database up)" "$t0" "$t_stop"
show_window "outage (database down)" "$t_stop" "$t_up"
show_window "drain (database back, until empty)" "$t_up" "$win_end"
if [ "$win_end" != "$t_end" ]; then show_window "after the spool was empty" "$win_end" "$t_end"; fi
read -r drain_n drain_p50 drain_p99 drain_max drain_failed < <(lat_window "$t_up" "$win_end")

echo
echo "== results"
steady_ok=$(result_field "$OUT/steady.out" ok)
echo "  direct write rate (anchor):      $direct events/s${anchor_note}"
echo "  steady load:                     $(grep '^RESULT' "$OUT/steady.out" | sed 's/^RESULT //')"
echo "  peak backlog:                    $peak events, at $peak_t s (the outage began at $(rel "$t_stop" "$t0") s, PostgreSQL was back at $(rel "$t_up" "$t0") s)"
if [ -n "$t_empty" ]; then
  empty_s=$(rel "$t_empty" "$t_up")
  echo "  backlog empty:                   $empty_s s after the database's start"
else
  empty_s=
  echo "  backlog empty:                   not empty after $(rel "$t_end" "$t_up") s of load ($(awk -F, -v e="$t_end" '$2 <= e { v = $4 } END { print v }' "$csv") events left when the load stopped)"
fi
if [ "$drain_from" != 0 ]; then
  echo "  draining began:                  $(rel "$drain_from" "$t_up") s after the database's start (0: within the first 1 s sample)"
else
  echo "  draining began:                  never (no event left the spool)"
fi
src="callstate_spool_drained_total"
[ -n "$has_drained" ] || src="spooled minus the backlog's growth; callstate has no callstate_spool_drained_total"
echo "  drain rate:                      $drain_rate events/s ($drained events in $(rel "$drain_to" "$drain_from") s; $src)"
echo "  drain rate / direct rate:        $ratio"
echo "  live latency while draining:     p50 $drain_p50 ms, p99 $drain_p99 ms, max $drain_max ms ($drain_n answered, $drain_failed failed)"
if [ -n "$t_tail_empty" ]; then
  echo "  after the load stopped:          spool empty $(rel "$t_tail_empty" "$t_end") s later"
else
  echo "  after the load stopped:          spool still held $(metric callstate_spool_events) events ${TAIL} s later"
fi
rows=$(psql "$db" -Atc 'SELECT count(*) FROM call_event' 2>/dev/null || echo '?')
left=$(metric callstate_spool_events)
echo "  journal rows:                    $rows; answered 2xx: $((${direct_ok:-0} + ${steady_ok:-0})) (anchor and steady load); still in the spool: $left$([ "$left" = 0 ] || echo ' (still draining: the sum is approximate)')"

verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
t1=0; t2=0; t3=0
[ -n "$empty_s" ] && awk -v e="$empty_s" -v m="$EMPTY_WITHIN" -v te="$t_empty" -v le="$t_end" 'BEGIN { exit !(e <= m && te <= le) }' && t1=1
awk -v r="$ratio" -v m="$DRAIN_RATIO" 'BEGIN { exit !(r >= m) }' && t2=1
[ "$drain_p99" != "-" ] && awk -v p="$drain_p99" -v m="$P99_MAX" 'BEGIN { exit !(p < m) }' && t3=1
echo
echo "== targets"
printf '  %-58s  %-28s  %s\n' "backlog empty within $EMPTY_WITHIN s of the database's start, under load" "$([ -n "$empty_s" ] && echo "$empty_s s" || echo "not empty")" "$(verdict $t1)"
printf '  %-58s  %-28s  %s\n' "drain rate >= $DRAIN_RATIO x the direct rate" "$drain_rate/s = $ratio x $direct/s" "$(verdict $t2)"
printf '  %-58s  %-28s  %s\n' "live p99 < $P99_MAX ms while draining" "$drain_p99 ms" "$(verdict $t3)"
echo "  (samples: $OUT/metrics.csv; requests: $OUT/requests.txt; logs: $OUT/callstate.log, $OUT/postgres.log)"
