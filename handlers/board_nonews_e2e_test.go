package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
)

// TestNoNewsCaller: a sipgate caller ringing with no news for
// SIPGATE_RINGING_STALE (a lost hangup, most likely) is not counted in
// waiting now or the longest wait, the API says no_news, and the board
// shows it greyed as "no news since hh:mm"; a caller with news still
// counts.
func TestNoNewsCaller(t *testing.T) {
	const stale = 8 * time.Second
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{Board: handlers.BoardOptions{RingingStale: stale}}, handlers.StreamOptions{})
	if err := in.store.SetRingingStale(context.Background(), stale); err != nil {
		t.Fatal(err)
	}
	quiet, _, _ := sipgateCall("quiet", 1)
	fresh, _, _ := sipgateCall("fresh", 2)
	in.post(t, quiet)
	quietDue := time.Now().Add(stale + 200*time.Millisecond) // quiet has had no news for 8 s by then

	// Chromium starts and the board opens while quiet goes without news,
	// and fresh is posted only then: fresh counts as a caller with news
	// for its first 8 s only, and on a loaded machine Chromium's start
	// alone may take most of them. On the board, quiet turns "no news" by
	// itself.
	bctx := newBrowser(t, 1600, 1000)
	if err := chromedp.Do(bctx,
		chromedp.Navigate(in.url+"/"),
		chromedp.WaitVisible(`#conn.live`),
		chromedp.WaitVisible(`#waiting-list .waiting-call.stale`),
	); err != nil {
		t.Fatalf("board in Chromium: quiet not shown with no news: %v", err)
	}
	time.Sleep(time.Until(quietDue))
	in.post(t, fresh)

	// The journeys, which /api/today counts, are computed after the write;
	// and /api/today keeps its answer for a second, which the board asks
	// for after each change: read it until an answer computed after the
	// journeys were.
	syncJourneys(t, in)
	synced := time.Now()
	var today struct {
		Waiting      int       `json:"waiting"`
		NoNews       int       `json:"no_news"`
		RingingStale float64   `json:"ringing_stale_seconds"`
		LongestWait  float64   `json:"longest_wait_seconds"`
		AsOf         time.Time `json:"as_of"`
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		getJSON(t, in.url+"/api/today", &today)
		if today.AsOf.After(synced) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/api/today answers as of %s, not after the journeys were computed (%s)", today.AsOf, synced)
		}
	}
	if today.Waiting != 1 || today.NoNews != 1 || today.RingingStale != 8 || today.LongestWait > 8 {
		t.Errorf("/api/today %+v: want 1 waiting (fresh, under 8 s), 1 with no news", today)
	}
	var page struct {
		Calls []struct {
			Key    string `json:"key"`
			NoNews bool   `json:"no_news"`
		} `json:"calls"`
	}
	getJSON(t, in.url+"/api/calls?active=true", &page)
	listed := map[string]bool{}
	for _, c := range page.Calls {
		listed[c.Key] = true
		if c.NoNews != (c.Key == "quiet") {
			t.Errorf("%s: no_news %v", c.Key, c.NoNews)
		}
	}
	if !listed["quiet"] || !listed["fresh"] {
		t.Errorf("/api/calls?active=true lists %v; want quiet and fresh", listed)
	}

	// fresh reaches the open board through its stream: read the board once
	// it shows a caller with news beside quiet.
	type shown struct {
		Waiting string `json:"waiting"`
		Count   string `json:"count"`
		Stale   string `json:"stale"`
		Fresh   bool   `json:"fresh"`
	}
	got, err := chromedp.Run(bctx, chromedp.Poll[shown](`document.querySelector("#waiting-list .waiting-call:not(.stale)") &&
		document.querySelector("#waiting-list .waiting-call.stale") && {
		waiting: document.getElementById("waiting").textContent,
		count: document.getElementById("waiting-count").textContent,
		stale: document.querySelector("#waiting-list .waiting-call.stale .time").textContent,
		fresh: !!document.querySelector("#waiting-list .waiting-call:not(.stale) .time[data-since]"),
	}`, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Fatalf("board in Chromium: fresh not shown beside quiet: %v", err)
	}
	if got.Waiting != "1" || got.Count != "1" || !got.Fresh || len(got.Stale) != len("no news since 00:00") || got.Stale[:13] != "no news since" {
		t.Errorf("board %+v: want 1 waiting, the fresh caller timed, the other \"no news since hh:mm\"", got)
	}
	if err := chromedp.Do(bctx, screenshot(t, artifactDir(t))("board-no-news.png")); err != nil {
		t.Fatal(err)
	}
}

func getJSON(tb testing.TB, u string, v any) {
	tb.Helper()
	res, err := http.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		tb.Fatal(err)
	}
}
