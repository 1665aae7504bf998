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
	calls, err := st.Forget(ctx, t0) // nothing ended before t0
	if err != nil || calls != 0 {
		t.Fatalf("Forget before any end: %d calls, %v", calls, err)
	}
	calls, events, err := st.ForgetNumber(ctx, "4915199999")
	if err != nil || calls != 1 || events != 4 {
		t.Fatalf("ForgetNumber: %d calls, %d events, %v; want 1 call of 4 events", calls, events, err)
	}
	if _, err := st.Call(ctx, callstate.SourceSipgate, "ret-3"); !errors.Is(err, callstate.ErrNotFound) {
		t.Errorf("forgotten call still there: %v", err)
	}
	if j, _ := st.Journal(ctx, callstate.SourceSipgate, "ret-3"); len(j) != 1 || j[0].Type != "erased" || len(j[0].Payload) != 0 {
		t.Errorf("forgotten call's journal: %+v, want one empty erased entry", j)
	}
	// No trace of the number anywhere.
	n, err := st.ExecForTest(ctx, `SELECT 1 FROM call_event WHERE position('4915199999'::bytea in payload) > 0
		OR position('4915199999'::bytea in coalesce(call_update, ''::bytea)) > 0
		UNION ALL SELECT 1 FROM call_state WHERE '4915199999' IN (from_party, to_party, answering_number, diversion)
		UNION ALL SELECT 1 FROM call_event_key WHERE dedup_key LIKE 'ret-3/%'`)
	if err != nil || n != 0 {
		t.Errorf("%d rows still hold the number or the call's events, %v", n, err)
	}
	calls, err = st.Forget(ctx, t0.Add(time.Minute))
	if err != nil || calls != 4 {
		t.Fatalf("Forget: %d calls, %v; want the 4 ended calls", calls, err)
	}
	// Their journals go with their days' partitions (DropJournalBefore).
	if j, _ := st.Journal(ctx, callstate.SourceSipgate, "ret-0"); len(j) != 4 {
		t.Errorf("journal of a forgotten call: %d events, want its 4 until its day is dropped", len(j))
	}
	if _, err := st.Call(ctx, callstate.SourceSipgate, "ret-5"); err != nil {
		t.Errorf("the ringing call was forgotten: %v", err)
	}
	if _, _, err := st.ForgetNumber(ctx, " "); !errors.Is(err, store.ErrBadNumber) {
		t.Errorf("ForgetNumber of a blank number: %v, want ErrBadNumber", err)
	}
}
