package watch

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// BenchmarkNotifyStorm holds 1,000 subscriptions against one sipgo notifier
// and sends b.N NOTIFYs from 64 concurrent senders (each extension's
// NOTIFYs in version order; at a fixed rate, the senders' ticks are spread
// evenly over the period), each with a full document whose one dialog
// rings or ends. It reports the heap the subscriptions hold, NOTIFYs/s
// applied to PostgreSQL and the NOTIFY-to-row latency: the subscriber
// answers 200 only after the rows are committed, so the time from sending a
// NOTIFY to its 200 bounds it from above.
//
//	go test ./sip/watch -run '^$' -bench NotifyStorm -benchtime 20000x -count 3
func BenchmarkNotifyStorm(b *testing.B) {
	b.Run("max", func(b *testing.B) { notifyStorm(b, 0) })
	b.Run("2000perSec", func(b *testing.B) { notifyStorm(b, 2000) })
}

// notifyStorm runs the benchmark; rate > 0 paces the senders to that many
// NOTIFYs per second in total, rate 0 sends as fast as answers come.
func notifyStorm(b *testing.B, rate int) {
	const exts, senders = 1000, 64
	n := startNotifier(b, func(*sipmsg.Request) (int, int) { return 0, 3600 })
	st, err := store.Open(context.Background(), storetest.NewDatabase(b), store.Options{MaxConns: 16, Logger: testpbx.Logger(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	names := make([]string, exts)
	for i := range names {
		names[i] = strconv.Itoa(1000 + i)
	}
	if err := st.AddExtensions(context.Background(), names); err != nil {
		b.Fatal(err)
	}

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	s := startSubscriber(b, Config{PBXAddr: n.addr, Domain: "pbx.test", Store: st, Expires: time.Hour, ReloadInterval: time.Hour})
	testpbx.WaitFor(b, 2*time.Minute, func() string {
		if got := s.Stats().Active; got < exts {
			return fmt.Sprintf("%d of %d subscriptions active", got, exts)
		}
		return ""
	})
	up := time.Since(start)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / (1 << 20)

	subs := make([]*fakeSub, exts)
	for i, name := range names {
		subs[i] = n.sub(name)
	}
	lat := make([][]time.Duration, senders)
	var wg sync.WaitGroup
	b.ResetTimer()
	t0 := time.Now()
	for w := range senders {
		wg.Go(func() {
			version := make(map[int]int)
			var tick *time.Ticker
			if rate > 0 {
				// Each sender ticks at rate/senders, its phase shifted by
				// its share of the period, so that the NOTIFYs arrive
				// evenly at rate rather than in bursts of one per sender.
				period := time.Duration(senders) * time.Second / time.Duration(rate)
				time.Sleep(time.Duration(w) * period / senders)
				tick = time.NewTicker(period)
				defer tick.Stop()
			}
			for i := w; i < b.N; i += senders {
				if tick != nil {
					<-tick.C
				}
				e := w + senders*((i/senders)%(exts/senders)) // this sender's extensions only
				v := version[e] + 1
				version[e] = v
				state := "early"
				if v%2 == 0 {
					state = "terminated"
				}
				body := dialogDoc(names[e], v, "d"+strconv.Itoa((v+1)/2), state)
				sent := time.Now()
				code, err := n.notify(context.Background(), subs[e], "active;expires=3600", body)
				if err != nil || code != 200 {
					b.Errorf("NOTIFY %s v%d: %d %v", names[e], v, code, err)
					return
				}
				lat[w] = append(lat[w], time.Since(sent))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(float64(s.Stats().Active), "subscriptions")
	b.ReportMetric(heap, "heap-MiB")
	b.ReportMetric(up.Seconds(), "subscribe-all-s")
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/elapsed.Seconds(), "notifies/s")
		b.ReportMetric(float64(all[len(all)*50/100].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
}
