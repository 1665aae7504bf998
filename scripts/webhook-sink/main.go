// Command webhook-sink receives callstate's webhooks for
// scripts/bench-events.sh: it checks each signature, answers 204, and
// keeps, for the events of calls, the lag from the event's time (the
// moment callstate received the webhook that made it, within a
// millisecond or two of its commit) to the delivery. GET /stats returns
// {requests, messages, bad, first, last, p50_ms, p99_ms, max_ms} and
// resets nothing.
package main

import (
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/callstate/callstate/webhook"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18490", "listen address")
	secret := flag.String("secret", "", "the endpoint's whsec_ secret")
	flag.Parse()
	key, err := webhook.ParseSecret(*secret)
	if err != nil {
		log.Fatal(err)
	}
	var (
		mu          sync.Mutex
		requests    int
		bad         int
		seen        = map[string]bool{}
		lags        []float64
		first, last time.Time
	)
	http.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		body, _ := io.ReadAll(r.Body)
		id := r.Header.Get("webhook-id")
		ok := webhook.Verify(key, id, r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body) == nil
		var m struct {
			Type      string    `json:"type"`
			Timestamp time.Time `json:"timestamp"`
		}
		_ = json.Unmarshal(body, &m)
		mu.Lock()
		requests++
		if !ok {
			bad++
		} else if !seen[id] {
			seen[id] = true
			if first.IsZero() {
				first = now
			}
			last = now
			switch m.Type {
			case "call.ringing", "call.answered", "call.ended":
				lags = append(lags, float64(now.Sub(m.Timestamp).Microseconds())/1000)
			}
		}
		mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	http.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		ls := slices.Clone(lags)
		out := map[string]any{"requests": requests, "messages": len(seen), "bad": bad, "first": first, "last": last}
		mu.Unlock()
		slices.Sort(ls)
		q := func(p float64) float64 {
			if len(ls) == 0 {
				return 0
			}
			return ls[min(len(ls)-1, int(p*float64(len(ls))))]
		}
		out["p50_ms"], out["p99_ms"] = q(0.50), q(0.99)
		if len(ls) > 0 {
			out["max_ms"] = ls[len(ls)-1]
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}
