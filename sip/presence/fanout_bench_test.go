package presence

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/sip"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// BenchmarkAgentFanout measures the presence agent's fan-out: AGENT_LAMPS
// sipgate users (default 1,000), each watched by AGENT_KEYS subscriptions
// (default 10: 1,000 phones with 10 BLF keys each, 10,000 subscriptions),
// held by AGENT_PHONES UDP sockets (default 100), while AGENT_RATE lamp
// changes a second (default 100) are written to PostgreSQL for AGENT_RUN
// (default 20s). Each change starts a call to a random user or ends that
// user's call. It reports the NOTIFYs received per second (every NOTIFY
// from the first write until the last NOTIFY came, over that time), the
// latency from a write's commit (as PostgreSQL recorded it: see
// storetest.CommitTimes) to each NOTIFY that shows it (p50, p99, max),
// the heap after GC with every subscription up and the test process's
// peak RSS (both include the simulated phones), and as the anchor, in the
// same run, the same load with one subscription per lamp.
//
//	go test ./sip/presence -run '^$' -bench AgentFanout -benchtime 1x -timeout 20m -v
func BenchmarkAgentFanout(b *testing.B) {
	env := func(name string, def int) int { return testpbx.EnvInt(b, name, def) }
	lamps, keys, phones, rate := env("AGENT_LAMPS", 1000), env("AGENT_KEYS", 10), env("AGENT_PHONES", 100), env("AGENT_RATE", 100)
	runFor := testpbx.EnvDuration(b, "AGENT_RUN", 20*time.Second)
	for _, k := range []int{1, keys} {
		b.Run(fmt.Sprintf("subscriptions=%d", lamps*k), func(b *testing.B) {
			for range b.N {
				agentFanout(b, lamps, k, phones, rate, runFor)
			}
		})
	}
}

// benchPhone is a UDP socket holding many subscriptions: it answers every
// NOTIFY 200 and hands it on.
type benchPhone struct {
	conn *net.UDPConn
	to   *net.UDPAddr
	got  func(at time.Time, m *sipmsg.Request)
	res  sync.Map // Call-ID -> chan int (final status of SUBSCRIBE)

	strays atomic.Int64 // NOTIFYs from another address than the agent's
}

func (p *benchPhone) read() {
	buf := make([]byte, 65535)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		at := time.Now()
		msg, err := sipmsg.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			continue
		}
		switch m := msg.(type) {
		case *sipmsg.Response:
			if ch, ok := p.res.Load(string(*m.CallID())); ok && m.StatusCode >= 200 {
				select {
				case ch.(chan int) <- int(m.StatusCode):
				default:
				}
			}
		case *sipmsg.Request:
			if from.String() != p.to.String() {
				p.strays.Add(1)
			}
			res := sipmsg.NewResponseFromRequest(m, 200, "OK", nil)
			_, _ = p.conn.WriteToUDP([]byte(res.String()), from)
			p.got(at, m)
		}
	}
}

func (p *benchPhone) subscribe(user, callID string) int {
	ch := make(chan int, 1)
	p.res.Store(callID, ch)
	defer p.res.Delete(callID)
	local := p.conn.LocalAddr().String()
	msg := fmt.Sprintf("SUBSCRIBE sip:%s@callstate.test SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:phone@callstate.test>;tag=%s\r\nTo: <sip:%s@callstate.test>\r\n"+
		"Call-ID: %s\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:phone@%s>\r\n"+
		"Event: dialog\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
		user, local, sipmsg.GenerateTagN(10), sipmsg.GenerateTagN(8), user, callID, local)
	for range 3 {
		if _, err := p.conn.WriteToUDP([]byte(msg), p.to); err != nil {
			return 0
		}
		select {
		case code := <-ch:
			return code
		case <-time.After(2 * time.Second):
		}
	}
	return 0
}

func agentFanout(b *testing.B, lamps, keys, phones, rate int, runFor time.Duration) {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := storetest.NewDatabase(b)
	st, err := store.Open(ctx, db, store.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	// The users, known from an earlier call each.
	for i := range lamps {
		u := "u" + strconv.Itoa(i)
		benchApply(b, st, "seed-"+u, callstate.Update{Extension: u, UserIDs: []string{u}, State: callstate.StateEnded})
	}
	a := startAgent(b, st, Config{AllowAnonymous: true, Logger: quiet, RatePerSecond: 1e6, Burst: 1e6,
		MaxPerSubscriber: lamps*keys + 1, MaxSubscriptions: lamps*keys + 1, MaxExpires: time.Hour})

	var (
		mu        sync.Mutex
		written   = map[string]string{} // dedup key of a write -> "callID state" its NOTIFYs show
		lat       []time.Duration
		recvd     int64
		lastAt    time.Time
		counted   atomic.Bool
		unmatched []string
		seen      []seenAt
	)
	got := func(at time.Time, m *sipmsg.Request) {
		if !counted.Load() {
			return
		}
		body := string(m.Body())
		mu.Lock()
		defer mu.Unlock()
		recvd++
		lastAt = latest(lastAt, at)
		matched := false
		for _, d := range strings.Split(body, "<dialog ")[1:] {
			cid := between(d, `call-id="`, `"`)
			if cid == "" {
				continue
			}
			seen = append(seen, seenAt{cid + " " + between(d, "<state>", "</state>"), at})
			matched = true
		}
		if !matched && len(unmatched) < 3 {
			unmatched = append(unmatched, body)
		}
	}
	ps := make([]*benchPhone, phones)
	to, _ := net.ResolveUDPAddr("udp", a.Addr())
	for i := range ps {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		_ = conn.SetReadBuffer(4 << 20)
		defer conn.Close()
		ps[i] = &benchPhone{conn: conn, to: to, got: got}
		go ps[i].read()
	}
	began := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 64)
	for k := range keys {
		for l := range lamps {
			n := k*lamps + l
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if ps[n%phones].subscribe("u"+strconv.Itoa(l), "s"+strconv.Itoa(n)) != 200 {
					failed.Add(1)
				}
			})
		}
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d SUBSCRIBEs failed", f, lamps*keys)
	}
	upIn := time.Since(began)
	time.Sleep(time.Second) // the first NOTIFYs
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap := ms.HeapAlloc
	if n := a.Stats().Subscriptions; n != lamps*keys {
		b.Fatalf("%d subscriptions, want %d", n, lamps*keys)
	}

	counted.Store(true)
	// Changes are written concurrently, as webhooks arrive, at most one at
	// a time per user so that a user's call rings before it ends.
	var (
		umu    sync.Mutex
		active = map[int]string{} // user -> its ringing call
		busy   = map[int]bool{}
		writes sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	changes := 0
	for time.Since(start) < runFor {
		<-tick.C
		u := rand.IntN(lamps)
		umu.Lock()
		if busy[u] {
			umu.Unlock()
			continue
		}
		busy[u] = true
		key, state := active[u], sip.DialogTerminated
		if key == "" {
			key, state = fmt.Sprintf("b%d", changes), sip.DialogEarly
			active[u] = key
		} else {
			delete(active, u)
		}
		umu.Unlock()
		changes++
		writes.Go(func() {
			var dedup string
			if state == sip.DialogEarly {
				dedup = benchApply(b, st, key, callstate.Update{Direction: callstate.DirectionIn, From: "4917012345",
					UserIDs: []string{"u" + strconv.Itoa(u)}, State: callstate.StateRinging})
			} else {
				dedup = benchApply(b, st, key, callstate.Update{State: callstate.StateEnded})
			}
			mu.Lock()
			written[dedup] = key + " " + state
			mu.Unlock()
			umu.Lock()
			busy[u] = false
			umu.Unlock()
		})
	}
	writes.Wait()
	elapsed := time.Since(start)
	time.Sleep(2 * time.Second) // the last NOTIFYs
	counted.Store(false)
	mu.Lock()
	defer mu.Unlock()
	dedups := slices.Collect(maps.Keys(written))
	commits := storetest.CommitTimes(b, db, dedups)
	committed := make(map[string]time.Time, len(commits)) // "callID state" -> commit time
	for k, at := range commits {
		committed[written[k]] = at
	}
	if len(committed) != len(written) {
		b.Fatalf("commit times of %d of %d writes", len(committed), len(written))
	}
	early := 0 // NOTIFYs stamped before their write's commit: none can be
	for _, x := range seen {
		if w, ok := committed[x.key]; ok {
			d := x.at.Sub(w)
			if d < 0 {
				early++
			}
			lat = append(lat, d)
		}
	}
	if early > 0 {
		b.Errorf("%d NOTIFYs stamped before the commit of the write they show: the clocks disagree", early)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	want := changes * keys
	b.ReportMetric(float64(recvd)/lastAt.Sub(start).Seconds(), "notifies/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
	b.ReportMetric(float64(len(lat))/float64(want), "seen/sent")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
	_, peak := testpbx.RSS()
	b.ReportMetric(float64(peak)/(1<<20), "peakRSS-MiB")
	b.ReportMetric(upIn.Seconds(), "subscribe-s")
	var strays int64
	for _, p := range ps {
		strays += p.strays.Load()
	}
	b.Logf("unmatched: %q", unmatched)
	b.Logf("%d NOTIFYs came from another address than the agent's", strays)
	b.Logf("%d subscriptions up in %s; %d changes in %s; %d NOTIFYs, %d of %d change NOTIFYs matched; agent: %+v",
		lamps*keys, upIn.Round(time.Millisecond), changes, elapsed.Round(time.Millisecond), recvd, len(lat), want, a.Stats())
}

type seenAt struct {
	key string // call id and dialog state
	at  time.Time
}

func between(s, from, to string) string {
	_, rest, ok := strings.Cut(s, from)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, to)
	return v
}

// benchApply writes u as a sipgate event of call key and returns the
// event's dedup key.
func benchApply(tb testing.TB, st *store.Store, key string, u callstate.Update) string {
	tb.Helper()
	u.Key, u.CallID = key, key
	ev := callstate.Event{Source: callstate.SourceSipgate, Type: "x", DedupKey: key + "/" + u.State.String(),
		ReceivedAt: time.Now(), Payload: []byte("{}"), Update: u}
	if _, err := st.Apply(context.Background(), ev); err != nil {
		tb.Fatal(err)
	}
	return ev.DedupKey
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
