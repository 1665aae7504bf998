package main

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate/store/storetest"
)

// TestNoLeak is the short form of scripts/soak.sh: after a few thousand
// webhooks, with their connections closed, the service is back to the
// goroutines it had before and its live heap has not grown.
func TestNoLeak(t *testing.T) {
	base, _, stop := startService(t, map[string]string{
		"DATABASE_URL": storetest.NewDatabase(t), "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "warn",
	})
	defer stop()
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
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
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
}
