package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/store/storetest"
)

// TestNoLeak is the short form of scripts/soak.sh: after a few thousand
// webhooks, with their connections closed, the service is back to the
// goroutines it had before and its live heap has not grown.
func TestNoLeak(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	base, _, stop := startService(t, map[string]string{
		"DATABASE_URL": dbURL, "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "warn",
	})
	defer stop()
	var bad atomic.Int64
	send := func(prefix string, calls int) {
		tr := &http.Transport{MaxIdleConnsPerHost: 8}
		client := &http.Client{Transport: tr}
		defer tr.CloseIdleConnections()
		sem := make(chan struct{}, 8)
		for i := range calls {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				for _, ev := range []string{"newCall", "answer", "hangup"} {
					body := fmt.Sprintf("event=%s&direction=in&from=491701&to=4930&callId=%s-%d&cause=normalClearing", ev, prefix, i)
					resp, err := client.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(body))
					if err != nil {
						t.Error(err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						if bad.Add(1) <= 3 {
							t.Errorf("%s of %s-%d: %d %s", ev, prefix, i, resp.StatusCode, b)
						}
						return
					}
				}
			}()
		}
		for range cap(sem) {
			sem <- struct{}{}
		}
	}
	settle := func() (int, uint64) {
		var goroutines int
		var ms runtime.MemStats
		for range 20 { // idle connections and timers wind down
			time.Sleep(100 * time.Millisecond)
			runtime.GC()
			goroutines = runtime.NumGoroutine()
		}
		runtime.ReadMemStats(&ms)
		return goroutines, ms.HeapAlloc
	}
	send("warmup", 200)
	g0, h0 := settle()
	send("load", 1500)
	g1, h1 := settle()
	t.Logf("goroutines %d -> %d, live heap %.1f -> %.1f MiB", g0, g1, float64(h0)/(1<<20), float64(h1)/(1<<20))
	if g1 > g0+5 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if h1 > h0+8<<20 {
		t.Errorf("live heap grew from %d to %d bytes", h0, h1)
	}
	// Every webhook was answered 200 and every call of the load ended in
	// the table: a service that refused them would leak nothing too.
	if n := bad.Load(); n > 0 {
		t.Errorf("%d webhooks not answered 200", n)
	}
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ended int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM call_state
		WHERE source = 'sipgate' AND call_key LIKE 'load-%' AND state = 'ended'`).Scan(&ended); err != nil {
		t.Fatal(err)
	}
	if ended != 1500 {
		t.Errorf("%d of the load's 1500 calls ended in the table", ended)
	}
}
