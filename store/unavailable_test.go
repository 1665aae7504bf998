package store_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// forward accepts connections on ln and pipes each to target, until ln is
// closed: the database appears at ln's address when forward starts.
func forward(t *testing.T, ln net.Listener, target string) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				d, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer d.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(d, c); done <- struct{}{} }()
				go func() { io.Copy(c, d); done <- struct{}{} }()
				<-done
			})
		}
	})
}

// TestOpenWithoutDatabase: with nothing at the database's address, Open
// returns a Store that says it is unavailable; once the database appears
// there, the Store connects and migrates by itself.
func TestOpenWithoutDatabase(t *testing.T) {
	real, err := url.Parse(storetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	// An address nobody listens on (yet): take a port and let it go.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	u := *real
	u.Host = addr

	ctx := context.Background()
	st, err := store.Open(ctx, u.String(), store.Options{})
	if err != nil {
		t.Fatalf("Open without a database: %v", err)
	}
	defer st.Close()
	ev := callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: "k1", ReceivedAt: t0,
		Payload: []byte("x"), Update: callstate.Update{Key: "c1", State: callstate.StateRinging}}
	if _, err := st.Apply(ctx, ev); !errors.Is(err, callstate.ErrUnavailable) {
		t.Fatalf("Apply before the database is there: %v, want ErrUnavailable", err)
	}
	if err := st.Ping(ctx); !errors.Is(err, callstate.ErrUnavailable) {
		t.Fatalf("Ping: %v, want ErrUnavailable", err)
	}
	if _, _, err := st.ListCalls(ctx, callstate.CallFilter{}); !errors.Is(err, callstate.ErrUnavailable) {
		t.Fatalf("ListCalls: %v, want ErrUnavailable", err)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	forward(t, ln, real.Host)
	select {
	case <-st.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the store did not connect within 10 s of the database appearing")
	}
	if applied, err := st.Apply(ctx, ev); err != nil || !applied {
		t.Fatalf("Apply once connected: %v, %v", applied, err)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("Ping once connected: %v", err)
	}
}

// TestOpenPermanentError: a database that does not exist is not waited
// for: Open says so.
func TestOpenPermanentError(t *testing.T) {
	u, err := url.Parse(storetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/no_such_database"
	st, err := store.Open(context.Background(), u.String(), store.Options{})
	if err == nil {
		st.Close()
		t.Fatal("Open of a database that does not exist succeeded")
	}
}
