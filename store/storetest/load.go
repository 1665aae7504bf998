package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// LoadJourneyCalls fills call_state of the migrated database behind pool
// with n generated sipgate legs spread over the days before now, a
// realistic mix of journeys (see the SQL), computes their journeys as
// migration 012 does and compacts their stats, for benchmarks.
func LoadJourneyCalls(tb testing.TB, pool *pgxpool.Pool, n, days int) {
	tb.Helper()
	ctx := context.Background()
	start := time.Now()
	// Journey i: direction, outcome and legs by i's residue; 50 users;
	// start evenly over the days. 70 % in (answered 62 %, missed 15 %,
	// voicemail 8 % as a forward plus a voicemail leg, forwarded and
	// answered on the second leg 10 %, forwarded out of reach 3 %,
	// congestion 2 %), 30 % out (answered 70 %, busy or no answer 30 %).
	_, err := pool.Exec(ctx, `
INSERT INTO call_state (source, call_key, call_id, orig_call_id, extension, extension_pinned, direction,
    from_party, to_party, users, user_ids, answered_by, answering_number, state, hangup_cause,
    started_at, answered_at, ended_at, updated_at, last_event_id)
SELECT 'sipgate', g.key, g.key, g.orig, g.ext, g.ans IS NOT NULL, g.dir,
       g.caller, g.callee, g.users, g.uids, g.by, CASE WHEN g.ans IS NOT NULL THEN '4930555' ELSE '' END,
       'ended', g.cause, g.t0, g.ans, g.t1, g.t1, g.id
FROM (
    SELECT i AS id, j, leg,
           'c' || j || CASE WHEN leg = 2 THEN 'b' ELSE '' END AS key,
           'c' || j AS orig,
           CASE WHEN kind LIKE 'out%' THEN 'out' ELSE 'in' END AS dir,
           CASE WHEN kind LIKE 'out%' THEN '4930555' ELSE '4917' || (j % 20000) END AS caller,
           CASE WHEN kind LIKE 'out%' THEN '4917' || (j % 20000) ELSE '4930555' END AS callee,
           CASE WHEN leg = 2 AND kind = 'vm' THEN ARRAY['voicemail'] ELSE ARRAY['User ' || u] END AS users,
           CASE WHEN leg = 2 AND kind = 'vm' THEN '{}'::text[] ELSE ARRAY['w' || u] END AS uids,
           CASE WHEN leg = 2 AND kind = 'vm' THEN '' ELSE 'w' || u END AS ext,
           CASE WHEN kind IN ('ans', 'out-ans') OR (leg = 2 AND kind = 'fwd-ans') THEN 'User ' || u ELSE '' END AS by,
           CASE WHEN kind IN ('ans', 'out-ans') OR (leg = 2 AND kind IN ('fwd-ans', 'vm')) THEN t0 + ring END AS ans,
           CASE WHEN leg = 1 AND kind IN ('vm', 'fwd-ans', 'fwd-out') THEN 'forwarded'
                WHEN kind IN ('ans', 'out-ans', 'fwd-ans', 'vm') THEN 'normalClearing'
                WHEN kind = 'cong' THEN 'congestion'
                WHEN kind = 'out-busy' THEN 'busy'
                ELSE 'cancel' END AS cause,
           t0,
           t0 + ring + CASE WHEN kind IN ('ans', 'out-ans') OR (leg = 2 AND kind IN ('fwd-ans', 'vm')) THEN talk ELSE interval '0' END AS t1
    FROM (
        SELECT i, j, leg, kind, 1 + (j * 7919) % 50 AS u,
               now() - (interval '1 day' * $2::int) * (j::double precision / $1::int) + CASE WHEN leg = 2 THEN interval '20 s' ELSE interval '0' END AS t0,
               interval '1 s' * (2 + (j * 31) % 25) AS ring,
               interval '1 s' * (20 + (j * 97) % 600) AS talk
        FROM (
            SELECT i, j, leg,
                   CASE WHEN j % 10 < 7 THEN
                            CASE WHEN j % 100 < 62 THEN 'ans' WHEN j % 100 < 77 THEN 'miss' WHEN j % 100 < 85 THEN 'vm'
                                 WHEN j % 100 < 95 THEN 'fwd-ans' WHEN j % 100 < 98 THEN 'fwd-out' ELSE 'cong' END
                        ELSE CASE WHEN j % 100 < 70 THEN 'out-ans' ELSE 'out-busy' END END AS kind
            FROM (SELECT i, (i * 100) / 109 AS j, CASE WHEN (i * 100) % 109 >= 100 THEN 2 ELSE 1 END AS leg
                  FROM generate_series(1::bigint, $1::bigint) AS i) s
        ) k
    ) t
) g
ON CONFLICT DO NOTHING`, n, days)
	if err != nil {
		tb.Fatalf("load: %v", err)
	}
	tb.Logf("legs written in %s", time.Since(start).Round(time.Millisecond))
	if _, err := pool.Exec(ctx, `
INSERT INTO journey (journey_id, source, direction, from_party, to_party, started_at, answered_at, ended_at,
                     outcome, answered_by, answered_user_id, wait_seconds, talk_seconds, user_ids, legs,
                     hangup_cause, voicemail_at, updated_at, day)
SELECT journey_id, source, direction, from_party, to_party, started_at, answered_at, ended_at,
       outcome, answered_by, answered_user_id, wait_seconds, talk_seconds, user_ids, legs,
       hangup_cause, voicemail_at, updated_at, day
FROM journey_from_legs
ON CONFLICT DO NOTHING`); err != nil {
		tb.Fatalf("journeys: %v", err)
	}
	tb.Logf("legs and journeys written in %s", time.Since(start).Round(time.Second))
	if _, err := pool.Exec(ctx, `SELECT callstate_compact_journey_stats(100000)`); err != nil {
		tb.Fatalf("compact: %v", err)
	}
	tb.Logf("and their stats compacted after %s", time.Since(start).Round(time.Second))
	// As autovacuum would: the compaction left the changes it folded
	// behind as dead rows.
	for _, q := range []string{`VACUUM ANALYZE call_state`, `VACUUM ANALYZE journey`, `VACUUM ANALYZE journey_stats_part`} {
		if _, err := pool.Exec(ctx, q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	var legs, journeys int64
	_ = pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM call_state), (SELECT count(*) FROM journey)`).Scan(&legs, &journeys)
	tb.Logf("loaded %d calls (legs) in %d journeys over %d days in %s", legs, journeys, days, time.Since(start).Round(time.Second))
}
