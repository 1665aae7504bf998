package handlers_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
)

// BenchmarkBoardLoad opens the board in headless Chromium, from a fresh
// navigation to the first full drawing (the snapshot drawn and today's
// numbers asked for): with 60 users and 200 calls (40 of them going on),
// and, as the anchor of the same run, with an empty database. It reports
// ready-ms, the time from navigation start to that drawing, and
// first-draw-ms, the time that drawing took, as the page measures them
// (ready-p50-ms: the median of ready-ms), and when the page asked for
// the stream (stream-opened-ms) and had its snapshot (snapshot-in-ms).
func BenchmarkBoardLoad(b *testing.B) {
	for _, bc := range []struct {
		name         string
		users, calls int
	}{{"anchor-empty", 0, 0}, {"users=60/calls=200", 60, 200}} {
		b.Run(bc.name, func(b *testing.B) {
			in := newInstance(b, storetest.NewDatabase(b), handlers.DashboardOptions{}, handlers.StreamOptions{History: 200})
			seedLoad(b, in, bc.users, bc.calls)
			bctx := newBrowser(b, 1920, 1080)
			if err := chromedp.Do(bctx, chromedp.EmulateViewport(1920, 1080)); err != nil {
				b.Fatal(err)
			}
			var total, render, opened, snap float64
			var all []float64
			n := 0
			for b.Loop() {
				n++
				if err := chromedp.Do(bctx, chromedp.Navigate(fmt.Sprintf("%s/?wall&n=%d", in.url, n))); err != nil {
					b.Fatal(err)
				}
				ready := fmt.Sprintf(`document.body && document.body.dataset.ready === "1" && document.querySelectorAll(".lamp").length === %d ? [window.boardReadyAt, window.boardFirstRenderMs, window.boardStreamAt, window.boardSnapshotAt] : [0, 0]`, bc.users)
				var ms []float64
				for deadline := time.Now().Add(10 * time.Second); len(ms) == 0 || ms[0] == 0; {
					// Errors are the page still changing over; ask again.
					ms, _ = chromedp.Run(bctx, chromedp.Evaluate[[]float64](ready))
					if time.Now().After(deadline) {
						b.Fatal("board not drawn within 10 s")
					}
					time.Sleep(25 * time.Millisecond) // not to take the CPU from the page it measures
				}
				all = append(all, ms[0])
				total += ms[0]
				render += ms[1]
				opened += ms[2]
				snap += ms[3]
			}
			slices.Sort(all)
			b.ReportMetric(total/float64(b.N), "ready-ms")
			b.ReportMetric(all[len(all)/2], "ready-p50-ms")
			b.ReportMetric(render/float64(b.N), "first-draw-ms")
			b.ReportMetric(opened/float64(b.N), "stream-opened-ms")
			b.ReportMetric(snap/float64(b.N), "snapshot-in-ms")
		})
	}
}

// seedLoad stores users sipgate users, each with a call, and calls calls in
// all, a fifth of them going on.
func seedLoad(tb testing.TB, in *instance, users, calls int) {
	tb.Helper()
	ctx := context.Background()
	now := time.Now()
	for i := range calls {
		u := fmt.Sprintf("w%d", i%max(users, 1))
		name := teamNames[i%len(teamNames)]
		key := fmt.Sprintf("load%d", i)
		at := now.Add(-time.Duration(calls-i) * 20 * time.Second)
		ev := func(typ string, d time.Duration, up callstate.Update) {
			up.Key, up.CallID = key, key
			e := callstate.Event{Source: callstate.SourceSipgate, Type: typ, DedupKey: key + typ, ReceivedAt: at.Add(d),
				Payload: []byte("event=" + typ), Update: up}
			if _, err := in.store.Apply(ctx, e); err != nil {
				tb.Fatal(err)
			}
		}
		ev("newCall", 0, callstate.Update{Direction: callstate.DirectionIn, From: fmt.Sprintf("4916%08d", i), To: "4930555000",
			Users: []string{name}, UserIDs: []string{u}, Extension: u, State: callstate.StateRinging})
		ev("answer", 5*time.Second, callstate.Update{Extension: u, PinExtension: true, AnsweredBy: name, State: callstate.StateAnswered})
		if i < calls-calls/5 {
			ev("hangup", 15*time.Second, callstate.Update{Cause: "normalClearing", State: callstate.StateEnded})
		}
	}
}
