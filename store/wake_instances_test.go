package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// TestPushThrottleShared: a push service's wait recorded through one
// instance is read by another; a later wait recorded stays over an earlier
// one; an ended wait is forgotten with the old pushes. (That the service's
// instances then hold back is TestWake/ThrottledByRetryAfter, in
// cmd/callstate.)
func TestPushThrottleShared(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	const origin = "https://push.example.net"
	if none, err := b.PushesHeldUntil(ctx, origin); err != nil || !none.IsZero() {
		t.Fatalf("before any wait: %s, %v", none, err)
	}
	until := time.Now().Add(time.Minute).Truncate(time.Microsecond)
	if err := a.HoldPushes(ctx, origin, until); err != nil {
		t.Fatal(err)
	}
	if held, err := b.PushesHeldUntil(ctx, origin); err != nil || !held.Equal(until) {
		t.Fatalf("the other instance reads %s, %v; want %s", held, err, until)
	}
	if err := b.HoldPushes(ctx, origin, until.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if held, _ := a.PushesHeldUntil(ctx, origin); !held.Equal(until) {
		t.Errorf("an earlier wait replaced a later one: %s, was %s", held, until)
	}
	if n, err := a.ForgetWake(ctx, until.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("forget: %d rows, %v", n, err)
	}
	if none, err := b.PushesHeldUntil(ctx, origin); err != nil || !none.IsZero() {
		t.Fatalf("after the wait ended and was forgotten: %s, %v", none, err)
	}
}

// TestWakeClearLost: a clear recorded by the wake-up's read of the feed
// and never marked sent (its instance died first) is taken once, by one
// of two instances, to be sent again; one marked sent is not.
func TestWakeClearLost(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	<-a.Ready()
	if _, err := a.AddDevice(ctx, wakeDevice("d", "w0", ""), hash("d"), nil); err != nil {
		t.Fatal(err)
	}
	targets, err := a.WakeTargets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range []string{"lost", "sent"} {
		if ok, err := a.ClaimWakePush(ctx, j, j+"-leg", []string{"w0"}, ""); !ok || err != nil {
			t.Fatalf("claim %s: %v %v", j, ok, err)
		}
		for i, u := range []callstate.Update{
			{Key: j + "-leg", CallID: j + "-leg", OrigCallID: j, Direction: callstate.DirectionIn, From: "4917", To: "4930",
				UserIDs: []string{"w0"}, State: callstate.StateRinging},
			{Key: j + "-leg", CallID: j + "-leg", State: callstate.StateAnswered, AnsweredBy: "Alice", Answering: "4930"},
		} {
			ev := callstate.Event{Source: callstate.SourceSipgate, Type: []string{"newCall", "answer"}[i], DedupKey: fmt.Sprint(j, i),
				ReceivedAt: t0.Add(time.Duration(i) * time.Second), Payload: []byte("x"), Update: u}
			if _, err := a.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.SyncFeed(ctx); err != nil {
		t.Fatal(err)
	}
	var clears []string
	for range 2 {
		ps, _, err := a.WakeFeed(ctx, targets)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			clears = append(clears, p.Message.Journey)
		}
	}
	if len(clears) != 2 {
		t.Fatalf("clears %v, want lost and sent", clears)
	}
	if err := a.ClearSent(ctx, "sent"); err != nil {
		t.Fatal(err)
	}
	if ps, err := b.UnsentClears(ctx, time.Now().Add(-time.Minute), 10); err != nil || len(ps) != 0 {
		t.Fatalf("clears recorded just now are not lost yet: %+v %v", ps, err)
	}
	var (
		mu    sync.Mutex
		taken []callstate.WakePush
		wg    sync.WaitGroup
	)
	for _, st := range []*store.Store{a, b, a, b} {
		wg.Go(func() {
			ps, err := st.UnsentClears(ctx, time.Now().Add(time.Minute), 10)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			taken = append(taken, ps...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(taken) != 1 || taken[0].Message.Journey != "lost" || taken[0].Message.Kind != callstate.WakeClear ||
		taken[0].Message.Call != "lost-leg" || taken[0].Message.Reason != callstate.ClearAnswered || len(taken[0].UserIDs) != 1 {
		t.Fatalf("taken to send again: %+v, want the clear of lost once", taken)
	}
}
