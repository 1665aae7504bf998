package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

func TestEndStuckCalls(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, storetest.NewDatabase(t), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC().Truncate(time.Second)
	apply := func(key, typ string, state callstate.State, at time.Time) {
		t.Helper()
		ev := callstate.Event{Source: callstate.SourceSipgate, Type: typ, DedupKey: key + typ, ReceivedAt: at,
			Payload: []byte(typ), Update: callstate.Update{Key: key, State: state}}
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	apply("rings-long", "newCall", callstate.StateRinging, now.Add(-40*time.Minute))
	apply("rings-short", "newCall", callstate.StateRinging, now.Add(-5*time.Minute))
	apply("talks-long", "newCall", callstate.StateRinging, now.Add(-14*time.Hour))
	apply("talks-long", "answer", callstate.StateAnswered, now.Add(-13*time.Hour))
	apply("talks-short", "newCall", callstate.StateRinging, now.Add(-2*time.Hour))
	apply("talks-short", "answer", callstate.StateAnswered, now.Add(-time.Hour))

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := endStuckOnce(ctx, st, st, now, 30*time.Minute, 12*time.Hour, log)
	if err != nil || n != 2 {
		t.Fatalf("ended %d, %v; want the call ringing 40 min and the one answered 13 h ago", n, err)
	}
	for key, stuck := range map[string]bool{"rings-long": true, "rings-short": false, "talks-long": true, "talks-short": false} {
		c, err := st.Call(ctx, callstate.SourceSipgate, key)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.State == callstate.StateEnded && c.Cause == CauseTimeout && c.EndedAt.Equal(now); got != stuck {
			t.Errorf("%s: %s, cause %q, ended %v; ended by the timeout: %v, want %v", key, c.State, c.Cause, c.EndedAt, got, stuck)
		}
	}
	j, err := st.Journal(ctx, callstate.SourceSipgate, "talks-long")
	if err != nil || len(j) != 3 || j[2].Type != "timeout" {
		t.Errorf("journal of the ended call: %+v, %v; want its timeout event last", j, err)
	}
	// Again (another instance, the next round): nothing more to end.
	if n, err := endStuckOnce(ctx, st, st, now, 30*time.Minute, 12*time.Hour, log); err != nil || n != 0 {
		t.Errorf("second round ended %d, %v", n, err)
	}
	// The hangup that comes after all replaces the guess: the webhook's
	// stated end stands (callstate.Rank).
	ev := callstate.Event{Source: callstate.SourceSipgate, Type: "hangup", DedupKey: "rings-long-hangup", ReceivedAt: now.Add(time.Minute),
		Payload: []byte("hangup"), Update: callstate.Update{Key: "rings-long", State: callstate.StateEnded, Cause: "cancel"}}
	if _, err := st.Apply(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if c, _ := st.Call(ctx, callstate.SourceSipgate, "rings-long"); c.Cause != "cancel" || !c.EndedAt.Equal(now.Add(time.Minute)) {
		t.Errorf("after a late hangup: cause %q, ended %v; want the hangup's", c.Cause, c.EndedAt)
	}
}
