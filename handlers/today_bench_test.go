package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
)

// BenchmarkToday loads BENCH_JOURNEY_CALLS (default 1,000,000) calls over
// BENCH_JOURNEY_DAYS (default 90) days (storetest.LoadJourneyCalls) with
// the day cut in Europe/Berlin, and times GET /api/today over HTTP, its
// one-second cache defeated (each request's clock is 2 s after the last),
// on a full day: the clock is the last minute of yesterday in Berlin, so
// "today" holds a whole day's calls (some 10,000 journeys and 1,500 calls
// to return, each looked up for its call back). The anchor of the same
// run is GET /api/lamps, the board's other read. It reports p50-ms,
// p90-ms and p99-ms besides ns/op. Run it with
//
//	go test -run '^$' -bench BenchmarkToday -benchtime 200x ./handlers/
func BenchmarkToday(b *testing.B) {
	n, days := 1_000_000, 90
	if v, err := strconv.Atoi(os.Getenv("BENCH_JOURNEY_CALLS")); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.Atoi(os.Getenv("BENCH_JOURNEY_DAYS")); err == nil && v > 0 {
		days = v
	}
	ctx := context.Background()
	db := storetest.NewDatabase(b)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		b.Fatal(err)
	}
	y, m, d := time.Now().In(berlin).Date()
	base := time.Date(y, m, d, 0, 0, 0, 0, berlin).Add(-time.Minute)
	var tick atomic.Int64
	now := func() time.Time { return base.Add(time.Duration(tick.Add(1)) * 2 * time.Second) }
	in := newInstanceClock(b, db, handlers.DashboardOptions{Now: now}, handlers.StreamOptions{}, nil)
	if _, err := in.store.SetTimeZone(ctx, "Europe/Berlin"); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	storetest.LoadJourneyCalls(b, pool, n, days)
	var td struct {
		Day          string   `json:"day"`
		CallsIn      int      `json:"calls_in"`
		Missed       int      `json:"missed"`
		Abandoned    int      `json:"abandoned"`
		ServiceLevel *float64 `json:"service_level"`
		MissedOpen   int      `json:"missed_not_called_back"`
	}
	if code, body := get(b, in, "/api/today", nil, &td); code != 200 || td.CallsIn == 0 || td.ServiceLevel == nil {
		b.Fatalf("GET /api/today: %d %s", code, body)
	}
	b.Logf("today %s: %d calls in, %d missed, %d abandoned, service level %.3f, %d to call back",
		td.Day, td.CallsIn, td.Missed, td.Abandoned, *td.ServiceLevel, td.MissedOpen)
	for _, path := range []string{"/api/lamps", "/api/today"} {
		b.Run(path[5:], func(b *testing.B) {
			var took []float64
			for b.Loop() {
				t0 := time.Now()
				res, err := http.Get(in.url + path)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				took = append(took, float64(time.Since(t0).Microseconds())/1000)
				if res.StatusCode != 200 || !json.Valid(body) {
					b.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
				}
			}
			slices.Sort(took)
			b.ReportMetric(took[len(took)/2], "p50-ms")
			b.ReportMetric(took[len(took)*9/10], "p90-ms")
			b.ReportMetric(took[len(took)*99/100], "p99-ms")
		})
	}
}
