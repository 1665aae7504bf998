package store_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/reference"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func openStore(tb testing.TB) *store.Store {
	tb.Helper()
	return openURL(tb, storetest.NewDatabase(tb))
}

func openURL(tb testing.TB, url string) *store.Store {
	tb.Helper()
	return openURLWith(tb, url, store.Options{})
}

func openURLWith(tb testing.TB, url string, opts store.Options) *store.Store {
	tb.Helper()
	st, err := store.Open(context.Background(), url, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(st.Close)
	return st
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

// callEvents returns a whole sipgate-like call under key: newCall, answer,
// dtmf, hangup, each received a few seconds after the one before.
func callEvents(key string) []callstate.Event {
	ev := func(typ string, sec int, u callstate.Update) callstate.Event {
		u.Key = key
		return callstate.Event{
			Source: callstate.SourceSipgate, Type: typ, DedupKey: key + "/" + typ,
			ReceivedAt: t0.Add(time.Duration(sec) * time.Second), Payload: []byte("event=" + typ), Update: u,
		}
	}
	return []callstate.Event{
		ev("newCall", 0, callstate.Update{CallID: key, Direction: callstate.DirectionIn, From: "491701", To: "4930",
			Users: []string{"Alice"}, UserIDs: []string{"w0"}, FullUserIDs: []string{"123w0"}, Extension: "w0",
			XCID: "x1", State: callstate.StateRinging}),
		ev("answer", 2, callstate.Update{CallID: key, Extension: "w1", PinExtension: true, AnsweredBy: "Bob",
			Answering: "4930", State: callstate.StateAnswered}),
		ev("dtmf", 5, callstate.Update{DTMF: "42"}),
		ev("hangup", 9, callstate.Update{Cause: "normalClearing", Answering: "4930", State: callstate.StateEnded}),
	}
}

// permutations returns every order of n items as index lists.
func permutations(n int) [][]int {
	if n == 1 {
		return [][]int{{0}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// TestApplyMatchesDomain applies a call's events in every order, each twice,
// and checks the row against callstate.Call.Apply: the SQL merge is the
// domain's merge, whatever the order, and repeats change nothing.
func TestApplyMatchesDomain(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	for i, order := range permutations(4) {
		key := fmt.Sprintf("call-%02d", i)
		evs := callEvents(key)
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			var want callstate.Call
			for _, j := range order {
				want = want.Apply(evs[j].Update, evs[j].ReceivedAt)
				for try := range 2 {
					applied, err := st.Apply(ctx, evs[j])
					if err != nil {
						t.Fatalf("Apply(%s): %v", evs[j].Type, err)
					}
					if applied != (try == 0) {
						t.Fatalf("Apply(%s) try %d: applied=%v", evs[j].Type, try, applied)
					}
				}
			}
			got, err := st.Call(ctx, callstate.SourceSipgate, key)
			if err != nil {
				t.Fatal(err)
			}
			want.Source, want.ID = callstate.SourceSipgate, got.ID
			assertCall(t, got, want)
			if got.State != callstate.StateEnded || got.Extension != "w1" || got.DTMF != "42" ||
				!got.StartedAt.Equal(t0) || !got.EndedAt.Equal(t0.Add(9*time.Second)) {
				t.Errorf("final call wrong: %+v", got)
			}
			journal, err := st.Journal(ctx, callstate.SourceSipgate, key)
			if err != nil {
				t.Fatal(err)
			}
			if len(journal) != 4 {
				t.Errorf("journal has %d events, want 4", len(journal))
			}
		})
	}
}

func TestApplyHold(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	steps := []struct {
		state    callstate.State
		hold     *bool
		wantHold bool
	}{
		{callstate.StateAnswered, ptr(true), true},
		{callstate.StateAnswered, nil, true},
		{callstate.StateAnswered, ptr(false), false},
		{callstate.StateAnswered, ptr(true), true},
		{callstate.StateEnded, nil, false},
		{callstate.StateEnded, ptr(true), false},
	}
	for i, s := range steps {
		ev := callstate.Event{
			Source: callstate.SourceSIP, Type: "dialog", DedupKey: fmt.Sprint("v", i),
			ReceivedAt: t0.Add(time.Duration(i) * time.Second), Payload: []byte("<dialog-info/>"),
			Update: callstate.Update{Key: "100/d1", Extension: "100", State: s.state, OnHold: s.hold},
		}
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
		c, err := st.Call(ctx, callstate.SourceSIP, "100/d1")
		if err != nil {
			t.Fatal(err)
		}
		if c.OnHold != s.wantHold {
			t.Errorf("step %d: on hold %v, want %v", i, c.OnHold, s.wantHold)
		}
	}
}

func TestApplyInvalid(t *testing.T) {
	st := openStore(t)
	_, err := st.Apply(context.Background(), callstate.Event{Source: callstate.SourceSipgate, Type: "newCall"})
	if !errors.Is(err, callstate.ErrInvalidEvent) {
		t.Errorf("Apply(incomplete) = %v, want ErrInvalidEvent", err)
	}
}

func TestCallNotFound(t *testing.T) {
	st := openStore(t)
	if _, err := st.Call(context.Background(), callstate.SourceSipgate, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Call(nope) = %v, want ErrNotFound", err)
	}
}

// TestOpenTwice opens the same database again: migrations already applied
// are skipped, concurrently too.
func TestOpenTwice(t *testing.T) {
	url := storetest.NewDatabase(t)
	ctx := context.Background()
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			st, err := store.Open(ctx, url, store.Options{})
			if err == nil {
				st.Close()
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("Open: %v", err)
		}
	}
}

func assertCall(tb testing.TB, got, want callstate.Call) {
	tb.Helper()
	norm := func(c callstate.Call) callstate.Call {
		for _, p := range []*time.Time{&c.StartedAt, &c.AnsweredAt, &c.EndedAt, &c.UpdatedAt, &c.HoldAt, &c.CauseAt, &c.AnswerAt, &c.RuleAt} {
			if !p.IsZero() {
				*p = p.UTC()
			}
		}
		for _, s := range []*[]string{&c.Users, &c.UserIDs, &c.FullUserIDs} {
			if len(*s) == 0 {
				*s = nil
			}
		}
		if len(c.Presses) == 0 {
			c.Presses = nil
		}
		for i := range c.Presses {
			c.Presses[i].At = c.Presses[i].At.UTC()
		}
		return c
	}
	if want.JourneyID == "" { // the domain's reference says what the store computes
		want.JourneyID = reference.JourneyID(want)
	}
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		tb.Errorf("call\n got  %+v\n want %+v", g, w)
	}
}

// TestApplyConcurrentWithBadEvent writes many events at once, so that they
// share transactions, with one the database refuses (a NUL byte): that one
// fails alone with ErrInvalidEvent, every other is stored exactly once.
func TestApplyConcurrentWithBadEvent(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	const n = 200
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ev := callEvents(fmt.Sprintf("batch-%03d", i))[0]
			if i == n/2 {
				ev.Update.From = "49\x0030"
			}
			_, errs[i] = st.Apply(ctx, ev)
		})
	}
	wg.Wait()
	for i, err := range errs {
		switch {
		case i == n/2 && !errors.Is(err, callstate.ErrInvalidEvent):
			t.Errorf("bad event: %v, want ErrInvalidEvent", err)
		case i != n/2 && err != nil:
			t.Errorf("event %d: %v", i, err)
		}
	}
	for i := range n {
		_, err := st.Call(ctx, callstate.SourceSipgate, fmt.Sprintf("batch-%03d", i))
		if (err == nil) == (i == n/2) {
			t.Errorf("call %d stored: %v", i, err == nil)
		}
	}
}
