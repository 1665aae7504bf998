package spool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	poison  string // dedup key that fails, though the store is up
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
	if ev.DedupKey == m.poison {
		return false, errors.New("something odd")
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

func (m *memStore) Ping(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errors.New("connection refused")
	}
	return nil
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
	opts.ProbeEvery = 10 * time.Millisecond
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

// TestOutageThenDirect: while the store is down, events are accepted into
// the spool; once it answers, new events go straight to it while the
// backlog drains beside them, and every event is applied once.
func TestOutageThenDirect(t *testing.T) {
	st := newMemStore()
	s := open(t, t.TempDir(), st, spool.Options{DrainBatch: 7, DrainParallel: 3})
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
	if st := s.Stats(); st.Records != 50 || st.Spooled != 50 || !st.StoreDown || st.DBErrors != 1 {
		t.Fatalf("stats %+v, want 50 records spooled after one failed direct write", st)
	}
	st.setDown(false)
	waitFor(t, "the probe to find the store back", func() bool { return !s.Stats().StoreDown })
	for i := 50; i < 100; i++ {
		if _, err := s.Apply(ctx, event(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the spool to drain", func() bool { return s.Stats().Records == 0 && len(st.keys()) == 100 })
	if got := s.Stats(); got.Spooled != 50 || got.Drained != 50 {
		t.Errorf("stats %+v: want the 50 of the outage spooled and drained, the rest direct", got)
	}
	seen := map[string]bool{}
	for _, k := range st.keys() {
		if seen[k] {
			t.Errorf("%s applied twice", k)
		}
		seen[k] = true
	}
	cancel()
	<-done
}

// TestDrainFailsMidway: a batch that fails halfway is applied again when
// the store is back; what got through the first time is a repeat.
func TestDrainFailsMidway(t *testing.T) {
	st := newMemStore()
	st.setDown(true)
	s := open(t, t.TempDir(), st, spool.Options{DrainBatch: 1000, DrainParallel: 1})
	for i := range 20 {
		if _, err := s.Apply(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
	st.setDown(false)
	st.mu.Lock()
	st.refuse = "" // the store goes down after 10 events
	st.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	go func() {
		waitFor(t, "ten events", func() bool { return len(st.keys()) >= 10 })
		st.setDown(true)
	}()
	s.Drain(ctx)
	cancel()
	st.setDown(false)
	if left := s.Drain(context.Background()); left != 0 {
		t.Fatalf("%d left", left)
	}
	if got := len(st.keys()); got != 20 {
		t.Errorf("applied %d, want 20", got)
	}
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

// nonStart is an event that does not start a call.
func nonStart(i int) callstate.Event {
	ev := event(i)
	ev.Type, ev.Update.State = "hangup", callstate.StateEnded
	return ev
}

// TestFullKeepsReserveForNewCalls: other events are refused once the
// spool reaches its bound less the reserve; events that start a call fill
// the reserve; nothing goes over the bound; Err says so.
func TestFullKeepsReserveForNewCalls(t *testing.T) {
	st := newMemStore()
	st.setDown(true)
	s := open(t, t.TempDir(), st, spool.Options{MaxBytes: 20000, Reserve: 5000})
	var err error
	n := 0
	for ; n < 1000 && err == nil; n++ {
		_, err = s.Apply(context.Background(), nonStart(n))
	}
	if !errors.Is(err, spool.ErrFull) {
		t.Fatalf("after %d events: %v, want ErrFull", n, err)
	}
	if st := s.Stats(); st.Bytes > 15000 || st.Refused != 1 {
		t.Errorf("stats %+v: want at most 15000 bytes of other events, 1 refused", st)
	}
	if err := s.Err(); err == nil {
		t.Error("Err() = nil for a spool that refuses events")
	}
	calls := 0
	for err = nil; err == nil; calls++ {
		_, err = s.Apply(context.Background(), event(1000+calls))
	}
	if !errors.Is(err, spool.ErrFull) || calls < 10 {
		t.Fatalf("%d new calls fitted in the reserve, then %v", calls-1, err)
	}
	if st := s.Stats(); st.Bytes > 20000 {
		t.Errorf("spool grew to %d bytes over its bound", st.Bytes)
	}
	st.setDown(false)
	if left := s.Drain(context.Background()); left != 0 {
		t.Fatalf("%d left", left)
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err() = %v after the drain", err)
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
	got := st.keys()
	slices.Sort(got)
	if len(got) != 2 || got[0] != "e0000" || got[1] != "e0002" {
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

// TestPoisonDoesNotHoldUpTheSpool: an event that fails every time, while
// the store answers, is set aside after a few tries; the rest are applied,
// and live events keep going straight to the store.
func TestPoisonDoesNotHoldUpTheSpool(t *testing.T) {
	dir := t.TempDir()
	st := newMemStore()
	st.setDown(true)
	s := open(t, dir, st, spool.Options{})
	for i := range 20 {
		if _, err := s.Apply(context.Background(), event(i)); err != nil {
			t.Fatal(err)
		}
	}
	st.mu.Lock()
	st.down, st.poison = false, event(7).DedupKey
	st.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	waitFor(t, "the spool to drain past the poison", func() bool { return s.Stats().Records == 0 })
	if got := len(st.keys()); got != 19 {
		t.Errorf("applied %d, want the 19 others", got)
	}
	if s.Stats().Rejected != 1 {
		t.Errorf("stats %+v, want the poison set aside", s.Stats())
	}
	b, err := os.ReadFile(filepath.Join(dir, "rejected.jsonl"))
	if err != nil || !bytes.Contains(b, []byte(event(7).DedupKey)) || bytes.Count(b, []byte("\n")) != 1 {
		t.Errorf("rejected.jsonl: %q %v, want the poison once", b, err)
	}
	if s.Stats().StoreDown {
		t.Error("the store was taken for down because of one event")
	}
	cancel()
	<-done
}

// TestKeep: a batch Keep returns is on disk and reaches the store through
// the runner, whether the store is up or comes back later; a batch that
// does not fit is refused whole; an incomplete event refuses the batch.
func TestKeep(t *testing.T) {
	st := newMemStore()
	s := open(t, t.TempDir(), st, spool.Options{MaxBytes: 20000, Reserve: 5000})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)

	if err := s.Keep(ctx, []callstate.Event{event(0), nonStart(1), nonStart(2)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kept batch in the store", func() bool { return len(st.keys()) == 3 })

	st.setDown(true)
	if err := s.Keep(ctx, []callstate.Event{nonStart(3), nonStart(4)}); err != nil {
		t.Fatalf("Keep while the store is down: %v", err)
	}
	bad := nonStart(5)
	bad.DedupKey = ""
	if err := s.Keep(ctx, []callstate.Event{nonStart(6), bad}); !errors.Is(err, callstate.ErrInvalidEvent) {
		t.Fatalf("Keep with an incomplete event: %v, want ErrInvalidEvent", err)
	}
	big := make([]callstate.Event, 200) // more than the bound less the reserve
	for i := range big {
		big[i] = nonStart(100 + i)
	}
	if err := s.Keep(ctx, big); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("Keep of a batch over the bound: %v, want ErrFull", err)
	}
	if got := s.Stats(); got.Records != 2 || got.Kept != 5 || got.Spooled != 0 {
		t.Errorf("stats %+v: want 2 records waiting, 5 kept, none spooled by Apply", got)
	}
	st.setDown(false)
	waitFor(t, "the batch kept during the outage in the store", func() bool { return len(st.keys()) == 5 })
	for _, k := range st.keys() {
		if k == "e0006" || k >= "e0100" {
			t.Errorf("%s was applied from a refused batch", k)
		}
	}
}
