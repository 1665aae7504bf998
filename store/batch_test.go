package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// newCallEvent is a sipgate newCall for call key, received now (the
// journal has today's partition).
func newCallEvent(key string) callstate.Event {
	ev := callEvents(key)[0]
	ev.ReceivedAt = time.Now()
	return ev
}

// TestBatchWait: events that come while others are being written wait
// for company and share transactions; an event that comes alone is
// written at once, however long BatchWait is; Close ends the wait.
func TestBatchWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("alone", func(t *testing.T) {
		// An event alone waits neither the hour nor its fifth (the test's
		// context ends first).
		st := openURLWith(t, storetest.NewDatabase(t), store.Options{BatchWait: time.Hour})
		if _, err := st.Apply(ctx, newCallEvent("alone")); err != nil {
			t.Fatal(err)
		}
		if got := st.WriteStats(); got.Transactions != 1 || got.Events != 1 {
			t.Errorf("WriteStats = %+v, want 1 transaction of one event", got)
		}
	})

	t.Run("one connection", func(t *testing.T) {
		// With one connection there is one writer: waiting for live
		// events, it still takes a backlog's.
		st := openURLWith(t, storetest.NewDatabase(t), store.Options{MaxConns: 1, BatchWait: time.Hour})
		bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := st.ApplyBacklog(bctx, newCallEvent("backlog")); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Apply(bctx, newCallEvent("live")); err != nil {
			t.Fatal(err)
		}
	})

	// held opens a store on a new database and starts an event whose write
	// waits for a transaction of the test (that holds its dedup key) until
	// release is called: while it waits, the store is busy writing, and the
	// events that come have company.
	held := func(t *testing.T, opts store.Options, backlog ...bool) (st *store.Store, release func() error) {
		t.Helper()
		url := storetest.NewDatabase(t)
		st = openURLWith(t, url, opts)
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ev := newCallEvent("held")
		if _, err := tx.Exec(ctx, `INSERT INTO call_event_key (source, dedup_key, received_at) VALUES ($1, $2, now())`,
			string(ev.Source), ev.DedupKey); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			apply := st.Apply
			if len(backlog) > 0 && backlog[0] {
				apply = st.ApplyBacklog
			}
			_, err := apply(ctx, ev)
			done <- err
		}()
		// Until its write waits for the key (pg_stat_activity is read
		// once a transaction unless cleared).
		for {
			var waiting bool
			if _, err := conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
				t.Fatal(err)
			}
			if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if waiting {
				break
			}
			select {
			case err := <-done:
				t.Fatalf("the held event was written: %v", err)
			case <-time.After(10 * time.Millisecond):
			}
		}
		return st, func() error {
			if err := tx.Rollback(ctx); err != nil {
				return err
			}
			return <-done
		}
	}

	// spaced sends n events 3 ms apart, each from its own goroutine (as
	// webhooks come), and returns their errors once all are answered.
	spaced := func(st *store.Store, n int) <-chan error {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Go(func() {
				_, err := st.Apply(ctx, newCallEvent(fmt.Sprint("spaced-", i)))
				errs <- err
			})
			time.Sleep(3 * time.Millisecond)
		}
		go func() {
			wg.Wait()
			close(errs)
		}()
		return errs
	}

	t.Run("company", func(t *testing.T) {
		st, release := held(t, store.Options{BatchWait: 2 * time.Second})
		for err := range spaced(st, 30) {
			if err != nil {
				t.Error(err)
			}
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
		got := st.WriteStats()
		if got.Events != 31 {
			t.Fatalf("WriteStats = %+v, want 31 events", got)
		}
		// The 30 came within about 100 ms, well inside the wait, while
		// the held one was being written: they share one or two
		// transactions, and the held one has its own.
		if got.Transactions > 3 {
			t.Errorf("WriteStats = %+v: 30 events coming 3 ms apart took over 3 transactions with BatchWait 2s", got)
		}
		cs, _, err := st.ListCalls(ctx, callstate.CallFilter{})
		if err != nil || len(cs) != 31 {
			t.Errorf("ListCalls: %d calls, %v; want 31", len(cs), err)
		}
	})

	t.Run("idle", func(t *testing.T) {
		// Events that stopped coming wait while another write is under
		// way (the database is busy), and go as soon as it is done, not
		// at the end of the wait.
		st, release := held(t, store.Options{BatchWait: 5 * time.Second})
		start := time.Now()
		errs := spaced(st, 5)
		// A fifth of the wait (1 s) passes without an event.
		time.Sleep(2 * time.Second)
		if got := st.WriteStats(); got.Events != 0 {
			t.Errorf("WriteStats = %+v while another write was under way, want the events still waiting", got)
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if took := time.Since(start); took > 4*time.Second {
			t.Errorf("events written %v after they came, want soon after the write before them (at 2 s), before the wait's end (5 s)", took)
		}
	})

	t.Run("backlog", func(t *testing.T) {
		// A spool's backlog being written does not hold live events: a
		// lone one is written at once, not after the hour. (Were the
		// backlog's write counted, the live event would wait until the
		// held write timed out, and release would report that.)
		st, release := held(t, store.Options{BatchWait: time.Hour}, true)
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := st.Apply(lctx, newCallEvent("live")); err != nil {
			t.Errorf("a live event while a backlog was written: %v", err)
		}
		if err := release(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("close", func(t *testing.T) {
		// Close while a writer waits for company: the events waiting are
		// answered with an error at once, not after the wait.
		st, release := held(t, store.Options{BatchWait: time.Hour})
		errs := spaced(st, 5)
		time.Sleep(200 * time.Millisecond)
		// Close cancels the held write too; its event's error is not
		// what this looks at.
		closed := make(chan struct{})
		go func() {
			st.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			t.Fatal("Close did not return within 30 s while events waited for an hour's company")
		}
		_ = release()
		failed := 0
		for err := range errs {
			if err != nil {
				failed++
			}
		}
		if failed != 5 {
			t.Errorf("%d of 5 events waiting for company failed on Close, want all", failed)
		}
	})
}
