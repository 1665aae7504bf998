package handlers_test

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/callstate/callstate/handlers"
)

// BenchmarkWebhook measures the whole webhook path in process: Echo, the
// middleware, form parsing, validation, (signed) the signature check with a
// 4096-bit key like sipgate's, and the real store's write in PostgreSQL
// (storetest's cluster: fsync off, so this is the service's cost without the
// disk's flush; scripts/bench-webhooks.sh measures durable writes over
// HTTP). 48 requests run at once, as in the script; every event is a new
// one (newCall, answer, hangup of one call after another), each round on a
// fresh database.
//
//	go test -run '^$' -bench Webhook -benchtime 20000x ./handlers/
func BenchmarkWebhook(b *testing.B) {
	for _, signed := range []bool{false, true} {
		name := "unsigned"
		if signed {
			name = "signed4096"
		}
		b.Run(name, func(b *testing.B) {
			prev := slog.Default()
			slog.SetDefault(slog.New(slog.DiscardHandler)) // the store's migration lines, each round
			b.Cleanup(func() { slog.SetDefault(prev) })
			var opts handlers.SipgateOptions
			if signed {
				opts.Verifier = verifierFor(b, benchKey())
			}
			e := newEnv(b, opts)
			events := benchEvents(b.N, signed)
			b.SetParallelism((48 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			var next atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ev := events[next.Add(1)-1]
					h := http.Header{}
					if ev.sig != "" {
						h.Set("X-Sipgate-Signature", ev.sig)
					}
					if rec := e.post(ev.body, h); rec.Code != http.StatusOK {
						b.Errorf("%s: status %d: %s", ev.body, rec.Code, rec.Body)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

type benchEvent struct{ body, sig string }

// benchKey is a 4096-bit key, as sipgate's; signing with it takes ~5 ms, so
// signed events are made once and kept for every round.
var benchKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		panic(err)
	}
	return k
})

var (
	benchMu     sync.Mutex
	benchSigned []benchEvent
)

// benchEvents returns n events: newCall, answer and hangup of call 0, then
// of call 1, and so on, with sipgate's field names. Signed ones are kept
// and extended as rounds grow; a round's fresh database makes them new.
func benchEvents(n int, signed bool) []benchEvent {
	if !signed {
		evs := make([]benchEvent, n)
		for i := range evs {
			evs[i].body = benchBody(i)
		}
		return evs
	}
	benchMu.Lock()
	defer benchMu.Unlock()
	if have := len(benchSigned); have < n {
		benchSigned = append(benchSigned, make([]benchEvent, n-have)...)
		var next atomic.Int64
		next.Store(int64(have))
		var wg sync.WaitGroup
		for range runtime.NumCPU() {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
					body := benchBody(i)
					benchSigned[i] = benchEvent{body: body, sig: signWith(benchKey(), body)}
				}
			})
		}
		wg.Wait()
	}
	return benchSigned[:n]
}

func benchBody(i int) string {
	id := fmt.Sprintf("bench-%d", i/3)
	switch i % 3 {
	case 0:
		return "event=newCall&direction=in&from=4917012345678&to=4930123456789&callId=" + id +
			"&origCallId=" + id + "&user%5B%5D=Alice&userId%5B%5D=w0&fullUserId%5B%5D=1234567w0&xcid=x" + id
	case 1:
		return "event=answer&direction=in&from=4917012345678&to=4930123456789&callId=" + id +
			"&user=Alice&userId=w0&fullUserId=1234567w0&answeringNumber=4930123456789"
	default:
		return "event=hangup&direction=in&from=4917012345678&to=4930123456789&callId=" + id +
			"&cause=normalClearing&answeringNumber=4930123456789"
	}
}
