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

// applyAll applies events and fails the test on any error.
func applyAll(tb testing.TB, st *store.Store, evs ...callstate.Event) {
	tb.Helper()
	for _, ev := range evs {
		if _, err := st.Apply(context.Background(), ev); err != nil {
			tb.Fatalf("Apply %s: %v", ev.DedupKey, err)
		}
	}
}

// sipEvent is a SIP dialog event for extension ext's call key.
func sipEvent(key, ext string, state callstate.State, at time.Time, hold *bool) callstate.Event {
	return callstate.Event{
		Source: callstate.SourceSIP, Type: "dialog", DedupKey: fmt.Sprintf("%s/%s/%v", key, state, hold != nil && *hold),
		ReceivedAt: at, Payload: []byte("<dialog-info/>"),
		Update: callstate.Update{Key: key, CallID: key, Extension: ext, Direction: callstate.DirectionIn,
			From: "sip:9@pbx", To: "sip:" + ext + "@pbx", State: state, OnHold: hold},
	}
}

func TestListCalls(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	// 5 ended sipgate calls, 1 ringing sipgate call, 2 SIP calls (one ended).
	for i := range 5 {
		applyAll(t, st, callEvents(fmt.Sprintf("sg%d", i))...)
	}
	applyAll(t, st, callEvents("live")[0])
	applyAll(t, st, sipEvent("s1", "100", callstate.StateAnswered, t0, nil),
		sipEvent("s2", "101", callstate.StateRinging, t0, nil), sipEvent("s2", "101", callstate.StateEnded, t0.Add(time.Minute), nil))

	ids := func(cs []callstate.Call) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Key)
		}
		return out
	}
	tests := []struct {
		name string
		f    callstate.CallFilter
		want []string
	}{
		{"All", callstate.CallFilter{}, []string{"s2", "s1", "live", "sg4", "sg3", "sg2", "sg1", "sg0"}},
		{"Active", callstate.CallFilter{Active: true}, []string{"s1", "live"}},
		{"Source", callstate.CallFilter{Source: callstate.SourceSIP}, []string{"s2", "s1"}},
		{"Extension", callstate.CallFilter{Extension: "101"}, []string{"s2"}},
		{"SipgateUser", callstate.CallFilter{Extension: "w0"}, []string{"live"}},
		{"Since", callstate.CallFilter{Since: t0.Add(30 * time.Second)}, []string{"s2"}},
		{"ActiveAndSource", callstate.CallFilter{Active: true, Source: callstate.SourceSipgate}, []string{"live"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, next, err := st.ListCalls(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(ids(cs)) != fmt.Sprint(tt.want) || next != "" {
				t.Fatalf("got %v next %q, want %v", ids(cs), next, tt.want)
			}
		})
	}
	t.Run("Paging", func(t *testing.T) {
		var got []string
		f := callstate.CallFilter{Limit: 3}
		pages := 0
		for {
			cs, next, err := st.ListCalls(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			got = append(got, ids(cs)...)
			if next == "" {
				break
			}
			f.Cursor = next
		}
		if pages != 3 || fmt.Sprint(got) != fmt.Sprint(tests[0].want) {
			t.Fatalf("%d pages %v", pages, got)
		}
	})
	t.Run("ErrBadCursor", func(t *testing.T) {
		for _, c := range []string{"x", "%%%", "YWJj"} {
			if _, _, err := st.ListCalls(ctx, callstate.CallFilter{Cursor: c}); !errors.Is(err, store.ErrBadCursor) {
				t.Errorf("cursor %q: %v", c, err)
			}
		}
	})
}

func TestCallByID(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	applyAll(t, st, callEvents("k")...)
	cs, _, err := st.ListCalls(ctx, callstate.CallFilter{})
	if err != nil || len(cs) != 1 {
		t.Fatal(cs, err)
	}
	c, j, err := st.CallByID(ctx, cs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.Key != "k" || len(j) != 4 || j[0].Type != "newCall" || j[3].Type != "hangup" {
		t.Fatalf("call %+v journal %+v", c, j)
	}
	if _, _, err := st.CallByID(ctx, cs[0].ID+1000); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing call: %v", err)
	}
}

func TestLampStatuses(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	if err := st.AddExtensions(ctx, []string{"100", "101", "102"}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"100", "101"} {
		if err := st.SetSubscription(ctx, e, callstate.SubscriptionActive, ""); err != nil {
			t.Fatal(err)
		}
	}
	applyAll(t, st, sipEvent("s1", "100", callstate.StateAnswered, t0, ptr(true)))
	ev := callEvents("g")[0] // ringing, offered to w0 (Alice)
	ev.Update.Users, ev.Update.UserIDs, ev.Update.Extension = []string{"Alice", "Bob"}, []string{"w0", "w1"}, ""
	applyAll(t, st, ev)
	applyAll(t, st, callEvents("done")...) // w1 answered and hung up
	ls, err := st.LampStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range ls {
		got[string(l.Source)+"/"+l.Extension+"/"+l.Name] = l.Lamp
	}
	want := map[string]string{
		"sip/100/": "hold", "sip/101/": "idle", "sip/102/": "unavailable",
		"sipgate/w0/Alice": "ringing", "sipgate/w1/Bob": "ringing",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("lamps %v, want %v", got, want)
	}
}

func TestCallsChanged(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	applyAll(t, st, callEvents("a")[0])
	seq, err := st.LastChange(ctx)
	if err != nil || seq == 0 {
		t.Fatal(seq, err)
	}
	applyAll(t, st, callEvents("b")[0], callEvents("a")[1])
	cs, err := st.CallsChangedAfter(ctx, seq, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Call.Key != "b" || cs[1].Call.Key != "a" || cs[1].Call.State != callstate.StateAnswered ||
		cs[0].Seq <= seq || cs[1].Seq <= cs[0].Seq {
		t.Fatalf("changed after %d: %+v", seq, cs)
	}
	byID, err := st.CallsByID(ctx, []int64{cs[1].Call.ID, 99999})
	if err != nil || len(byID) != 1 || byID[0].Seq != cs[1].Seq {
		t.Fatalf("by id: %+v %v", byID, err)
	}
	recent, err := st.RecentCalls(ctx, 1)
	if err != nil || len(recent) != 2 { // both active
		t.Fatalf("recent: %+v %v", recent, err)
	}
}
