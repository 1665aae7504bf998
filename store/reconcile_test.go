package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

func learnedEvent(key string, answered bool) callstate.Event {
	u := callstate.Update{Key: key, CallID: key, Direction: callstate.DirectionIn, From: "4915199999", To: "4930",
		Learned: true, State: callstate.StateEnded, Cause: "normalClearing",
		StartedAt: t0, EndedAt: t0.Add(60 * time.Second)}
	if answered {
		u.AnsweredAt = t0.Add(5 * time.Second)
	}
	return callstate.Event{Source: callstate.SourceSipgate, Type: "reconciled", DedupKey: "reconciled:" + key,
		ReceivedAt: t0.Add(time.Hour), Payload: []byte(`{"callId":"` + key + `"}`), Update: u}
}

// TestErasedStaysErased: a call erased by "callstate forget" is not
// created again by what the history tells of it; other calls are.
func TestErasedStaysErased(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	for _, ev := range callEvents("erase-me") {
		ev.Update.From = "4915199999"
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if calls, _, err := st.ForgetNumber(ctx, "4915199999"); err != nil || calls != 1 {
		t.Fatalf("ForgetNumber: %d calls, %v", calls, err)
	}
	erased, err := st.Erased(ctx, callstate.SourceSipgate, []string{"erase-me", "other"})
	if err != nil || !erased["erase-me"] || erased["other"] {
		t.Fatalf("Erased = %v, %v", erased, err)
	}
	forgotten, err := st.ForgottenNumbers(ctx, []string{callstate.NumberDigest("4915199999"), callstate.NumberDigest("4930")})
	if err != nil || len(forgotten) != 1 || forgotten[callstate.NumberDigest("4915199999")].IsZero() {
		t.Fatalf("ForgottenNumbers = %v, %v", forgotten, err)
	}
	applied, err := st.Apply(ctx, learnedEvent("erase-me", true))
	if err != nil || applied {
		t.Fatalf("learned event of an erased call: applied=%v, %v", applied, err)
	}
	if _, err := st.Call(ctx, callstate.SourceSipgate, "erase-me"); err == nil {
		t.Error("an erased call came back")
	}
	if applied, err := st.Apply(ctx, learnedEvent("new-one", true)); err != nil || !applied {
		t.Fatalf("learned event of an unknown call: applied=%v, %v", applied, err)
	}
	c, err := st.Call(ctx, callstate.SourceSipgate, "new-one")
	if err != nil || !c.Learned || c.State != callstate.StateEnded || !c.AnsweredAt.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("learned call %+v, %v", c, err)
	}
	j, err := st.Journal(ctx, callstate.SourceSipgate, "new-one")
	if err != nil || len(j) != 1 || j[0].Type != "reconciled" {
		t.Fatalf("journal %+v, %v", j, err)
	}
}

// TestReconcileLease: of several instances asking at once, one holds the
// lease; it renews it, the others get it once it lapses or is released.
func TestReconcileLease(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	var mu sync.Mutex
	holders := 0
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			ok, err := st.ClaimReconcile(ctx, "history", string(rune('a'+i)), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				holders++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if holders != 1 {
		t.Fatalf("%d instances hold the lease, want 1", holders)
	}
	if _, err := st.ExecForTest(ctx, `DELETE FROM reconcile_lease`); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.ClaimReconcile(ctx, "history", "a", 50*time.Millisecond); !ok {
		t.Fatal("a cannot take a free lease")
	}
	if ok, _ := st.ClaimReconcile(ctx, "history", "a", 50*time.Millisecond); !ok {
		t.Fatal("a cannot renew its lease")
	}
	if ok, _ := st.ClaimReconcile(ctx, "history", "b", time.Minute); ok {
		t.Fatal("b took a held lease")
	}
	time.Sleep(100 * time.Millisecond)
	if ok, _ := st.ClaimReconcile(ctx, "history", "b", time.Minute); !ok {
		t.Fatal("b cannot take a lapsed lease")
	}
	if err := st.ReleaseReconcile(ctx, "history", "b"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.ClaimReconcile(ctx, "history", "a", time.Minute); !ok {
		t.Fatal("a cannot take a released lease")
	}
}

func TestReconcileCursor(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	if _, _, ok, err := st.ReconcileCursor(ctx, "history"); ok || err != nil {
		t.Fatalf("a new cursor: ok=%v, %v", ok, err)
	}
	for _, at := range []time.Time{t0, t0.Add(time.Hour), t0} {
		if err := st.AdvanceReconcileCursor(ctx, "history", at); err != nil {
			t.Fatal(err)
		}
	}
	if at, adv, ok, err := st.ReconcileCursor(ctx, "history"); !ok || err != nil || !at.Equal(t0.Add(time.Hour)) || time.Since(adv) > time.Minute {
		t.Errorf("cursor %v %v %v, want it at t0+1h: it never moves back", at, ok, err)
	}
}
