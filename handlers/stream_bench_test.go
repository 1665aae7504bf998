package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// Settings of BenchmarkStreamFanout, from the environment.
var (
	benchClients = envInt("STREAM_BENCH_CLIENTS", 1000)
	benchChanges = envInt("STREAM_BENCH_CHANGES", 1000)
	benchWriters = envInt("STREAM_BENCH_WRITERS", 16)
	benchTypes   = os.Getenv("STREAM_BENCH_TYPES") // the clients' ?types=; "" for every event
)

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// BenchmarkStreamFanout: STREAM_BENCH_CLIENTS (1000) stream clients, then a
// burst of STREAM_BENCH_CHANGES (1000) calls written by
// STREAM_BENCH_WRITERS (16) concurrent writers. The clients ask for
// STREAM_BENCH_TYPES (?types=; every event when empty: a call's change is
// then its "call" event and its typed one, about twice the bytes of the
// board's types=call,lamp). The service runs in its
// own process (this test binary, see TestStreamBenchServer) so that its
// memory can be measured apart from the clients'. Reported, over every
// client and change: delivery latency from the write's commit (as
// PostgreSQL recorded it: see storetest.CommitTimes) to a client's receipt
// (p50, p99, max), the same from the start of the write (Apply called;
// includes waiting for the database), the same for the first client to
// get each change (the time to reach the stream; the rest is the fan-out),
// the service's peak resident memory, and the bytes each client read per
// change.
//
//	go test -run '^$' -bench StreamFanout -benchtime 1x ./handlers/
func BenchmarkStreamFanout(b *testing.B) {
	ctx := context.Background()
	db := storetest.NewDatabase(b)
	srv := exec.Command(os.Args[0], "-test.run=^TestStreamBenchServer$", "-test.v")
	srv.Env = append(os.Environ(), "STREAM_BENCH_SERVER_DB="+db)
	stdin, _ := srv.StdinPipe()
	stdout, _ := srv.StdoutPipe()
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close()
		srv.Wait() //nolint:errcheck // ends when stdin closes
	}()
	var url string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "STREAM_BENCH_URL="); ok {
			url = u
			break
		}
	}
	go io.Copy(io.Discard, stdout) //nolint:errcheck // drain
	if url == "" {
		b.Fatal("server did not start")
	}
	st, err := store.Open(ctx, db, store.Options{MaxConns: int32(benchWriters), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()

	tr := &http.Transport{MaxIdleConnsPerHost: benchClients, DialContext: (&net.Dialer{}).DialContext}
	client := &http.Client{Transport: tr}
	for i := 0; b.Loop(); i++ {
		cctx, cancel := context.WithCancel(ctx)
		var (
			mu   sync.Mutex
			got  []receipt
			read int64 // bytes read by every client after its snapshot
			wg   sync.WaitGroup
		)
		began := make([]time.Time, benchChanges) // Apply called
		ready := make(chan struct{}, benchClients)
		prefix := fmt.Sprintf("b%d-", i)
		for range benchClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(cctx, http.MethodGet, url+"/api/stream?types="+benchTypes, nil)
				res, err := client.Do(req)
				if err != nil {
					ready <- struct{}{}
					return
				}
				defer res.Body.Close()
				my := make([]receipt, 0, benchChanges)
				var n int64
				defer func() {
					mu.Lock()
					got = append(got, my...)
					read += n
					mu.Unlock()
				}()
				r := bufio.NewReaderSize(res.Body, 64<<10)
				first := true
				keyTag := []byte(`"key":"` + prefix)
				for len(my) < benchChanges {
					line, err := r.ReadSlice('\n')
					if err != nil {
						return
					}
					if !first {
						n += int64(len(line))
					}
					if first && bytes.HasPrefix(line, []byte("event: snapshot")) {
						first = false
						ready <- struct{}{}
						continue
					}
					// data: {"id":…,"key":"b0-17",…}
					j := bytes.Index(line, keyTag)
					if j < 0 || !bytes.HasPrefix(line, []byte(`data: {"id"`)) {
						continue
					}
					now := time.Now()
					rest := line[j+len(keyTag):]
					k, err := strconv.Atoi(string(rest[:bytes.IndexByte(rest, '"')]))
					if err == nil {
						my = append(my, receipt{k, now})
					}
				}
			}()
		}
		for range benchClients {
			<-ready
		}
		start := time.Now()
		g, gctx := errgroup.WithContext(ctx)
		for w := range benchWriters {
			g.Go(func() error {
				for k := w; k < benchChanges; k += benchWriters {
					key := fmt.Sprintf("%s%d", prefix, k)
					began[k] = time.Now()
					_, err := st.Apply(gctx, callstate.Event{
						Source: callstate.SourceSipgate, Type: "newCall", DedupKey: key, ReceivedAt: began[k],
						Payload: []byte("event=newCall"),
						Update: callstate.Update{Key: key, CallID: key, Direction: callstate.DirectionIn,
							From: "491701234", To: "4930555", Extension: fmt.Sprintf("w%d", k%50), State: callstate.StateRinging},
					})
					if err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		written := time.Since(start)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			b.Error("clients did not get every change within 60s")
		}
		cancel()
		<-done
		delivered := time.Since(start)
		if len(got) < benchClients*benchChanges {
			b.Errorf("%d of %d deliveries", len(got), benchClients*benchChanges)
		}
		keys := make([]string, benchChanges)
		for k := range keys {
			keys[k] = fmt.Sprintf("%s%d", prefix, k)
		}
		commits := storetest.CommitTimes(b, db, keys)
		if len(commits) != benchChanges {
			b.Fatalf("commit times of %d of %d writes", len(commits), benchChanges)
		}
		fromWrite := make([]time.Duration, len(got))
		fromCommit := make([]time.Duration, len(got))
		early := 0
		for i, r := range got {
			fromWrite[i] = r.at.Sub(began[r.k])
			fromCommit[i] = r.at.Sub(commits[keys[r.k]])
			if fromCommit[i] < 0 {
				early++
			}
		}
		if early > 0 {
			b.Errorf("%d receipts stamped before the commit of their write: the clocks disagree", early)
		}
		pct := func(ds []time.Duration, p float64) float64 {
			return float64(ds[min(len(ds)-1, int(float64(len(ds))*p))].Microseconds()) / 1000
		}
		// The first client to get each change: how long the change took to
		// reach the stream, the rest of its latency being the fan-out.
		firstAt := make([]time.Duration, benchChanges)
		for i, r := range got {
			if firstAt[r.k] == 0 || fromCommit[i] < firstAt[r.k] {
				firstAt[r.k] = fromCommit[i]
			}
		}
		slices.Sort(fromWrite)
		slices.Sort(fromCommit)
		slices.Sort(firstAt)
		b.ReportMetric(pct(fromCommit, 0.50), "p50-ms")
		b.ReportMetric(pct(fromCommit, 0.99), "p99-ms")
		b.ReportMetric(pct(fromCommit, 1), "max-ms")
		b.ReportMetric(pct(firstAt, 0.50), "first-client-p50-ms")
		b.ReportMetric(pct(firstAt, 0.99), "first-client-p99-ms")
		b.ReportMetric(pct(fromWrite, 0.50), "p50-from-write-start-ms")
		b.ReportMetric(pct(fromWrite, 0.99), "p99-from-write-start-ms")
		b.ReportMetric(written.Seconds()*1000, "burst-ms")
		b.ReportMetric(delivered.Seconds()*1000, "all-delivered-ms")
		b.ReportMetric(float64(procStatus(b, srv.Process.Pid, "VmHWM"))/1024, "server-peak-RSS-MiB")
		b.ReportMetric(float64(read)/float64(benchClients*benchChanges), "bytes-per-change-per-client")
	}
}

// receipt is one client's receipt of change k.
type receipt struct {
	k  int
	at time.Time
}

// procStatus returns a /proc/<pid>/status value in KiB.
func procStatus(tb testing.TB, pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// TestStreamBenchServer is BenchmarkStreamFanout's service process: with
// STREAM_BENCH_SERVER_DB set, it serves the API and stream on a loopback
// port, prints it, and stops when stdin closes. Otherwise it does nothing.
func TestStreamBenchServer(t *testing.T) {
	db := os.Getenv("STREAM_BENCH_SERVER_DB")
	if db == "" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	in := newInstance(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{MaxClients: 100000, Heartbeat: time.Minute})
	fmt.Printf("STREAM_BENCH_URL=%s\n", in.url)
	go func() {
		io.Copy(io.Discard, os.Stdin) //nolint:errcheck // until closed
		stop()
	}()
	<-ctx.Done()
}
