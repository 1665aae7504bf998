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
	time.Sleep(stale + 200*time.Millisecond)
	in.post(t, fresh)
	time.Sleep(1100 * time.Millisecond) // past /api/today's cache

	var today struct {
		Waiting      int     `json:"waiting"`
		NoNews       int     `json:"no_news"`
		RingingStale float64 `json:"ringing_stale_seconds"`
		LongestWait  float64 `json:"longest_wait_seconds"`
	}
	getJSON(t, in.url+"/api/today", &today)
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
	for _, c := range page.Calls {
		if c.NoNews != (c.Key == "quiet") {
			t.Errorf("%s: no_news %v", c.Key, c.NoNews)
		}
	}

	bctx := newBrowser(t, 1600, 1000)
	err := chromedp.Do(bctx,
		chromedp.Navigate(in.url+"/"),
		chromedp.WaitVisible(`#conn.live`),
		chromedp.WaitVisible(`#waiting-list .waiting-call.stale`),
		screenshot(t, artifactDir(t))("board-no-news.png"),
	)
	if err != nil {
		t.Fatalf("board in Chromium: %v", err)
	}
	type shown struct {
		Waiting string `json:"waiting"`
		Count   string `json:"count"`
		Stale   string `json:"stale"`
		Fresh   bool   `json:"fresh"`
	}
	got, err := chromedp.Run(bctx, chromedp.Evaluate[shown](`({
		waiting: document.getElementById("waiting").textContent,
		count: document.getElementById("waiting-count").textContent,
		stale: document.querySelector("#waiting-list .waiting-call.stale .time").textContent,
		fresh: !!document.querySelector("#waiting-list .waiting-call:not(.stale) .time[data-since]"),
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if got.Waiting != "1" || got.Count != "1" || !got.Fresh || len(got.Stale) != len("no news since 00:00") || got.Stale[:13] != "no news since" {
		t.Errorf("board %+v: want 1 waiting, the fresh caller timed, the other \"no news since hh:mm\"", got)
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
