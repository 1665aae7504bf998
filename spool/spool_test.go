package spool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/spool"
)

// memStore is a store that can be switched off, and that, like the real
// one, applies each dedup key once. The real store behind the spool is
// exercised by cmd/callstate's fault tests.
type memStore struct {
	mu      sync.Mutex
	down    bool
	refuse  string // dedup key refused for good
	seen    map[string]bool
	applied []string // dedup keys in the order applied
}

func newMemStore() *memStore { return &memStore{seen: map[string]bool{}} }

func (m *memStore) Apply(ctx context.Context, ev callstate.Event) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return false, errors.New("connection refused")
	}
	if ev.DedupKey == m.refuse {
		return false, fmt.Errorf("%w: value too long", callstate.ErrInvalidEvent)
	}
	if m.seen[ev.DedupKey] {
		return false, nil
	}
	m.seen[ev.DedupKey] = true
	m.applied = append(m.applied, ev.DedupKey)
	return true, nil
}

func (m *memStore) setDown(down bool) {
	m.mu.Lock()
	m.down = down
	m.mu.Unlock()
}

func (m *memStore) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.applied...)
}

func event(i int) callstate.Event {
	return callstate.Event{
		Source: callstate.SourceSipgate, Type: "newCall", DedupKey: fmt.Sprintf("e%04d", i),
		ReceivedAt: time.Unix(1700000000, 0).UTC(), Payload: []byte(fmt.Sprintf("event=newCall&callId=c%d", i)),
		Update: callstate.Update{Key: fmt.Sprintf("c%d", i), State: callstate.StateRinging, OnHold: new(bool)},
	}
}

func open(tb testing.TB, dir string, st spool.Applier, opts spool.Options) *spool.Spool {
	tb.Helper()
	opts.Dir = dir
	opts.RetryMax = 50 * time.Millisecond
	s, err := spool.Open(opts, st)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDirectWhenStoreUp(t *testing.T) {
	st := newMemStore()
	s := open(t, t.TempDir(), st, spool.Options{})
	for i := range 3 {
		applied, err := s.Apply(context.Background(), event(i))
		if err != nil || !applied {
			t.Fatalf("Apply: %v %v", applied, err)
		}
	}
	if applied, err := s.Apply(context.Background(), event(0)); err != nil || applied {
		t.Errorf("repeat: applied=%v err=%v, want false, nil", applied, err)
	}
	if st := s.Stats(); st.Records != 0 || st.Spooled != 0 {
		t.Errorf("stats %+v, want nothing spooled", st)
	}
}

// TestOutageKeepsOrder: while the store is down, events are accepted into
// the spool, later ones queue behind them even after the store is back, and
// all are applied once, in order.
func TestOutageKeepsOrder(t *testing.T) {
	st := newMemStore()
	s := open(t, t.TempDir(), st, spool.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()

	st.setDown(true)
	for i := range 50 {
		if applied, err := s.Apply(ctx, event(i)); err != nil || !applied {
			t.Fatalf("Apply during outage: %v %v", applied, err)
		}
	}
	if st := s.Stats(); st.Records != 50 || st.Spooled != 50 {
		t.Fatalf("stats %+v, want 50 records spooled", st)
	}
	st.setDown(false)
	for i := 50; i < 100; i++ {
		if _, err := s.Apply(ctx, event(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the spool to drain", func() bool { return s.Stats().Records == 0 && len(st.keys()) == 100 })
	if got := s.Stats().Spooled; got < 50 {
		t.Errorf("%d events counted as spooled, want at least the 50 of the outage", got)
	}
	for i, k := range st.keys() {
		if want := event(i).DedupKey; k != want {
			t.Fatalf("applied[%d] = %s, want %s", i, k, want)
		}
	}
	cancel()
	<-done
}

// TestSurvivesRestart: what was spooled is applied after the process comes
// back, and a torn record at the end (a write that never finished) is cut off.
func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	st := newMemStore()
	st.setDown(true)
	s := open(t, dir, st, spool.Options{})
	for i := range 10 {
		if _, err := s.Apply(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close() // as if killed: nothing drained
	f, err := os.OpenFile(filepath.Join(dir, "events.spool"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 1, 0, 9, 9}) // half a header
	f.Close()

	st.setDown(false)
	s2 := open(t, dir, st, spool.Options{})
	if got := s2.Stats().Records; got != 10 {
		t.Fatalf("after restart the spool holds %d, want 10", got)
	}
	if left := s2.Drain(context.Background()); left != 0 {
		t.Fatalf("%d left after Drain", left)
	}
	if got := len(st.keys()); got != 10 {
		t.Errorf("applied %d, want 10", got)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "events.spool")); fi.Size() != 0 {
		t.Errorf("drained spool file is %d bytes", fi.Size())
	}
}

func TestFull(t *testing.T) {
	st := newMemStore()
	st.setDown(true)
	s := open(t, t.TempDir(), st, spool.Options{MaxBytes: 2000})
	var err error
	n := 0
	for ; n < 100 && err == nil; n++ {
		_, err = s.Apply(context.Background(), event(n))
	}
	if !errors.Is(err, spool.ErrFull) {
		t.Fatalf("after %d events: %v, want ErrFull", n, err)
	}
	if st := s.Stats(); st.Bytes > 2000 {
		t.Errorf("spool grew to %d bytes over its bound", st.Bytes)
	}
}

// TestRejectedDoNotBlock: an event the store refuses for good is set aside
// in rejected.jsonl; the ones behind it are applied.
func TestRejectedDoNotBlock(t *testing.T) {
	dir := t.TempDir()
	st := newMemStore()
	st.setDown(true)
	s := open(t, dir, st, spool.Options{})
	for i := range 3 {
		if _, err := s.Apply(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
	st.mu.Lock()
	st.down, st.refuse = false, event(1).DedupKey
	st.mu.Unlock()
	if left := s.Drain(context.Background()); left != 0 {
		t.Fatalf("%d left", left)
	}
	if got := st.keys(); len(got) != 2 || got[0] != "e0000" || got[1] != "e0002" {
		t.Errorf("applied %v", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "rejected.jsonl"))
	if err != nil || !bytes.Contains(b, []byte("e0001")) {
		t.Errorf("rejected.jsonl: %q %v", b, err)
	}
	if s.Stats().Rejected != 1 {
		t.Errorf("stats %+v", s.Stats())
	}
}

// TestConcurrentAppends: many writers during an outage share fsyncs and
// lose nothing.
func TestConcurrentAppends(t *testing.T) {
	st := newMemStore()
	st.setDown(true)
	s := open(t, t.TempDir(), st, spool.Options{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if _, err := s.Apply(context.Background(), event(w*1000+i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	st.setDown(false)
	s.Drain(context.Background())
	if got := len(st.keys()); got != 400 {
		t.Errorf("applied %d, want 400", got)
	}
}

func BenchmarkSpoolAppend(b *testing.B) {
	st := newMemStore()
	st.setDown(true)
	s := open(b, b.TempDir(), st, spool.Options{MaxBytes: 1 << 30, Logger: slog.New(slog.DiscardHandler)})
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := s.Apply(context.Background(), event(i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
