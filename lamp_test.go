package callstate_test

import (
	"testing"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/reference"
)

func TestExtensionLamp(t *testing.T) {
	call := func(s callstate.State, held bool) callstate.Call {
		return callstate.Call{Source: callstate.SourceSIP, State: s, OnHold: held}
	}
	tests := []struct {
		name  string
		calls []callstate.Call
		want  string
	}{
		{"Idle", nil, callstate.LampIdle},
		{"IdleAfterEnd", []callstate.Call{call(callstate.StateEnded, false)}, callstate.LampIdle},
		{"Ringing", []callstate.Call{call(callstate.StateRinging, false)}, callstate.LampRinging},
		{"Busy", []callstate.Call{call(callstate.StateRinging, false), call(callstate.StateAnswered, false)}, callstate.LampBusy},
		{"Hold", []callstate.Call{call(callstate.StateAnswered, true), call(callstate.StateRinging, false)}, callstate.LampHold},
		{"BusyWhenOneOfTwoHeld", []callstate.Call{call(callstate.StateAnswered, true), call(callstate.StateAnswered, false)}, callstate.LampBusy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := callstate.ExtensionLamp(tt.calls); got != tt.want {
				t.Errorf("ExtensionLamp = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestUserLamp(t *testing.T) {
	ringing := callstate.Call{Source: callstate.SourceSipgate, State: callstate.StateRinging, Extension: "w0", UserIDs: []string{"w0", "w1"}}
	answered := callstate.Call{Source: callstate.SourceSipgate, State: callstate.StateAnswered, Extension: "w1", UserIDs: []string{"w0", "w1"}}
	ended := callstate.Call{Source: callstate.SourceSipgate, State: callstate.StateEnded, Extension: "w2"}
	sip := callstate.Call{Source: callstate.SourceSIP, State: callstate.StateAnswered, Extension: "w3"}
	tests := []struct {
		name, user string
		calls      []callstate.Call
		want       string
	}{
		{"RingingOffered", "w1", []callstate.Call{ringing}, callstate.LampRinging},
		{"BusyAnswered", "w1", []callstate.Call{ringing, answered}, callstate.LampBusy},
		{"IdleAnsweredByAnother", "w0", []callstate.Call{answered}, callstate.LampIdle}, // offered, but answered by w1
		{"IdleEnded", "w2", []callstate.Call{ended}, callstate.LampIdle},
		{"IdleSIPCall", "w3", []callstate.Call{sip}, callstate.LampIdle}, // a PBX extension's call is no sipgate user's
		{"IdleNoUser", "", []callstate.Call{{Source: callstate.SourceSipgate, State: callstate.StateRinging}}, callstate.LampIdle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reference.UserLamp(tt.user, tt.calls); got != tt.want {
				t.Errorf("UserLamp(%q) = %s, want %s", tt.user, got, tt.want)
			}
		})
	}
}
