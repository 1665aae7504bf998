package handlers_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// TestMetricsBoundedByPaths: after one request of each kind, 2,000 more
// with distinct paths (made-up ones, API ids, board files, webhook
// secrets) and methods add no series to /metrics, and its size changes
// only by the digits of the counts. scripts/metrics-paths.sh measures the
// same with 100,000 requests over HTTP (docs/benchmarks.md).
func TestMetricsBoundedByPaths(t *testing.T) {
	const token = "s3cret-token-for-tests"
	m := metrics.New()
	st, err := store.Open(context.Background(), storetest.NewDatabase(t), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e, err := handlers.New(handlers.Options{
		Store: st, Ready: st, Logger: slog.New(slog.DiscardHandler), Metrics: m,
		Dashboard: handlers.DashboardOptions{Store: st, BearerToken: token},
		Sipgate:   handlers.SipgateOptions{PublicURL: "https://callstate.example.com", PathSecret: "abcdefghijklmnop0123"},
	})
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"/made-up/%d", "/api/calls/%d", "/api/calls/x%d/events", "/board/%d.js", handlers.SipgatePath + "/%d", "/%d", "/api/x/%d"}
	methods := []string{http.MethodGet, http.MethodPost, http.MethodDelete, "FOO"}
	round := func(i int) {
		for _, p := range paths {
			for _, method := range methods {
				req := httptest.NewRequest(method, fmt.Sprintf(p, i), nil)
				if strings.HasPrefix(p, "/api/") && i%2 == 0 {
					req.Header.Set("Authorization", "Bearer "+token)
				}
				e.ServeHTTP(httptest.NewRecorder(), req)
			}
		}
	}
	scrape := func() (series []string, size int) {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		body := rec.Body.String()
		for line := range strings.SplitSeq(body, "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			name, _, _ := strings.Cut(line, " ")
			series = append(series, name)
		}
		slices.Sort(series)
		return series, len(body)
	}
	round(0)
	round(1)
	scrape() // the scrape's own series
	before, sizeBefore := scrape()
	for i := 2; len(paths)*len(methods)*(i-1) < 2000; i++ {
		round(i)
	}
	after, sizeAfter := scrape()
	if !slices.Equal(before, after) {
		var added []string
		for _, s := range after {
			if !slices.Contains(before, s) {
				added = append(added, s)
			}
		}
		t.Fatalf("/metrics has %d series after the distinct paths, %d before; new: %q", len(after), len(before), added)
	}
	// Counts grow by a digit or two; the series alone are the same.
	if d := sizeAfter - sizeBefore; d < 0 || d > 4*len(after) {
		t.Errorf("/metrics grew from %d to %d bytes", sizeBefore, sizeAfter)
	}
	t.Logf("%d series; /metrics %d bytes, then %d", len(after), sizeBefore, sizeAfter)
}
