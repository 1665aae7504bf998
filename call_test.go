package callstate_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func ptr[T any](v T) *T { return &v }

// A whole sipgate call: newCall, answer, dtmf, hangup.
var (
	newCall = callstate.Update{Key: "c1", CallID: "c1", Direction: callstate.DirectionIn, From: "491701", To: "4930", UserIDs: []string{"w0"}, Extension: "w0", State: callstate.StateRinging}
	answer  = callstate.Update{Key: "c1", CallID: "c1", Extension: "w1", PinExtension: true, AnsweredBy: "Bob", Answering: "4930", State: callstate.StateAnswered}
	dtmf    = callstate.Update{Key: "c1", DTMF: "42"}
	hangup  = callstate.Update{Key: "c1", Cause: "normalClearing", State: callstate.StateEnded}
)

type step struct {
	u  callstate.Update
	at time.Time
}

func fold(steps ...step) callstate.Call {
	var c callstate.Call
	for _, s := range steps {
		c = c.Apply(s.u, s.at)
	}
	return c
}

func TestApply(t *testing.T) {
	want := callstate.Call{
		Key: "c1", CallID: "c1", Extension: "w1", Direction: callstate.DirectionIn,
		From: "491701", To: "4930", UserIDs: []string{"w0"}, AnsweredBy: "Bob", Answering: "4930",
		State: callstate.StateEnded, Cause: "normalClearing", DTMF: "42",
		StartedAt: at(0), AnsweredAt: at(2), EndedAt: at(9), UpdatedAt: at(9),
		ExtensionPinned: true, CauseAt: at(9), Presses: []callstate.Press{{At: at(5), Digits: "42"}},
		EndRank: callstate.RankStated, AnswerRank: callstate.RankStated, AnswerAt: at(2),
	}
	tests := []struct {
		name  string
		steps []step
		want  callstate.Call
	}{
		{"InOrder", []step{{newCall, at(0)}, {answer, at(2)}, {dtmf, at(5)}, {hangup, at(9)}}, want},
		{"Repeated", []step{{newCall, at(0)}, {newCall, at(0)}, {answer, at(2)}, {answer, at(2)}, {dtmf, at(5)}, {dtmf, at(5)}, {hangup, at(9)}, {hangup, at(9)}}, want},
		{"HangupFirst", []step{{hangup, at(9)}, {dtmf, at(5)}, {answer, at(2)}, {newCall, at(0)}}, want},
		{"AnswerBeforeNewCall", []step{{answer, at(2)}, {newCall, at(0)}, {dtmf, at(5)}, {hangup, at(9)}}, want},
		{"NeverBackToRinging", []step{{newCall, at(0)}, {hangup, at(1)}, {newCall, at(3)}}, callstate.Call{
			Key: "c1", CallID: "c1", Extension: "w0", Direction: callstate.DirectionIn, From: "491701", To: "4930",
			UserIDs: []string{"w0"}, State: callstate.StateEnded, Cause: "normalClearing",
			StartedAt: at(0), EndedAt: at(1), UpdatedAt: at(3), CauseAt: at(1), EndRank: callstate.RankStated,
		}},
		{"HangupReceivedBeforeAnswer", []step{{newCall, at(0)}, {hangup, at(4)}, {answer, at(5)}}, callstate.Call{
			Key: "c1", CallID: "c1", Extension: "w1", ExtensionPinned: true, Direction: callstate.DirectionIn,
			From: "491701", To: "4930", UserIDs: []string{"w0"}, AnsweredBy: "Bob", Answering: "4930",
			State: callstate.StateEnded, Cause: "normalClearing", CauseAt: at(4),
			StartedAt: at(0), AnsweredAt: at(4), EndedAt: at(4), UpdatedAt: at(5),
			EndRank: callstate.RankStated, AnswerRank: callstate.RankStated, AnswerAt: at(5),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fold(tt.steps...)
			if !equalCalls(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestApplyHold(t *testing.T) {
	c := callstate.Call{}.Apply(callstate.Update{Key: "d", State: callstate.StateAnswered, OnHold: ptr(true)}, at(1))
	if !c.OnHold {
		t.Fatal("hold not set")
	}
	if c = c.Apply(callstate.Update{Key: "d", State: callstate.StateAnswered}, at(2)); !c.OnHold {
		t.Fatal("an update silent on hold cleared it")
	}
	if c = c.Apply(callstate.Update{Key: "d", State: callstate.StateAnswered, OnHold: ptr(false)}, at(3)); c.OnHold {
		t.Fatal("hold not cleared")
	}
	c = c.Apply(callstate.Update{Key: "d", OnHold: ptr(true)}, at(4))
	if c = c.Apply(callstate.Update{Key: "d", State: callstate.StateEnded}, at(5)); c.OnHold {
		t.Fatal("an ended call is on hold")
	}
}

func TestState(t *testing.T) {
	for _, s := range []callstate.State{callstate.StateUnknown, callstate.StateRinging, callstate.StateAnswered, callstate.StateEnded} {
		got, err := callstate.ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := callstate.ParseState("busy"); !errors.Is(err, callstate.ErrUnknownState) {
		t.Errorf("ParseState(busy) error = %v", err)
	}
	if got := callstate.StateEnded.Advance(callstate.StateRinging); got != callstate.StateEnded {
		t.Errorf("ended advanced to %v", got)
	}
}

func TestEventValidate(t *testing.T) {
	ok := callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: "k", ReceivedAt: t0, Update: newCall}
	tests := []struct {
		name   string
		mutate func(*callstate.Event)
	}{
		{"ErrSource", func(e *callstate.Event) { e.Source = "fax" }},
		{"ErrType", func(e *callstate.Event) { e.Type = "" }},
		{"ErrDedupKey", func(e *callstate.Event) { e.DedupKey = "" }},
		{"ErrCallKey", func(e *callstate.Event) { e.Update.Key = "" }},
		{"ErrReceivedAt", func(e *callstate.Event) { e.ReceivedAt = time.Time{} }},
		{"ErrState", func(e *callstate.Event) { e.Update.State = 9 }},
		{"ErrDirection", func(e *callstate.Event) { e.Update.Direction = "sideways" }},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid event: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ok
			tt.mutate(&e)
			if err := e.Validate(); !errors.Is(err, callstate.ErrInvalidEvent) {
				t.Errorf("Validate() = %v, want ErrInvalidEvent", err)
			}
		})
	}
}

func equalCalls(a, b callstate.Call) bool { return reflect.DeepEqual(a, b) }

// TestRuleFirstWins: the rule of the earliest event that names one stays,
// whatever order the events come in; on a tie the greater name wins.
func TestRuleFirstWins(t *testing.T) {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) } // finer than the file's at
	tests := []struct {
		name  string
		steps []step
		want  string
	}{
		{"OK", []step{{callstate.Update{Key: "c", Rule: "vip"}, at(0)}}, "vip"},
		{"EarliestWins", []step{{callstate.Update{Key: "c", Rule: "later"}, at(10)}, {callstate.Update{Key: "c", Rule: "first"}, at(5)}}, "first"},
		{"TieGreater", []step{{callstate.Update{Key: "c", Rule: "a"}, at(5)}, {callstate.Update{Key: "c", Rule: "b"}, at(5)}}, "b"},
		{"NoRuleKeeps", []step{{callstate.Update{Key: "c", Rule: "vip"}, at(5)}, {callstate.Update{Key: "c", State: callstate.StateEnded}, at(1)}}, "vip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fold(tt.steps...).Rule; got != tt.want {
				t.Errorf("rule %q, want %q", got, tt.want)
			}
			rev := slices.Clone(tt.steps)
			slices.Reverse(rev)
			if got := fold(rev...).Rule; got != tt.want {
				t.Errorf("reversed: rule %q, want %q", got, tt.want)
			}
		})
	}
}
