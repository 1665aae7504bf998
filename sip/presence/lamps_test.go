package presence

import (
	"testing"

	"github.com/callstate/callstate"
)

func TestResolver(t *testing.T) {
	views := buildViews([]callstate.LampStatus{
		{Source: callstate.SourceSIP, Extension: "100"},
		{Source: callstate.SourceSipgate, Extension: "w0", Name: "Alice Doe"},
		{Source: callstate.SourceSipgate, Extension: "w1", Name: "Bob"},
		{Source: callstate.SourceSipgate, Extension: "w2", Name: "bob"},
		{Source: callstate.SourceSipgate, Extension: "100", Name: "Clash"},
	}, nil, "d")
	r := newResolver(views, map[string]LampRef{"+49 (211) 555-0": {callstate.SourceSipgate, "w0"}, "Reception": {callstate.SourceSIP, "100"}})
	for user, want := range map[string]string{
		"100": "sip/100", "w0": "sipgate/w0", "Alice%20Doe": "sipgate/w0", "alice.doe": "sipgate/w0", "ALICE_DOE": "sipgate/w0",
		"+492115550": "sipgate/w0", "00492115550": "sipgate/w0", "reception": "sip/100", "bob": "", "w9": "", "": "", "clash": "sipgate/100",
	} {
		ref, ok := r.resolve(user)
		got := ""
		if ok {
			got = ref.String()
		}
		if got != want {
			t.Errorf("resolve(%q) = %q, want %q", user, got, want)
		}
	}
}

// TestLampBehindItsCalls: the feed may tell a lamp's colour after a call
// event that the colour does not reflect yet (the lamps are compared from
// a snapshot, and a call's write committing meanwhile is numbered first).
// A busy lamp that counts a call which ended before it in the feed lights
// no made-up dialog; the idle lamp that follows is taken as it is; and a
// busy lamp with no calls known (presence from the PBX) still lights one.
func TestLampBehindItsCalls(t *testing.T) {
	w0 := LampRef{Source: callstate.SourceSipgate, Extension: "w0"}
	a := &Agent{lampCache: newLampCache(), byLamp: map[LampRef]map[*agentSub]struct{}{}}
	a.views[w0] = &lampView{ref: w0, lamp: callstate.LampIdle}
	call := callstate.Call{ID: 1, Source: callstate.SourceSipgate, Key: "c1", CallID: "c1", Extension: "w0",
		UserIDs: []string{"w0"}, State: callstate.StateAnswered}
	lamp := func(colour string, calls int64) callstate.FeedEvent {
		return callstate.FeedEvent{Type: callstate.EventLampChanged,
			Lamp: &callstate.LampStatus{Source: w0.Source, Extension: w0.Extension, Lamp: colour, ActiveCalls: calls}}
	}
	shown := func() []string {
		var s []string
		for _, d := range a.views[w0].shownDialogs() {
			s = append(s, d.state)
		}
		return s
	}
	ended := call
	ended.State = callstate.StateEnded
	for _, step := range []struct {
		name string
		evs  []callstate.FeedEvent
		want int // dialogs shown
	}{
		{"answered, then its lamp", []callstate.FeedEvent{{Type: callstate.EventAnswered, Call: &call}, lamp(callstate.LampBusy, 1)}, 1},
		{"ended, then a lamp from before the end", []callstate.FeedEvent{{Type: callstate.EventEnded, Call: &ended}, lamp(callstate.LampBusy, 1)}, 0},
		{"a later chunk with the same stale lamp", []callstate.FeedEvent{lamp(callstate.LampBusy, 1)}, 0},
		{"the idle lamp", []callstate.FeedEvent{lamp(callstate.LampIdle, 0)}, 0},
		{"busy from the PBX, no call known", []callstate.FeedEvent{lamp(callstate.LampBusy, 0)}, 1},
	} {
		a.applyLocked(step.evs)
		if got := shown(); len(got) != step.want {
			t.Errorf("%s: dialogs shown %v, want %d", step.name, got, step.want)
		}
	}
}
