package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
)

func TestForget(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	// Calls 0-4 ended at t0+9s (callEvents), 5 is still ringing; call 3 is
	// from another number.
	for i := range 6 {
		evs := callEvents(fmt.Sprintf("ret-%d", i))
		if i == 5 {
			evs = evs[:1]
		}
		for _, ev := range evs {
			if i == 3 {
				ev.Update.From = "4915199999"
			}
			if _, err := st.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	calls, events, err := st.Forget(ctx, t0) // nothing ended before t0
	if err != nil || calls != 0 || events != 0 {
		t.Fatalf("Forget before any end: %d calls, %d events, %v", calls, events, err)
	}
	calls, events, err = st.ForgetNumber(ctx, "4915199999")
	if err != nil || calls != 1 || events != 4 {
		t.Fatalf("ForgetNumber: %d calls, %d events, %v; want 1 call of 4 events", calls, events, err)
	}
	if _, err := st.Call(ctx, callstate.SourceSipgate, "ret-3"); !errors.Is(err, callstate.ErrNotFound) {
		t.Errorf("forgotten call still there: %v", err)
	}
	if j, _ := st.Journal(ctx, callstate.SourceSipgate, "ret-3"); len(j) != 0 {
		t.Errorf("forgotten call's journal still holds %d events", len(j))
	}
	calls, events, err = st.Forget(ctx, t0.Add(time.Minute))
	if err != nil || calls != 4 || events != 16 {
		t.Fatalf("Forget: %d calls, %d events, %v; want the 4 ended calls and their 16 events", calls, events, err)
	}
	if _, err := st.Call(ctx, callstate.SourceSipgate, "ret-5"); err != nil {
		t.Errorf("the ringing call was forgotten: %v", err)
	}
	if _, _, err := st.ForgetNumber(ctx, " "); !errors.Is(err, store.ErrBadNumber) {
		t.Errorf("ForgetNumber of a blank number: %v, want ErrBadNumber", err)
	}
}
