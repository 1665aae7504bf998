package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// listen runs st.Listen until the test ends and returns its changes, after
// the first ChangeListening.
func listen(t *testing.T, st *store.Store) <-chan store.Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan store.Change, 1000)
	done := make(chan error, 1)
	go func() { done <- st.Listen(ctx, func(c store.Change) { ch <- c }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen: %v", err)
		}
	})
	select {
	case c := <-ch:
		if c.Kind != store.ChangeListening {
			t.Fatalf("first change %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not listening after 10s")
	}
	return ch
}

func next(t *testing.T, ch <-chan store.Change) store.Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no change within 5s")
		return store.Change{}
	}
}

// TestListenAcrossStores: a write through one Store is announced to another
// Store's listener on the same database, once its feed events are
// numbered; so is a PBX extension's row.
func TestListenAcrossStores(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	a, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := store.Open(ctx, url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ch := listen(t, b)

	applyAll(t, a, callEvents("k")[0])
	if c := next(t, ch); c.Kind != store.ChangeCall {
		t.Fatalf("change %+v", c)
	}
	if evs, err := b.Feed(ctx, 0, 10); err != nil || len(evs) == 0 || evs[0].Call == nil || evs[0].Call.Key != "k" {
		t.Fatalf("announced, the feed reads %+v, %v", evs, err)
	}
	if err := a.AddExtensions(ctx, []string{"100"}); err != nil {
		t.Fatal(err)
	}
	for {
		c := next(t, ch)
		if c.Kind == store.ChangeExtension {
			if c.Extension != "100" {
				t.Fatalf("extension change %+v", c)
			}
			break
		}
		if c.Kind != store.ChangeCall { // the lamps' events, announced
			t.Fatalf("unexpected change %+v", c)
		}
	}
}

// TestListenReconnects: after its connection is killed, the listener
// reconnects and says so (ChangeListening: read what may have been
// missed), then hears writes again.
func TestListenReconnects(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	ch := listen(t, st)
	applyAll(t, st, callEvents("before")[0])
	next(t, ch)

	tag, err := st.ExecForTest(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE application_name = '`+store.ListenerApplicationName+`' AND datname = current_database()`)
	if err != nil || tag == 0 {
		t.Fatalf("terminate listener: %d %v", tag, err)
	}
	deadline := time.After(15 * time.Second)
	for listening := false; !listening; {
		select {
		case c := <-ch:
			listening = c.Kind == store.ChangeListening
		case <-deadline:
			t.Fatal("not listening again after 15s")
		}
	}
	applyAll(t, st, callEvents("after")[0])
	for {
		if c := next(t, ch); c.Kind == store.ChangeCall {
			break
		}
	}
}

// BenchmarkApply measures the webhook write path, one event per Apply (four
// per call), with migration 004's triggers (change_seq, sipgate_user,
// NOTIFY) and, for comparison, with them disabled.
func BenchmarkApply(b *testing.B) {
	for _, triggers := range []bool{true, false} {
		b.Run(fmt.Sprintf("triggers=%v", triggers), func(b *testing.B) {
			ctx := context.Background()
			st := openStore(b)
			if !triggers {
				if _, err := st.ExecForTest(ctx, `ALTER TABLE call_state DISABLE TRIGGER USER`); err != nil {
					b.Fatal(err)
				}
			}
			evs := callEvents("x")
			for i := 0; b.Loop(); i++ {
				ev := evs[i%len(evs)]
				ev.DedupKey = fmt.Sprintf("%d/%s", i/len(evs), ev.Type)
				ev.Update.Key = fmt.Sprint(i / len(evs))
				if _, err := st.Apply(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAnnounceSpacing: writes that keep coming are announced (and the feed
// numbered) at most once per 20 ms, however fast they commit.
func TestAnnounceSpacing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{store.NotifyChannel}.Sanitize()); err != nil {
		conn.Close(ctx)
		t.Fatal(err)
	}
	heard := make(chan time.Time, 10000)
	done := make(chan struct{})
	defer func() { // the reader stops before its connection closes
		cancel()
		<-done
		conn.Close(context.Background())
	}()
	go func() {
		defer close(done)
		for {
			nt, err := conn.WaitForNotification(ctx)
			if err != nil {
				return
			}
			if nt.Payload == store.CallsChanged {
				heard <- time.Now()
			}
		}
	}()

	// A write every few milliseconds for 600 ms: announced every 5 ms,
	// as before, they gave about a hundred announcements; 20 ms apart,
	// at most 31 in that time.
	const busy, spacing = 600 * time.Millisecond, 20 * time.Millisecond
	start := time.Now()
	writes := 0
	for ; time.Since(start) < busy; writes++ {
		applyAll(t, st, callEvents(fmt.Sprint("busy", writes))[0])
		time.Sleep(time.Millisecond)
	}
	end := time.Now()
	time.Sleep(100 * time.Millisecond)
	n := 0
	for len(heard) > 0 {
		if at := <-heard; at.After(start) && at.Before(end) {
			n++
		}
	}
	if max := int(end.Sub(start)/spacing) + 1; n == 0 || n > max {
		t.Fatalf("%d writes in %s were announced %d times meanwhile, want 1 to %d", writes, end.Sub(start), n, max)
	}
	t.Logf("%d writes in %s announced %d times meanwhile", writes, end.Sub(start), n)

	// A write alone, after a quiet spell, is announced.
	time.Sleep(500 * time.Millisecond)
	for len(heard) > 0 {
		<-heard
	}
	applyAll(t, st, callEvents("alone")[0])
	select {
	case <-heard:
	case <-time.After(5 * time.Second):
		t.Fatal("a write alone was not announced within 5 s")
	}
}
