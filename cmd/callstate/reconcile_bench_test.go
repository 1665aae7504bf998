package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sipgateapi"
	"github.com/callstate/callstate/sipgateapi/sipgatetest"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// BenchmarkReconcileDay reconciles a day of 50,000 history entries (a
// tenth of them calls whose webhooks came and lost their hangup, the rest
// unknown and created) against the sipgate stand-in and PostgreSQL, while
// webhooks come in at a steady 40 a second; and the same webhook load
// alone, before and after, as the anchor. It reports the walk's time, the
// requests made, and the webhook path's p99 with and without the walk.
// Run with -benchtime=1x: one iteration is one whole day.
func BenchmarkReconcileDay(b *testing.B) {
	const entries, known = 50_000, 5_000
	for range b.N {
		b.StopTimer()
		s := sipgatetest.New(b)
		dbURL := storetest.NewDatabase(b)
		base, _, stop := startService(b, map[string]string{"DATABASE_URL": dbURL, "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "error"})

		ctx := context.Background()
		st, err := store.Open(ctx, dbURL, store.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		day := time.Now().Add(-25 * time.Hour).UTC().Truncate(time.Hour)
		es := make([]sipgatetest.Entry, entries)
		for i := range es {
			at := day.Add(time.Duration(i) * 24 * time.Hour / entries)
			id := fmt.Sprintf("day-%05d", i)
			switch i % 5 {
			case 0, 1:
				es[i] = entry(id, at, "INCOMING", "PICKUP", "SUCCESS", 30+i%300, sipgatetest.Ext("ROUTED", "w0", "USER"))
			case 2, 3:
				es[i] = entry(id, at, "MISSED_INCOMING", "NOPICKUP", "MISSED", 0)
			default:
				es[i] = entry(id, at, "INCOMING", "PICKUP", "VOICEMAIL_NO_MESSAGE", 20, sipgatetest.Ext("FORWARDED", "v0", "VOICEMAIL"))
			}
			if i%(entries/known) == 0 { // its webhooks came, its hangup was lost
				if _, err := st.Apply(ctx, callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: id + "/n",
					ReceivedAt: at, Payload: []byte("newCall"), Update: callstate.Update{Key: id, CallID: id,
						Direction: callstate.DirectionIn, From: "4915799912345", To: "4930123456", State: callstate.StateRinging}}); err != nil {
					b.Fatal(err)
				}
			}
		}
		s.AddHistory(es...)
		api, err := sipgateapi.New(s.URL+"/v2", sipgatetest.TokenID, sipgatetest.Token, sipgateapi.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		plan, _ := callstate.NewNumberPlan("DE")
		r := &reconciler{st: st, events: backlogApplier{st}, api: api, plan: plan, owner: "bench", interval: 30 * time.Second,
			log: slog.New(slog.DiscardHandler)}

		before := webhookLoad(b, base, "before", 15*time.Second, nil)
		var walk time.Duration
		var rep reconcileReport
		during := webhookLoad(b, base, "during", 0, func() {
			b.StartTimer()
			began := time.Now()
			rep, err = r.walk(ctx, day, day.Add(24*time.Hour), time.Now())
			walk = time.Since(began)
			b.StopTimer()
		})
		if err != nil {
			b.Fatal(err)
		}
		after := webhookLoad(b, base, "after", 15*time.Second, nil)
		if rep.Entries != entries || rep.Created != entries-known || rep.Ended != known {
			b.Fatalf("walk %+v, want %d entries, %d created, %d ended", rep, entries, entries-known, known)
		}
		b.ReportMetric(walk.Seconds(), "walk_s")
		b.ReportMetric(float64(api.Requests()), "requests")
		b.ReportMetric(float64(entries)/walk.Seconds(), "entries/s")
		b.ReportMetric(p99(before), "p99_before_ms")
		b.ReportMetric(p99(during), "p99_during_ms")
		b.ReportMetric(p99(after), "p99_after_ms")
		b.Logf("webhooks: %d before, %d during, %d after the walk", len(before), len(during), len(after))
		st.Close()
		stop()
	}
}

// webhookLoad posts a newCall and a hangup every 50 ms (40 webhooks a
// second) to base for d, or while work runs, and returns each POST's
// latency in milliseconds.
func webhookLoad(b *testing.B, base, tag string, d time.Duration, work func()) []float64 {
	b.Helper()
	done := make(chan struct{})
	if work != nil {
		go func() { work(); close(done) }()
	} else {
		go func() { time.Sleep(d); close(done) }()
	}
	var (
		mu  sync.Mutex
		lat []float64
		wg  sync.WaitGroup
	)
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(form url.Values) {
		t0 := time.Now()
		resp, err := client.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		ms := float64(time.Since(t0).Microseconds()) / 1000
		if err != nil {
			b.Error(err)
			return
		}
		resp.Body.Close()
		mu.Lock()
		lat = append(lat, ms)
		mu.Unlock()
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-done:
			wg.Wait()
			return lat
		case <-t.C:
		}
		id := fmt.Sprintf("load-%s-%d", tag, n)
		wg.Go(func() {
			post(hook("newCall", id, "user[]", "Alice", "userId[]", "w0"))
			post(hook("hangup", id, "cause", "cancel"))
		})
	}
}

func p99(ms []float64) float64 {
	if len(ms) == 0 {
		return 0
	}
	s := slices.Clone(ms)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}
