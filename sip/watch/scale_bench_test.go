package watch

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// BenchmarkScale watches SCALE_EXTENSIONS extensions (default 10,000)
// against the test Kamailio with an expiry of SCALE_EXPIRES (default 60s)
// for SCALE_RUN (default 150s, two refresh cycles and a half) after all
// are up, then reports the time until all were up, the peak RSS of the
// test process, the heap after GC, goroutines, SUBSCRIBEs per second
// (mean and the busiest second, after all were up), database commits per
// second (pg_stat_database.xact_commit, mean and busiest second, over the
// whole run) and the share of lamps right (idle with an active
// subscription) at the end, with the peak heap in use and goroutine stacks
// (runtime.MemStats, sampled every second) and the memory the Go runtime
// took from the system at the end. Every second's numbers go to the benchmark's
// log (all of it with -v). With SCALE_PROFILE=dir, heap and goroutine profiles taken at the end
// are written there (heap.pprof, goroutine.pprof); with SCALE_LOG=file the
// subscriber's warnings go there, and Kamailio's log to file.kamailio.
//
//	go test ./sip/watch -run '^$' -bench Scale -benchtime 1x -timeout 30m -v
func BenchmarkScale(b *testing.B) {
	n := testpbx.EnvInt(b, "SCALE_EXTENSIONS", 10000)
	expires := testpbx.EnvDuration(b, "SCALE_EXPIRES", time.Minute)
	runFor := testpbx.EnvDuration(b, "SCALE_RUN", 150*time.Second)
	ctx := context.Background()
	// The subscriber's own log is left out: at debug level (-v) it would
	// cost more than what is measured.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Presence keeps 10,000 subscriptions in shared memory, and tm every
	// transaction not yet released: with 256 MiB, on a machine loaded by
	// other work (the PBX slow to finish transactions), Kamailio ran out of
	// it and lost subscriptions.
	k := testpbx.StartKamailioLarge(b, 1024)
	sipLog := quiet
	if name := os.Getenv("SCALE_LOG"); name != "" {
		f, err := os.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		sipLog = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelWarn}))
		defer func() { _ = os.WriteFile(name+".kamailio", []byte(k.Log()), 0o644) }()
	}
	dsn := storetest.NewDatabase(b)
	st, err := store.Open(ctx, dsn, store.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	stats, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close(ctx)
	commits := func() int64 {
		var c int64
		if err := stats.QueryRow(ctx, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`).Scan(&c); err != nil {
			b.Fatal(err)
		}
		return c
	}
	names := make([]string, n)
	for i := range names {
		names[i] = strconv.Itoa(100000 + i)
	}
	if err := st.AddExtensions(ctx, names); err != nil {
		b.Fatal(err)
	}

	s, err := New(Config{PBXAddr: k.Addr(), Domain: k.Domain(), ListenAddr: "127.0.0.1:0", Store: st,
		Expires: expires, ReloadInterval: 10 * time.Second, Logger: sipLog})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- s.Run(runCtx) }()

	var (
		up                             time.Duration
		peakRSS, peakGoroutines        int64
		upSubscribes, lastSubscribes   uint64
		busiestSubscribe, busiestCommt int64
		peakHeap, peakStack            uint64
		firstCommits                   = commits()
		lastCommits                    = firstCommits
	)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	limit := time.After(runFor + 10*time.Minute) // bounds the wait for all to be up
	var end <-chan time.Time
sample:
	for {
		select {
		case <-tick.C:
		case <-end:
			break sample
		case <-limit:
			b.Errorf("not all %d subscriptions up within 10 minutes", n)
			break sample
		}
		sst := s.Stats()
		c := commits()
		rss, _ := testpbx.RSS()
		g := int64(runtime.NumGoroutine())
		peakRSS, peakGoroutines = max(peakRSS, rss), max(peakGoroutines, g)
		dSub, dCommit := int64(sst.Subscribes-lastSubscribes), c-lastCommits
		lastSubscribes, lastCommits = sst.Subscribes, c
		busiestCommt = max(busiestCommt, dCommit)
		if up > 0 {
			busiestSubscribe = max(busiestSubscribe, dSub)
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peakHeap, peakStack = max(peakHeap, m.HeapInuse), max(peakStack, m.StackInuse)
		b.Logf("t=%3.0fs active=%d subscribes/s=%d commits/s=%d rss=%.0fMiB heap-inuse=%.0fMiB stacks=%.0fMiB goroutines=%d",
			time.Since(start).Seconds(), sst.Active, dSub, dCommit, float64(rss)/(1<<20),
			float64(m.HeapInuse)/(1<<20), float64(m.StackInuse)/(1<<20), g)
		if up == 0 && sst.Active >= n {
			up = time.Since(start)
			upSubscribes = sst.Subscribes
			end = time.After(runFor)
		}
	}
	elapsed := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	goroutines := runtime.NumGoroutine()
	if dir := os.Getenv("SCALE_PROFILE"); dir != "" {
		for _, name := range []string{"heap", "goroutine"} {
			f, err := os.Create(filepath.Join(dir, name+".pprof"))
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	}
	time.Sleep(time.Second) // the last state writes land
	ls, err := st.Lamps(ctx)
	if err != nil {
		b.Fatal(err)
	}
	right := 0
	for _, l := range ls {
		if l.Lamp == callstate.LampIdle && l.Subscription == callstate.SubscriptionActive {
			right++
		}
	}
	b.StopTimer()
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		b.Error("Run did not return within 3 minutes of cancel")
	}

	b.ReportMetric(float64(n), "extensions")
	b.ReportMetric(up.Seconds(), "all-up-s")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-inuse-MiB")
	b.ReportMetric(float64(peakStack)/(1<<20), "peak-stacks-MiB")
	b.ReportMetric(float64(ms.Sys)/(1<<20), "go-sys-MiB")
	b.ReportMetric(float64(goroutines), "goroutines")
	b.ReportMetric(float64(peakGoroutines), "peak-goroutines")
	if up > 0 {
		after := elapsed - up
		b.ReportMetric(float64(lastSubscribes-upSubscribes)/after.Seconds(), "subscribes/s")
		b.ReportMetric(float64(busiestSubscribe), "busiest-subscribes/s")
	}
	b.ReportMetric(float64(lastCommits-firstCommits)/elapsed.Seconds(), "commits/s")
	b.ReportMetric(float64(busiestCommt), "busiest-commits/s")
	b.ReportMetric(100*float64(right)/float64(n), "lamps-right-%")
}
