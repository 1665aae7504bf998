package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// lampWatch records what FollowLamps gives.
type lampWatch struct {
	mu      sync.Mutex
	lamps   map[string]string // extension -> lamp
	changes []string          // extension:previous>lamp of every lamp.changed
}

func (w *lampWatch) fn(ls []callstate.LampStatus, evs []callstate.FeedEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lamps = map[string]string{}
	for _, l := range ls {
		w.lamps[l.Extension] = l.Lamp
	}
	for _, e := range evs {
		if e.Type == callstate.EventLampChanged {
			w.changes = append(w.changes, e.Lamp.Extension+":"+e.Previous+">"+e.Lamp.Lamp)
		}
	}
}

func (w *lampWatch) wait(tb testing.TB, ext, want string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		got, ok := w.lamps[ext]
		w.mu.Unlock()
		if got == want || (want == "" && !ok) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("lamp of %s is %q, want %q", ext, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFollowLamps: a reader of the feed's lamps, started on one instance,
// sees a call written by another instance ring a user's lamp and the
// hang-up put it back to idle, each change once, with no lamp of its own.
func TestFollowLamps(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url := storetest.NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	// A lamp the feed already told before the reader starts.
	if _, err := b.Apply(ctx, sg("f0", "newCall", 0, callstate.Update{Direction: "in", From: "4917", To: "4930",
		UserIDs: []string{"u1"}, Users: []string{"Ulla"}, Extension: "u1", State: callstate.StateRinging})); err != nil {
		t.Fatal(err)
	}
	syncFeed(t, b)
	w := &lampWatch{}
	wake := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() { done <- a.FollowLamps(ctx, wake, w.fn) }()
	w.wait(t, "u1", "ringing")
	if _, err := b.Apply(ctx, sg("f1", "newCall", 1, callstate.Update{Direction: "in", From: "4917", To: "4930",
		UserIDs: []string{"u2"}, Users: []string{"Uwe"}, Extension: "u2", State: callstate.StateRinging})); err != nil {
		t.Fatal(err)
	}
	syncFeed(t, b)
	w.wait(t, "u2", "ringing") // no nudge: read within a second
	for _, id := range []string{"f0", "f1"} {
		if _, err := b.Apply(ctx, sg(id, "hangup", 5, callstate.Update{Cause: "cancel", State: callstate.StateEnded})); err != nil {
			t.Fatal(err)
		}
	}
	syncFeed(t, b)
	wake <- struct{}{}
	w.wait(t, "u1", "idle")
	w.wait(t, "u2", "idle")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("FollowLamps returned %v", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	slices.Sort(w.changes)
	if want := []string{"u1:ringing>idle", "u2:>ringing", "u2:ringing>idle"}; !slices.Equal(w.changes, want) {
		t.Errorf("lamp changes %v, want %v", w.changes, want)
	}
}

// TestFollowFeedFellBehind: a reader whose position was deleted by
// retention starts again from its snapshot, then gets every later event
// once, in order; an error of its own ends it.
func TestFollowFeedFellBehind(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := openStore(t)
	for i := range 3 {
		if _, err := st.Apply(ctx, sg(fmt.Sprintf("old%d", i), "newCall", 0, callstate.Update{State: callstate.StateRinging})); err != nil {
			t.Fatal(err)
		}
	}
	syncFeed(t, st)
	if n, err := st.ForgetFeed(ctx, time.Now().Add(time.Hour)); err != nil || n == 0 {
		t.Fatalf("forget: %d %v", n, err)
	}
	var (
		mu     sync.Mutex
		starts int
		got    []int64
		keys   []string
	)
	stop := errors.New("enough")
	done := make(chan error, 1)
	go func() {
		done <- st.FollowFeed(ctx, store.FeedFollow{
			Types: []string{callstate.EventRinging},
			Poll:  20 * time.Millisecond,
			Start: func(ctx context.Context) (int64, error) {
				mu.Lock()
				defer mu.Unlock()
				starts++
				if starts == 1 {
					return 0, nil // below the floor now
				}
				w, err := st.FeedWindow(ctx)
				return w.Head, err
			},
			Apply: func(_ context.Context, evs []callstate.FeedEvent) error {
				mu.Lock()
				defer mu.Unlock()
				for _, e := range evs {
					got = append(got, e.ID)
					keys = append(keys, e.Call.Key)
				}
				if len(keys) >= 3 {
					return stop
				}
				return nil
			},
		})
	}()
	time.Sleep(100 * time.Millisecond)
	for i := range 3 {
		if _, err := st.Apply(ctx, sg(fmt.Sprintf("new%d", i), "newCall", 0, callstate.Update{State: callstate.StateRinging})); err != nil {
			t.Fatal(err)
		}
		syncFeed(t, st)
	}
	select {
	case err := <-done:
		if !errors.Is(err, stop) {
			t.Errorf("FollowFeed returned %v, want the Apply's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FollowFeed did not end")
	}
	mu.Lock()
	defer mu.Unlock()
	if starts != 2 {
		t.Errorf("started %d times, want 2 (again after falling behind)", starts)
	}
	if !slices.Equal(keys, []string{"new0", "new1", "new2"}) || !slices.IsSorted(got) {
		t.Errorf("events %v ids %v, want new0..new2 once in id order", keys, got)
	}
}
