package store_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate/store/storetest"
)

// loadJourneyCalls fills call_state with n generated sipgate legs spread
// over the days before now, a realistic mix of journeys (see the SQL),
// and computes their journeys as migration 012 does.
func loadJourneyCalls(tb testing.TB, pool *pgxpool.Pool, n, days int) {
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

// BenchmarkJourneyQueries loads BENCH_JOURNEY_CALLS (default 1,000,000)
// calls over BENCH_JOURNEY_DAYS (default 90) days and runs every journey
// view and list query, logging each one's EXPLAIN ANALYZE execution time
// and plan's top node; a full count of call_state is the anchor measured
// in the same run. Run it with
//
//	go test -run '^$' -bench BenchmarkJourneyQueries -benchtime 20x ./store/
func BenchmarkJourneyQueries(b *testing.B) {
	n, days := 1_000_000, 90
	if v, err := strconv.Atoi(os.Getenv("BENCH_JOURNEY_CALLS")); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.Atoi(os.Getenv("BENCH_JOURNEY_DAYS")); err == nil && v > 0 {
		days = v
	}
	ctx := context.Background()
	url := storetest.NewDatabase(b)
	st := openURL(b, url)
	_ = st
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	loadJourneyCalls(b, pool, n, days)
	var user string
	_ = pool.QueryRow(ctx, `SELECT 'w7'`).Scan(&user)
	// A change to today's stats, for the compaction to fold.
	const touchToday = `INSERT INTO journey_stats_part VALUES (current_date, '', false, 0, 0, 0, 0, 0, 0, 0, 0, NULL, 0)`
	queries := []struct{ name, sql, pre string }{
		{"anchor_count_call_state", `SELECT count(*) FROM call_state`, ""},
		{"stats_30d_team", `SELECT * FROM journey_stats_day WHERE day > current_date - 30 AND user_id = '' ORDER BY day`, ""},
		{"stats_30d_one_user", `SELECT * FROM journey_stats_day WHERE day > current_date - 30 AND user_id = 'w7' ORDER BY day`, ""},
		{"stats_30d_every_user", `SELECT * FROM journey_stats_day WHERE day > current_date - 30 ORDER BY day, user_id`, ""},
		{"stats_today_every_user", `SELECT * FROM journey_stats_day WHERE day = current_date ORDER BY user_id`, ""},
		{"journeys_recent_by_end", `SELECT * FROM call_journey WHERE ended_at IS NOT NULL ORDER BY ended_at DESC LIMIT 50`, ""},
		{"api_journeys_first_page", `SELECT * FROM journey WHERE started_at IS NOT NULL ORDER BY started_at DESC, journey_id DESC LIMIT 101`, ""},
		{"api_journeys_missed_page", `SELECT * FROM journey WHERE started_at IS NOT NULL AND outcome = 'missed' ORDER BY started_at DESC, journey_id DESC LIMIT 101`, ""},
		{"api_journeys_user_page", `SELECT * FROM journey WHERE started_at IS NOT NULL AND 'w7' = ANY (user_ids) ORDER BY started_at DESC, journey_id DESC LIMIT 101`, ""},
		{"api_missed_open_7d", `SELECT * FROM missed_call WHERE started_at >= now() - interval '7 days' AND NOT called_back AND number NOT IN ('', 'anonymous') ORDER BY started_at DESC, journey_id DESC LIMIT 100`, ""},
		{"missed_30d_count", `SELECT count(*) FILTER (WHERE called_back), count(*) FROM missed_call WHERE started_at >= now() - interval '30 days'`, ""},
		{"call_history_recent_by_end", `SELECT * FROM call_history ORDER BY ended_at DESC LIMIT 50`, ""},
		{"grafana_missed_per_hour_24h", `SELECT date_trunc('hour', started_at) AS "time", count(*) FROM call_journey WHERE outcome = 'missed' AND started_at >= now() - interval '24 hours' GROUP BY 1 ORDER BY 1`, ""},
		{"refresh_one_call", `SELECT callstate_refresh_calls(ARRAY['sipgate'], ARRAY['c4242b'])`, ""},
		{"compact_today", `SELECT callstate_compact_journey_stats(31)`, touchToday},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			pre := func() {
				if q.pre == "" {
					return
				}
				if _, err := pool.Exec(ctx, q.pre); err != nil {
					b.Fatal(err)
				}
			}
			pre()
			var plan []string
			rows, err := pool.Query(ctx, `EXPLAIN (ANALYZE, FORMAT TEXT) `+q.sql)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				var s string
				_ = rows.Scan(&s)
				plan = append(plan, s)
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			b.Logf("%s: %s | %s", q.name, plan[len(plan)-1], strings.TrimSpace(plan[0]))
			if os.Getenv("BENCH_JOURNEY_PLANS") != "" {
				b.Log("\n" + strings.Join(plan, "\n"))
			}
			for b.Loop() {
				if q.pre != "" {
					b.StopTimer()
					pre()
					b.StartTimer()
				}
				rows, err := pool.Query(ctx, q.sql)
				if err != nil {
					b.Fatal(err)
				}
				for rows.Next() {
				}
				if err := rows.Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
