package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

// messyCall returns the events of one call with everything that can make
// a merge depend on order: DTMF presses, one of them a copy of the same
// request, hold stated back and forth, a hang-up received before the
// answer, two causes, a first guess of the extension and who answered.
func messyCall(r *rand.Rand, key string) []callstate.Event {
	var evs []callstate.Event
	n := 0
	add := func(typ string, ms int, u callstate.Update) {
		u.Key = key
		n++
		evs = append(evs, callstate.Event{
			Source: callstate.SourceSipgate, Type: typ, DedupKey: fmt.Sprintf("%s/%d", key, n),
			ReceivedAt: t0.Add(time.Duration(ms) * time.Millisecond), Payload: []byte(typ), Update: u,
		})
	}
	add("newCall", r.IntN(50), callstate.Update{CallID: key, Direction: callstate.DirectionIn, From: "491701", To: "4930",
		Users: []string{"Alice", "Bob"}, UserIDs: []string{"w0", "w1"}, Extension: "w0", State: callstate.StateRinging,
		Rule: []string{"", "block list", "vip to owner"}[r.IntN(3)]})
	if r.IntN(3) == 0 { // a newCall of the same call answered after a reload by another rule: the earliest stays
		add("newCall", r.IntN(50), callstate.Update{CallID: key, State: callstate.StateRinging, Rule: []string{"after hours", "vip to owner"}[r.IntN(2)]})
	}
	answered := r.IntN(3) > 0 // else the answer was lost
	if answered {
		add("answer", 1000+r.IntN(5000), callstate.Update{CallID: key, Extension: fmt.Sprintf("w%d", r.IntN(2)), PinExtension: true,
			AnsweredBy: "Bob", Answering: "4930", State: callstate.StateAnswered})
	}
	for i := range 2 + r.IntN(3) {
		d := string("0123456789*#"[r.IntN(12)])
		ms := 2000 + 1000*i + r.IntN(3000)
		add("dtmf", ms, callstate.Update{DTMF: d, DTMFDigest: "d" + d})
		if r.IntN(3) == 0 {
			add("dtmf", ms+r.IntN(2500), callstate.Update{DTMF: d, DTMFDigest: "d" + d})
		}
	}
	for range r.IntN(4) * b2i(answered) { // hold, said of an answered call
		add("dialog", 3000+r.IntN(3000), callstate.Update{State: callstate.StateAnswered, OnHold: ptr(r.IntN(2) == 0)})
	}
	if r.IntN(4) > 0 { // else the hangup was lost
		add("hangup", 4000+r.IntN(4000), callstate.Update{Cause: "normalClearing", State: callstate.StateEnded})
	}
	if r.IntN(2) == 0 {
		add("hangup", 4000+r.IntN(4000), callstate.Update{Cause: "cancel", Answering: "4930", State: callstate.StateEnded})
	}
	// What reconciliation may add: a timeout end (a guess), and ends
	// learned from sipgate's history with and without an answer, stating
	// their own times, learned at any time.
	if r.IntN(2) == 0 {
		add("timeout", 1_800_000+r.IntN(60_000), callstate.Update{State: callstate.StateEnded, Cause: callstate.CauseTimeout, Guessed: true})
	}
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for range r.IntN(3) {
		u := callstate.Update{Learned: true, State: callstate.StateEnded, StartedAt: ms(r.IntN(100)),
			Cause: []string{"normalClearing", "noAnswer", "busy", "cancel"}[r.IntN(4)], EndedAt: ms(6000 + r.IntN(4000))}
		if r.IntN(2) == 0 {
			u.AnsweredAt = ms(500 + r.IntN(5000))
		}
		add("reconciled", r.IntN(3_000_000), u)
	}
	return evs
}

// learnedCall returns the events of a call known from sipgate's history
// only (its webhooks never came), and sometimes a late webhook.
func learnedCall(r *rand.Rand, key string) []callstate.Event {
	var evs []callstate.Event
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for i := range 1 + r.IntN(2) {
		u := callstate.Update{Key: key, CallID: key, Direction: callstate.DirectionIn, From: "491701", To: "4930",
			Learned: true, State: callstate.StateEnded, StartedAt: ms(r.IntN(100)), Cause: "normalClearing", EndedAt: ms(6000 + r.IntN(4000))}
		if r.IntN(2) == 0 {
			u.AnsweredAt = ms(500 + r.IntN(5000))
		}
		evs = append(evs, callstate.Event{Source: callstate.SourceSipgate, Type: "reconciled", DedupKey: fmt.Sprintf("%s/r%d", key, i),
			ReceivedAt: ms(3_000_000 + r.IntN(100_000)), Payload: []byte("reconciled"), Update: u})
	}
	if r.IntN(2) == 0 {
		evs = append(evs, callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: key + "/n",
			ReceivedAt: ms(r.IntN(200)), Payload: []byte("newCall"),
			Update: callstate.Update{Key: key, CallID: key, Direction: callstate.DirectionIn, From: "491701", To: "4930", State: callstate.StateRinging}})
	}
	return evs
}

// TestApplyOrderIndependent: a call's events in any order, split across
// any number of concurrent appliers (as several instances and their
// spools would apply them), some of them applied twice, give the row that
// callstate.Call.Apply gives: the same row whatever the order.
func TestApplyOrderIndependent(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := rand.New(rand.NewPCG(7, 8))
	type call struct {
		key  string
		evs  []callstate.Event
		want callstate.Call
	}
	var calls []call
	var all []callstate.Event
	for i := range 200 {
		key := fmt.Sprintf("messy-%03d", i)
		evs := messyCall(r, key)
		if i%5 == 0 {
			evs = learnedCall(r, key)
		}
		var want callstate.Call
		for _, ev := range evs {
			want = want.Apply(ev.Update, ev.ReceivedAt)
		}
		want.Source = callstate.SourceSipgate
		calls = append(calls, call{key, evs, want})
		all = append(all, evs...)
		for range r.IntN(2) { // applied twice, by another applier
			all = append(all, evs[r.IntN(len(evs))])
		}
	}
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	appliers := 1 + r.IntN(6)
	queues := make([][]callstate.Event, appliers)
	for _, ev := range all {
		k := r.IntN(appliers)
		queues[k] = append(queues[k], ev)
	}
	var wg sync.WaitGroup
	errs := make(chan error, appliers)
	for _, q := range queues {
		wg.Go(func() {
			for _, ev := range q {
				if _, err := st.Apply(ctx, ev); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d events of %d calls through %d appliers", len(all), len(calls), appliers)
	for _, c := range calls {
		got, err := st.Call(ctx, callstate.SourceSipgate, c.key)
		if err != nil {
			t.Fatal(err)
		}
		c.want.ID = got.ID
		assertCall(t, got, c.want)
		if !got.AnsweredAt.IsZero() && (got.AnsweredAt.Before(got.StartedAt) || (!got.EndedAt.IsZero() && got.EndedAt.Before(got.AnsweredAt))) {
			t.Errorf("%s: started %v answered %v ended %v", c.key, got.StartedAt, got.AnsweredAt, got.EndedAt)
		}
	}
}

// TestRecompute: a row computed again from the journal alone is the row
// the writes made; a row spoiled by hand is put right.
func TestRecompute(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 20 {
		key := fmt.Sprintf("re-%02d", i)
		evs := messyCall(r, key)
		r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		for _, ev := range evs {
			if _, err := st.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		want, err := st.Call(ctx, callstate.SourceSipgate, key)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := st.ExecForTest(ctx, `UPDATE call_state SET dtmf = 'x', state = 'ringing', answered_at = NULL WHERE call_key = '`+key+`'`); err != nil {
				t.Fatal(err)
			}
		}
		got, err := st.Recompute(ctx, callstate.SourceSipgate, key)
		if err != nil {
			t.Fatal(err)
		}
		assertCall(t, got, want)
		stored, err := st.Call(ctx, callstate.SourceSipgate, key)
		if err != nil {
			t.Fatal(err)
		}
		assertCall(t, stored, want)
	}
	if _, err := st.Recompute(ctx, callstate.SourceSipgate, "no-such-call"); !errors.Is(err, callstate.ErrNotFound) {
		t.Errorf("Recompute of an unknown call: %v, want ErrNotFound", err)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
