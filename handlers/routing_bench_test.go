package handlers_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/routing"
)

// benchRules is a file of 200 rules of every kind, of which the call
// the benchmark sends matches the last: every rule is tried.
func benchRules() string {
	var b strings.Builder
	b.WriteString("time_zone: Europe/Berlin\nholidays: [2026-12-24, 2026-12-25]\nrules:\n")
	for i := range 199 {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  - name: block %d\n    when: { from: [\"+4930%04d*\", \"+49170%07d\"] }\n    then: { reject: busy }\n", i, i, i)
		case 1:
			fmt.Fprintf(&b, "  - name: group %d\n    when: { group: g%d, inside: \"Mon-Fri 00:00-24:00\" }\n    then: { dial: [\"+49160%07d\"] }\n", i, i, i)
		case 2:
			fmt.Fprintf(&b, "  - name: lamp %d\n    when: { user: w0, lamp: { w%d: busy } }\n    then: { voicemail: true }\n", i, i)
		case 3:
			fmt.Fprintf(&b, "  - name: line %d\n    when: { to: \"+49285%06d\", outside: \"Sat,Sun\" }\n    then: { play: \"https://example.com/%d.wav\" }\n", i, i, i)
		}
	}
	b.WriteString("  - name: last\n    when: { to: \"+4930123456789\" }\n    then: { dial: { numbers: [\"+491601234567\"], caller_id: \"+4930123456789\" } }\n")
	return b.String()
}

// BenchmarkNewCallRouting measures newCall's whole answer (Echo, the form,
// routing, the store's write in PostgreSQL) at a fixed rate of 1,000
// newCalls/s, without rules and with 200 rules (the call matching the
// last), interleaved: two webhooks on one database, one with the rules and
// one without, take every other newCall, so that both are measured under
// the same load of the machine at the same moments. Each latency is
// measured from the request's scheduled time (no coordinated omission).
// The lamps are kept live by the store's notifications, as in the
// service, and the phonebook holds the caller.
//
//	go test -run '^$' -bench NewCallRouting -benchtime 1x -count 3 ./handlers/
func BenchmarkNewCallRouting(b *testing.B) {
	const (
		rate = 1000 // newCalls per second, both webhooks together
		n    = 10000
	)
	plan, _ := callstate.NewNumberPlan("DE")
	rules, err := routing.Parse([]byte(benchRules()), plan)
	if err != nil {
		b.Fatal(err)
	}
	e := newRoutingEnv(b, "", handlers.SipgateOptions{}) // without rules
	e.now = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	routed, err := handlers.New(handlers.Options{Store: e.store, Logger: discardLog, Sipgate: handlers.SipgateOptions{
		PublicURL: "https://callstate.example.com",
		Routing: &handlers.RoutingOptions{Rules: func() *routing.Rules { return rules }, Lamps: e.lamps, Phonebook: e.pb,
			Secret: routingSecret, Now: func() time.Time { return e.now }},
	}})
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := e.store.AddContacts(context.Background(), []callstate.Contact{
		{Name: "Caller", Numbers: []string{"4917012345678"}, Groups: []string{"customers"}}}); err != nil {
		b.Fatal(err)
	}
	if err := e.pb.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	lat := map[bool][]time.Duration{}
	round := 0
	for b.Loop() {
		ls, failed := fixedRate(rate, n, func(i int) (http.Handler, string) {
			id := fmt.Sprintf("rb-%d-%d", round, i)
			h := e.h
			if i%2 == 1 {
				h = routed
			}
			return h, "event=newCall&direction=in&from=4917012345678&to=4930123456789&callId=" + id +
				"&origCallId=" + id + "&user%5B%5D=Alice&userId%5B%5D=w0"
		}, func(i int, body string) bool {
			return strings.Contains(body, "<Number>491601234567</Number>") == (i%2 == 1)
		})
		round++
		if failed > 0 {
			b.Fatalf("%d newCalls failed or were answered by the wrong rule", failed)
		}
		for i, l := range ls {
			lat[i%2 == 1] = append(lat[i%2 == 1], l)
		}
	}
	for _, with := range []bool{false, true} {
		ls := lat[with]
		slices.Sort(ls)
		name := "norules"
		if with {
			name = "rules200"
		}
		b.ReportMetric(float64(ls[len(ls)/2].Microseconds())/1000, "p50-ms-"+name)
		b.ReportMetric(float64(ls[len(ls)*99/100].Microseconds())/1000, "p99-ms-"+name)
		b.ReportMetric(float64(ls[len(ls)-1].Microseconds())/1000, "max-ms-"+name)
	}
	if e.lamps.Reads() == 0 {
		b.Error("the lamps were never read")
	}
}

var discardLog = slog.New(slog.DiscardHandler)

// fixedRate posts n requests, request i (a handler and its body) scheduled
// at start + i/rate, from enough goroutines that none waits for another,
// and returns each one's latency from its scheduled time and how many
// failed (not 200, or ok says no).
func fixedRate(rate, n int, request func(int) (http.Handler, string), ok func(int, string) bool) ([]time.Duration, int) {
	hs := make([]http.Handler, n)
	bodies := make([]string, n)
	for i := range bodies {
		hs[i], bodies[i] = request(i)
	}
	lat := make([]time.Duration, n)
	var failed atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now().Add(10 * time.Millisecond)
	for range 64 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				at := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
				time.Sleep(time.Until(at))
				req := httptest.NewRequest(http.MethodPost, handlers.SipgatePath, strings.NewReader(bodies[i]))
				req.Header.Set("Content-Type", formType)
				rec := httptest.NewRecorder()
				hs[i].ServeHTTP(rec, req)
				lat[i] = time.Since(at)
				if rec.Code != http.StatusOK || !ok(i, rec.Body.String()) {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return lat, int(failed.Load())
}
