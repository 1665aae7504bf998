#!/usr/bin/env bash
# What the call row's feed trigger (callstate_feed_call) costs a write, by
# its version: the one of migration 028 and the current one (037), and
# none (the trigger disabled) as the floor. A build (NEW=path, default this
# tree's) fills its private PostgreSQL with FILL of sipgate-like calls at
# 1,000 events/s; then, in ROUNDS rounds, each version in turn is installed
# (CREATE OR REPLACE) and two statements are timed, each rolled back:
#   update  every call row changes a column no event names (call.updated)
#   insert  every call row copied under a new key (ringing, answered,
#           ended: two to three events a row)
# It prints each version's median time per row, the trigger's share being
# the difference to none.
#
#   scripts/bench-feed-trigger.sh
#   ROUNDS=15 FILL=20s PORTS=19190 scripts/bench-feed-trigger.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-9}
FILL=${FILL:-8s}
port=${PORTS:-19190} # PostgreSQL on port+7200
pgport=$((port + 7200))
tmp=$(mktemp -d)
chmod 755 "$tmp"
pid=
trap '[ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
NEW=${NEW:-$tmp/callstate-new}
[ -x "$NEW" ] || go build -o "$NEW" ./cmd/callstate
go build -o "$tmp/load" ./cmd/callstate-load
db="postgres://postgres@127.0.0.1:$pgport/callstate?sslmode=disable"
env DATA_DIR="$tmp/data" LOCAL_POSTGRES_PORT=$pgport LISTEN_ADDR=127.0.0.1:$port PUBLIC_URL=http://127.0.0.1:$port \
  LOG_LEVEL=warn SIPGATE_VERIFY_SIGNATURE=false "$NEW" serve -env-file /dev/null >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
"$tmp/load" -url "http://127.0.0.1:$port/webhooks/sipgate" -label fill -c 32 -d "$FILL" -rate 1000 | grep '^RESULT'
# The function's text from a migration: from its CREATE to the end of its body.
fn() { awk '/^CREATE OR REPLACE FUNCTION callstate_feed_call\(\)/{p=1} p{print} p&&/^\$\$;/{exit}' "$1"; }
fn store/migrations/028_feed_slim.sql >"$tmp/v028.sql"
fn "$(ls store/migrations/*_feed_call_lean.sql)" >"$tmp/current.sql"
cols="source, call_key, call_id, orig_call_id, extension, extension_pinned, direction, from_party, to_party,
  users, user_ids, full_user_ids, answered_by, answering_number, diversion, xcid, state, on_hold, hold_at,
  hangup_cause, cause_at, dtmf, dtmf_presses, started_at, answered_at, ended_at, updated_at, last_event_id,
  learned, end_rank, answer_rank, answer_at, routed_rule, routed_at"
sel=$(printf '%s' "$cols" | sed "s/call_key,/call_key || '-copy',/")
cat >"$tmp/run.sql" <<SQL
\\timing on
BEGIN;
UPDATE call_state SET xcid = xcid || 'x';
ROLLBACK;
BEGIN;
INSERT INTO call_state ($cols) SELECT $sel FROM call_state;
ROLLBACK;
SQL
rows=$(psql "$db" -Atc 'SELECT count(*) FROM call_state')
echo "== $rows call rows; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$ROUNDS"); do
  for v in v028 current none; do
    if [ "$v" = none ]; then
      psql "$db" -qc 'ALTER TABLE call_state DISABLE TRIGGER call_state_feed'
    else
      psql "$db" -qc 'ALTER TABLE call_state ENABLE TRIGGER call_state_feed' -f "$tmp/$v.sql"
    fi
    # The two statements' times are the 2nd and 5th of the six.
    psql "$db" -q -f "$tmp/run.sql" | awk -v v="$v" '/^Time/{n++; if (n==2) u=$2; if (n==5) i=$2} END{print v, u, i}'
  done
done >"$tmp/times"
psql "$db" -qc 'ALTER TABLE call_state ENABLE TRIGGER call_state_feed' -f "$tmp/current.sql"
echo "== load average $(cut -d' ' -f1-3 /proc/loadavg); median per call row over $ROUNDS rounds:"
sort -k1,1 -s "$tmp/times" | awk -v n="$rows" '
  function med(a, k,  i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                 return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
  { k[$1]++; u[$1, k[$1]] = $2; i[$1, k[$1]] = $3 }
  END {
    for (v in k) { delete a; delete b; for (j = 1; j <= k[v]; j++) { a[j] = u[v, j]; b[j] = i[v, j] }
                   mu[v] = med(a, k[v]); mi[v] = med(b, k[v]) }
    for (v in k) printf "%-8s update %6.1f us/row (trigger %5.1f)   insert %6.1f us/row (trigger %5.1f)\n", v,
      mu[v] * 1000 / n, (mu[v] - mu["none"]) * 1000 / n, mi[v] * 1000 / n, (mi[v] - mi["none"]) * 1000 / n
  }'
