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
