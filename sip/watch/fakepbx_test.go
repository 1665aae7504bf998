package watch

import (
	"fmt"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
)

// TestFakePBX plays internal/testpbx's fakepbx-notifier.xml: a PBX that
// challenges with 401, grants 5s, sends a full then a partial document,
// expects a refresh within the dialog and then terminates the subscription.
// The subscriber must answer the digest, refresh in time, re-subscribe with
// a new Call-ID, and end the dialog the fresh (empty) full document no
// longer lists.
func TestFakePBX(t *testing.T) {
	t.Parallel()
	pbx := testpbx.RunSipp(t, "fakepbx-notifier.xml", "-m", "2", "-key", "user", "100", "-key", "password", "secret")
	st := testpbx.OpenStore(t)
	if err := st.AddExtensions(t.Context(), []string{"101"}); err != nil {
		t.Fatal(err)
	}
	startSubscriber(t, Config{
		PBXAddr: pbx.Addr(), Domain: testpbx.DefaultDomain, Store: st,
		Username: "100", Password: "secret", Realm: testpbx.DefaultDomain,
		Expires: time.Minute,
	})

	var call callstate.Call
	testpbx.WaitFor(t, 20*time.Second, func() string {
		calls := sipCalls(t, st, "101")
		if len(calls) != 1 || calls[0].State != callstate.StateEnded {
			return fmt.Sprintf("calls %+v, want one ended", calls)
		}
		call = calls[0]
		return ""
	})
	select {
	case <-pbx.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("sipp did not finish its two subscriptions")
	}
	pbx.Wait(t)

	if call.Direction != callstate.DirectionIn || call.From != "200" || call.To != "101" {
		t.Errorf("direction %q from %q to %q, want in 200 101", call.Direction, call.From, call.To)
	}
	if call.AnsweredAt.IsZero() || call.Cause != callstate.CauseVanished {
		t.Errorf("answered at %v cause %q, want answered and %q", call.AnsweredAt, call.Cause, callstate.CauseVanished)
	}
	j, err := st.Journal(t.Context(), callstate.SourceSIP, call.Key)
	if err != nil {
		t.Fatal(err)
	}
	if len(j) != 3 {
		t.Errorf("journal has %d entries, want 3 (early, confirmed, vanished)", len(j))
	}
}
