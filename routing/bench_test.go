package routing_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate/routing"
	"github.com/callstate/callstate/xmlresponse"
)

// rules200 is a file of 200 rules, none of which match the benchmark's
// call but the last: the worst case, every rule tried.
func rules200() string {
	var b strings.Builder
	b.WriteString("time_zone: Europe/Berlin\nholidays: [2026-12-24, 2026-12-25]\nrules:\n")
	for i := range 199 {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  - name: block %d\n    when: { from: [\"+4930%04d*\", \"+49170%07d\"] }\n    then: { reject: busy }\n", i, i, i)
		case 1:
			fmt.Fprintf(&b, "  - name: group %d\n    when: { group: g%d, inside: \"Mon-Fri 08:00-18:00\" }\n    then: { dial: [\"+49160%07d\"] }\n", i, i, i)
		case 2:
			fmt.Fprintf(&b, "  - name: lamp %d\n    when: { user: w%d, lamp: { w%d: busy } }\n    then: { voicemail: true }\n", i, i, i)
		case 3:
			fmt.Fprintf(&b, "  - name: line %d\n    when: { to: \"+49285%06d\", outside: \"Sat,Sun\" }\n    then: { play: \"https://example.com/%d.wav\" }\n", i, i, i)
		}
	}
	b.WriteString("  - name: last\n    when: { to: \"+4928559389086\" }\n    then: { dial: { numbers: [\"+491601234567\"], caller_id: \"+4928559389086\" } }\n")
	return b.String()
}

// BenchmarkEvaluate200 measures what newCall's answer adds with rules:
// trying 200 rules (the call matches the last) and writing the XML; the
// anchor, measured in the same run, writes the same XML without rules.
// It reports the p99 of single runs besides the mean.
//
//	go test -run '^$' -bench Evaluate200 -benchtime 200000x -count 3 ./routing/
func BenchmarkEvaluate200(b *testing.B) {
	r := mustParse(b, rules200())
	lamps := map[string]string{}
	for i := range 200 {
		lamps[fmt.Sprintf("w%d", i)] = "idle"
	}
	book := func(string) (string, []string, bool) { return "Someone", []string{"customers"}, true }
	call := routing.Call{Direction: "in", From: "491776249000", To: "4928559389086", UserIDs: []string{"w0"},
		At: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	env := routing.Env{Lamps: lamps, Contact: book}
	const hook = "https://cs.example.com/webhooks/sipgate"
	last := r.Evaluate(call, env).Action.Response("")
	for _, mode := range []string{"xml-only", "rules200"} {
		b.Run(mode, func(b *testing.B) {
			times := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				a := last
				if mode == "rules200" {
					d := r.Evaluate(call, env)
					if d.Rule != "last" {
						b.Fatalf("rule %q", d.Rule)
					}
					a = d.Action.Response("")
				}
				if _, err := (xmlresponse.Response{OnAnswer: hook, OnHangup: hook, Action: a}).Marshal(); err != nil {
					b.Fatal(err)
				}
				times = append(times, time.Since(t0))
			}
			slices.Sort(times)
			if len(times) > 0 {
				b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds())/1000, "p99-µs")
			}
		})
	}
}
