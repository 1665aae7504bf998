package watch

import (
	"context"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// gate forwards TCP connections to target while open; closing it cuts the
// connections it carries and refuses new ones, as an unreachable database
// does.
type gate struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	open   bool
	conns  map[net.Conn]bool
	wg     sync.WaitGroup
}

func startGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target, open: true, conns: make(map[net.Conn]bool)}
	t.Cleanup(func() { ln.Close(); g.set(false); g.wg.Wait() })
	g.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.wg.Go(func() { g.pipe(c) })
		}
	})
	return g
}

func (g *gate) pipe(c net.Conn) {
	defer c.Close()
	g.mu.Lock()
	if !g.open {
		g.mu.Unlock()
		return
	}
	d, err := net.Dial("tcp", g.target)
	if err != nil {
		g.mu.Unlock()
		return
	}
	defer d.Close()
	g.conns[c], g.conns[d] = true, true
	g.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(d, c); done <- struct{}{} }()
	go func() { io.Copy(c, d); done <- struct{}{} }()
	<-done
}

// set opens or closes the gate; closing cuts every connection.
func (g *gate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = open
	if !open {
		for c := range g.conns {
			c.Close()
		}
		clear(g.conns)
	}
}

// TestStateWriterRetries: subscription states and presence queued while the
// database is unreachable land once it is back, in few statements.
func TestStateWriterRetries(t *testing.T) {
	dsn := storetest.NewDatabase(t)
	direct, err := store.Open(t.Context(), dsn, store.Options{Logger: testpbx.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	const n = 2500 // more than one statement's worth
	names := make([]string, n)
	for i := range names {
		names[i] = strconv.Itoa(10000 + i)
	}
	if err := direct.AddExtensions(t.Context(), names); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	g := startGate(t, u.Host)
	u.Host = g.ln.Addr().String()
	viaGate, err := store.Open(t.Context(), u.String(), store.Options{Logger: testpbx.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer viaGate.Close()

	w := newStateWriter(viaGate, testpbx.Logger(t), time.Second)
	w.start()
	defer w.close()
	g.set(false)
	for _, ext := range names {
		w.setSubscription(ext, callstate.SubscriptionPending, "")
	}
	for _, ext := range names {
		w.setSubscription(ext, callstate.SubscriptionActive, "")
	}
	w.setPresence(names[0], "busy", "On the phone")
	testpbx.WaitFor(t, 10*time.Second, func() string {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.failures < 2 {
			return "no failed writes yet"
		}
		return ""
	})
	g.set(true)
	testpbx.WaitFor(t, 30*time.Second, func() string {
		ls, err := direct.Lamps(context.Background())
		if err != nil {
			return err.Error()
		}
		active := 0
		for _, l := range ls {
			if l.Subscription == callstate.SubscriptionActive {
				active++
			}
		}
		if active < n {
			return strconv.Itoa(active) + " of " + strconv.Itoa(n) + " subscriptions recorded active"
		}
		if ls[0].Presence != "busy" {
			return "presence of " + ls[0].Extension + " is " + ls[0].Presence
		}
		return ""
	})
	w.mu.Lock()
	writes := w.writes
	w.mu.Unlock()
	// At best 3 statements for the states (1,000 a statement) and one for
	// the presence; a retry that lands while the next flush is due may
	// split a batch. One a change would be thousands.
	if writes > 8 {
		t.Errorf("%d statements for %d extensions and one presence, want at most 8", writes, n)
	}
}
