package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate/store/storetest"
)

// BenchmarkWakeNewCall sends newCalls at a steady rate (1,000 a second;
// WAKE_BENCH_RATE to change) to a running service (in process, its
// private PostgreSQL), each a call of its own, b.N in each phase, in
// WAKE_BENCH_ROUNDS (3) rounds of three phases:
//
//   - anchor: no device is registered: the webhook path as before waking
//     phones existed (the in-memory check finds an empty set);
//   - others: a device is registered for w0, every call is for other
//     users: the check finds a set without them, nothing is pushed;
//   - tenth: a tenth of the calls are for a user with a device (the push
//     service stand-in in Node; the benchmark plays the device and reports
//     ready 100 ms after each push arrives), the rest for users without.
//
// Rounds alternate them, so that the machine's changing load falls on
// all. It reports the p50 and p99 answer time, from each call's scheduled
// time, of the calls for users without devices in each phase (all rounds
// together), and of the held answers. The tenth's calls without devices
// share the machine with the pushes, the Node stand-in's decryption and
// the device's readies, which in production run elsewhere.
//
//	go test -run '^$' -bench WakeNewCall -benchtime 5000x ./cmd/callstate/
func BenchmarkWakeNewCall(b *testing.B) {
	rate, rounds := 1000.0, 3
	if v, err := strconv.ParseFloat(os.Getenv("WAKE_BENCH_RATE"), 64); err == nil && v > 0 {
		rate = v
	}
	if v, err := strconv.Atoi(os.Getenv("WAKE_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	ps := startPushService(b)
	dbURL := storetest.NewDatabase(b)
	base, _, stop := startService(b, map[string]string{"DATABASE_URL": dbURL, "SIPGATE_VERIFY_SIGNATURE": "false",
		"LOG_LEVEL": "error", "API_TOKEN": wakeTestToken, "WAKE_ALLOW_HTTP": "true", "WAKE_WAIT": "2s"})
	defer stop()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code, body := apiDo(b, http.MethodGet, base+"/api/devices/vapid-key", "", nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("vapid-key: %d %s", code, body)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}

	// run sends b.N newCalls at 1,000/s, every tenth for w0 when withDevice,
	// and returns the answer times (ms, from each call's scheduled time) of
	// those for users without devices and of w0's.
	run := func(tag string, withDevice bool) (plain, held []float64) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := time.Now()
		for i := range b.N {
			at := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
			time.Sleep(time.Until(at))
			user := fmt.Sprintf("u%d", i%50)
			device := withDevice && i%10 == 0
			if device {
				user = "w0"
			}
			wg.Go(func() {
				f := url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {"4915112345678"}, "to": {"4921112345678"},
					"callId": {fmt.Sprintf("%s-%d", tag, i)}, "userId[]": {user}, "user[]": {"Name"}}
				res, err := client.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(f.Encode()))
				ms := float64(time.Since(at).Microseconds()) / 1000
				if err != nil {
					b.Error(err)
					return
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					b.Errorf("newCall: %s", res.Status)
				}
				mu.Lock()
				if device {
					held = append(held, ms)
				} else {
					plain = append(plain, ms)
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		return plain, held
	}

	// The device: 100 ms after each push arrives it reports ready.
	var readies sync.WaitGroup
	device := func(dev registered) func() {
		done := make(chan struct{})
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			seen := 0
			for {
				select {
				case <-done:
					return
				case <-ps.note:
				case <-time.After(20 * time.Millisecond):
				}
				rs := ps.receipts(dev.Sub)
				for _, r := range rs[seen:] {
					readies.Go(func() {
						time.Sleep(100*time.Millisecond - time.Since(time.UnixMilli(r.At)))
						apiDo(b, http.MethodPost, base+r.Payload.Ready, dev.Secret, nil)
					})
				}
				seen = len(rs)
			}
		}()
		return func() { close(done); <-stopped }
	}
	var anchor, others, tenth, held []float64
	pushes := 0
	b.ResetTimer()
	for r := range rounds {
		plain, _ := run(fmt.Sprintf("anchor%d", r), false)
		anchor = append(anchor, plain...)
		b.StopTimer()
		dev := register(b, base, wakeTestToken, map[string]any{"user": "w0"}, ps.subscribe(b, ""))
		time.Sleep(300 * time.Millisecond) // the set of users with devices reloads
		b.StartTimer()
		plain, _ = run(fmt.Sprintf("others%d", r), false)
		others = append(others, plain...)
		b.StopTimer()
		stopDevice := device(dev)
		b.StartTimer()
		plain, h := run(fmt.Sprintf("tenth%d", r), true)
		b.StopTimer()
		stopDevice()
		readies.Wait()
		tenth, held = append(tenth, plain...), append(held, h...)
		pushes += len(ps.receipts(dev.Sub))
		if code, body := apiDo(b, http.MethodDelete, base+"/api/devices/"+dev.ID, wakeTestToken, nil); code != http.StatusNoContent {
			b.Fatalf("delete device: %d %s", code, body)
		}
		time.Sleep(300 * time.Millisecond)
		b.StartTimer()
	}
	b.StopTimer()

	pct := func(ms []float64, p float64) float64 {
		if len(ms) == 0 {
			return 0
		}
		s := slices.Clone(ms)
		slices.Sort(s)
		return s[min(int(p*float64(len(s))), len(s)-1)]
	}
	b.ReportMetric(pct(anchor, .5), "anchor_p50_ms")
	b.ReportMetric(pct(anchor, .99), "anchor_p99_ms")
	b.ReportMetric(pct(others, .5), "others_p50_ms")
	b.ReportMetric(pct(others, .99), "others_p99_ms")
	b.ReportMetric(pct(tenth, .5), "nodev_p50_ms")
	b.ReportMetric(pct(tenth, .99), "nodev_p99_ms")
	b.ReportMetric(pct(held, .5), "held_p50_ms")
	b.ReportMetric(pct(held, .99), "held_p99_ms")
	b.Logf("%.0f newCalls/s, %d rounds of %d a phase: %d anchor, %d others, %d without devices beside %d held; %d pushes",
		rate, rounds, b.N, len(anchor), len(others), len(tenth), len(held), pushes)
}
