package handlers_test

import (
	"context"
	"fmt"
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
// newCalls/s, in turns without rules and with 200 rules (the call
// matching the last), in one process on one database, so that the two
// are measured under the same load of the machine. Each latency is
// measured from the request's scheduled time (no coordinated omission).
// The lamps are kept live by the store's notifications, as in the
// service, and the phonebook holds the caller.
//
//	go test -run '^$' -bench NewCallRouting -benchtime 1x ./handlers/
func BenchmarkNewCallRouting(b *testing.B) {
	const (
		rate   = 1000 // newCalls per second
		perRun = 3000 // newCalls in a turn: 3 s
		turns  = 3    // of each
	)
	plan, _ := callstate.NewNumberPlan("DE")
	rules, err := routing.Parse([]byte(benchRules()), plan)
	if err != nil {
		b.Fatal(err)
	}
	e := newRoutingEnv(b, "", handlers.SipgateOptions{})
	e.now = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	if _, _, err := e.store.AddContacts(context.Background(), []callstate.Contact{
		{Name: "Caller", Numbers: []string{"4917012345678"}, Groups: []string{"customers"}}}); err != nil {
		b.Fatal(err)
	}
	if err := e.pb.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	lat := map[bool][]time.Duration{}
	n := 0
	for b.Loop() {
		for turn := range 2 * turns {
			with := turn%2 == 1
			if with {
				e.rules.Store(rules)
			} else {
				e.rules.Store(nil)
			}
			ls, failed := fixedRate(e.h, rate, perRun, func(i int) string {
				id := fmt.Sprintf("rb-%d-%d", n, i)
				return "event=newCall&direction=in&from=4917012345678&to=4930123456789&callId=" + id +
					"&origCallId=" + id + "&user%5B%5D=Alice&userId%5B%5D=w0"
			}, func(body string) bool { return !with || strings.Contains(body, "<Number>491601234567</Number>") })
			n++
			if failed > 0 {
				b.Fatalf("turn %d (rules %v): %d newCalls failed or were answered by the wrong rule", turn, with, failed)
			}
			lat[with] = append(lat[with], ls...)
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

// fixedRate posts n bodies to h, body i scheduled at start + i/rate, from
// enough goroutines that none waits for another, and returns each one's
// latency from its scheduled time and how many failed (not 200, or ok
// says no).
func fixedRate(h http.Handler, rate, n int, body func(int) string, ok func(string) bool) ([]time.Duration, int) {
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = body(i)
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
				h.ServeHTTP(rec, req)
				lat[i] = time.Since(at)
				if rec.Code != http.StatusOK || !ok(rec.Body.String()) {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return lat, int(failed.Load())
}
