package store_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate/store/storetest"
)

// loadJourneyCalls is storetest.LoadJourneyCalls.
func loadJourneyCalls(tb testing.TB, pool *pgxpool.Pool, n, days int) {
	tb.Helper()
	storetest.LoadJourneyCalls(tb, pool, n, days)
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
