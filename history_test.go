package callstate_test

import (
	"errors"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/reference"
)

func TestHistoryOutcome(t *testing.T) {
	tests := []struct {
		name string
		h    callstate.HistoryCall
		want callstate.HistoryOutcome
	}{
		{"CallStatusSuccess", callstate.HistoryCall{CallStatus: "SUCCESS", Status: "NOPICKUP"}, callstate.HistoryAnswered},
		{"CallStatusWinsOverStatus", callstate.HistoryCall{CallStatus: "MISSED", Status: "PICKUP"}, callstate.HistoryMissed},
		{"VoicemailNoMessage", callstate.HistoryCall{CallStatus: "VOICEMAIL_NO_MESSAGE"}, callstate.HistoryVoicemailed},
		{"SuccessAtTheVoicemail", callstate.HistoryCall{CallStatus: "SUCCESS", Endpoints: []callstate.HistoryEndpoint{{Type: "ROUTED", Extension: "v0"}}}, callstate.HistoryVoicemailed},
		{"MissedWithMessage", callstate.HistoryCall{Status: "NOPICKUP", Voicemail: true}, callstate.HistoryVoicemailed},
		{"Busy", callstate.HistoryCall{CallStatus: "BUSY_ON_BUSY"}, callstate.HistoryBusy},
		{"Rejected", callstate.HistoryCall{CallStatus: "REJECTED_DND"}, callstate.HistoryRejected},
		{"Failure", callstate.HistoryCall{CallStatus: "FAILURE"}, callstate.HistoryFailed},
		{"StatusPickup", callstate.HistoryCall{Status: "PICKUP"}, callstate.HistoryAnswered},
		{"StatusForward", callstate.HistoryCall{Status: "FORWARD"}, callstate.HistoryForwarded},
		{"StatusBusy", callstate.HistoryCall{Status: "BUSY"}, callstate.HistoryBusy},
		{"MissedIncoming", callstate.HistoryCall{Direction: "MISSED_INCOMING"}, callstate.HistoryMissed},
		{"NothingButTalk", callstate.HistoryCall{Direction: "INCOMING", Duration: time.Minute}, callstate.HistoryAnswered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.h.Outcome(); got != tt.want {
				t.Errorf("Outcome = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestHistoryReconcile(t *testing.T) {
	plan, _ := callstate.NewNumberPlan("DE")
	h := func(callStatus string, dur int) callstate.HistoryCall {
		return callstate.HistoryCall{ID: "100001", CallID: "c1", Source: "+4915799912345", Target: "030 1234567",
			Direction: "INCOMING", CallStatus: callstate.HistoryCall{}.CallStatus + callStatus, Created: at(0),
			LastModified: at(dur + 20), Duration: time.Duration(dur) * time.Second,
			Endpoints: []callstate.HistoryEndpoint{{Type: "ROUTED", Extension: "w0"}}}
	}
	ringing := fold(step{newCall, at(0)})
	answered := fold(step{newCall, at(0)}, step{answer, at(5)})
	ended := fold(step{newCall, at(0)}, step{answer, at(5)}, step{hangup, at(65)})
	timedOut := fold(step{newCall, at(0)}, step{callstate.Update{Key: "c1", State: callstate.StateEnded, Cause: callstate.CauseTimeout, Guessed: true}, at(1800)})
	missedByHook := fold(step{newCall, at(0)}, step{callstate.Update{Key: "c1", State: callstate.StateEnded, Cause: "cancel"}, at(20)})

	t.Run("OK/CreatesUnknownCall", func(t *testing.T) {
		f, err := h("SUCCESS", 60).Reconcile(callstate.Call{}, false, plan)
		if err != nil || !f.Create || f.Disagree != "" {
			t.Fatalf("Reconcile = %+v, %v", f, err)
		}
		u := f.Update
		if u.From != "4915799912345" || u.To != "49301234567" || u.Direction != callstate.DirectionIn || !u.Learned ||
			u.Extension != "w0" || !u.StartedAt.Equal(at(0)) || !u.AnsweredAt.Equal(at(20)) || !u.EndedAt.Equal(at(80)) ||
			u.Cause != "normalClearing" || u.Answering != "49301234567" {
			t.Errorf("update %+v", u)
		}
		c := fold(step{u, at(900)})
		if !c.AnsweredByPerson() || !c.Learned || c.State != callstate.StateEnded {
			t.Errorf("call %+v", c)
		}
	})
	t.Run("OK/CreatesVoicemail", func(t *testing.T) {
		f, _ := h("VOICEMAIL_NO_MESSAGE", 0).Reconcile(callstate.Call{}, false, plan)
		c := fold(step{f.Update, at(900)})
		if j := reference.JourneyOf([]callstate.Call{c}); j.Outcome != callstate.OutcomeVoicemail {
			t.Errorf("journey %s, want voicemail; call %+v", j.Outcome, c)
		}
	})
	t.Run("OK/FillsLostHangupAfterAnswer", func(t *testing.T) {
		f, _ := h("SUCCESS", 60).Reconcile(answered, true, plan)
		if f.Create || !f.Update.EndedAt.Equal(at(65)) || !f.Update.AnsweredAt.IsZero() {
			t.Fatalf("fill %+v", f)
		}
		c := fold(step{newCall, at(0)}, step{answer, at(5)}, step{f.Update, at(900)})
		if c.State != callstate.StateEnded || !c.EndedAt.Equal(at(65)) || !c.AnsweredAt.Equal(at(5)) {
			t.Errorf("call %+v", c)
		}
	})
	t.Run("OK/FillsLostHangupWhileRinging", func(t *testing.T) {
		f, _ := h("MISSED", 0).Reconcile(ringing, true, plan)
		c := fold(step{newCall, at(0)}, step{f.Update, at(900)})
		if j := reference.JourneyOf([]callstate.Call{c}); j.Outcome != callstate.OutcomeMissed || !c.EndedAt.Equal(at(20)) {
			t.Errorf("journey %s, call %+v", j.Outcome, c)
		}
	})
	t.Run("OK/ReplacesTimeout", func(t *testing.T) {
		f, _ := h("MISSED", 0).Reconcile(timedOut, true, plan)
		if f.Update.Key == "" {
			t.Fatal("nothing filled over a timeout")
		}
	})
	t.Run("OK/NothingToFillTwice", func(t *testing.T) {
		f, _ := h("MISSED", 0).Reconcile(ringing, true, plan)
		again, _ := h("MISSED", 0).Reconcile(fold(step{newCall, at(0)}, step{f.Update, at(900)}), true, plan)
		if again.Update.Key != "" {
			t.Errorf("filled again: %+v", again)
		}
	})
	t.Run("OK/AgreesWithWebhooks", func(t *testing.T) {
		f, _ := h("SUCCESS", 60).Reconcile(ended, true, plan)
		if f.Update.Key != "" || f.Disagree != "" {
			t.Errorf("fill %+v", f)
		}
	})
	t.Run("Disagree/HistoryAnsweredWebhookCancel", func(t *testing.T) {
		f, _ := h("SUCCESS", 60).Reconcile(missedByHook, true, plan)
		if f.Update.Key != "" || f.Disagree == "" {
			t.Errorf("fill %+v", f)
		}
	})
	t.Run("Disagree/HistoryMissedWebhookAnswered", func(t *testing.T) {
		f, _ := h("MISSED", 0).Reconcile(answered, true, plan)
		if f.Update.Key == "" || f.Disagree == "" {
			t.Errorf("fill %+v: want the end filled and the disagreement told", f)
		}
	})
	t.Run("ErrUnmatchable", func(t *testing.T) {
		x := h("SUCCESS", 60)
		x.CallID = ""
		if _, err := x.Reconcile(callstate.Call{}, false, plan); !errors.Is(err, callstate.ErrUnmatchable) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("OK/DedupKeyStable", func(t *testing.T) {
		f1, _ := h("MISSED", 0).Reconcile(ringing, true, plan)
		f2, _ := h("MISSED", 0).Reconcile(ringing, true, plan)
		if h("MISSED", 0).DedupKey(f1.Update) != h("MISSED", 0).DedupKey(f2.Update) {
			t.Error("the same fill has two keys")
		}
	})
}

func TestMatchVoicemails(t *testing.T) {
	calls := []callstate.HistoryCall{
		{CallID: "a", Source: "+491", Target: "+4930", Created: at(0)},
		{CallID: "b", Source: "+491", Target: "+4930", Created: at(100)},
		{CallID: "c", Source: "+492", Target: "+4930", Created: at(100)},
	}
	vms := []callstate.HistoryVoicemail{
		{ID: "v1", Source: "+491", Target: "+4930", Created: at(130)},
		{ID: "v2", Source: "+493", Target: "+4930", Created: at(130)},
		{ID: "v3", Source: "+492", Target: "+4930", Created: at(100 + 3600)},
	}
	un := callstate.MatchVoicemails(calls, vms)
	if calls[0].Voicemail || !calls[1].Voicemail || calls[2].Voicemail {
		t.Errorf("marked %v %v %v, want only b", calls[0].Voicemail, calls[1].Voicemail, calls[2].Voicemail)
	}
	if len(un) != 2 || un[0].ID != "v2" || un[1].ID != "v3" {
		t.Errorf("unmatched %+v, want v2 and v3", un)
	}
}
