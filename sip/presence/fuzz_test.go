package presence

import (
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

// FuzzAgentParse feeds what a subscriber controls to every parser of the
// presence agent: the Authorization header, Event, Expires, Accept, and the
// Request-URI user the resolver maps to a lamp. None may panic, and what
// they accept must be sane.
func FuzzAgentParse(f *testing.F) {
	f.Add(`Digest username="desk", realm="r", nonce="5f.ab", uri="sip:w0@d", response="0a", qop=auth, nc=00000001, cnonce="x"`,
		"dialog;id=1", "3600", "application/dialog-info+xml", "alice.doe")
	f.Add(`Digest username=a,nonce=b,uri=c,response=d`, "presence", "0", "*/*", "+49 211 555")
	f.Add(`Digest username="a\"`, "\x00", "99999999999999999999999", ",,,;", "%41lice")
	f.Add("", "", "", "", "")
	r := newResolver(buildViews([]callstate.LampStatus{
		{Source: callstate.SourceSipgate, Extension: "w0", Name: "Alice Doe"},
		{Source: callstate.SourceSIP, Extension: "100"},
	}, nil, "d"), map[string]LampRef{"+49 211 555": {callstate.SourceSipgate, "w0"}})
	n := nonces{key: []byte("k")}
	f.Fuzz(func(t *testing.T, auth, event, expires, accept, user string) {
		if c, err := parseDigest(auth); err == nil {
			if c.username == "" || c.nonce == "" || c.uri == "" || c.response == "" {
				t.Errorf("accepted credentials without a required field: %+v", c)
			}
			if strings.ContainsAny(c.username+c.uri+c.nonce, "\r\n") {
				t.Errorf("line break in a credential field: %+v", c)
			}
			_ = digestOK(c, "SUBSCRIBE", HA1("desk", "r", "secret"))
			_, _ = n.check(c.nonce, time.Now())
		}
		pkg, echo := parseEvent(event)
		if !strings.HasPrefix(echo, pkg) || strings.ContainsAny(echo, "\r\n") {
			t.Errorf("parseEvent(%q) = %q, %q", event, pkg, echo)
		}
		if d, err := parseExpires(expires); err == nil && d < 0 {
			t.Errorf("parseExpires(%q) = %v", expires, d)
		}
		_ = acceptsType(accept, ctDialogInfo)
		if ref, ok := r.resolve(user); ok && !ref.Source.Valid() {
			t.Errorf("resolve(%q) = %v", user, ref)
		}
		if ref, ok := ParseLampRef(user); ok && ref.String() != user {
			t.Errorf("ParseLampRef(%q) = %v", user, ref)
		}
	})
}
