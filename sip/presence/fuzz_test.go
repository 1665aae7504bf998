package presence

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sip"
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

// FuzzAgentBodies builds the agent's dialog-info and PIDF documents from
// what calls and lamps bring (the entity, a Call-ID, a party's number and
// name, any lamp) and reads them back with the parsers the PBX watcher
// uses: each must parse, and say exactly what it was built from, as XML
// can carry it (characters XML cannot carry become U+FFFD; the parsers
// trim the values they trim).
func FuzzAgentBodies(f *testing.F) {
	f.Add("sip:w0@callstate.example", "c1@pbx", "4917012345", "Anna Schmidt", "busy", false, uint32(1))
	f.Add(`sip:a"b<c>&d@x`, "x\n\r\ty", " +49 ", `<Bob & "Alice">`, "ringing", true, uint32(0))
	f.Add("sip:\u00fc@\u00e4", "\xff\xfe\x00", "anonymous", "]]>", "hold", true, uint32(4294967295))
	f.Add(" sip:w0@d ", "", "", "", "unavailable", false, uint32(7))
	f.Fuzz(func(t *testing.T, entity, callID, remote, name, lamp string, held bool, version uint32) {
		v := &lampView{ref: LampRef{Source: callstate.SourceSipgate, Extension: "w0"}, lamp: lamp}
		if callID != "" {
			v.dialogs = []agentDialog{{id: "c" + hashID(callID), callID: callID, state: sip.DialogConfirmed,
				direction: string(sip.DirectionRecipient), remote: partyURI(remote, "callstate.test"), remoteName: name, held: held}}
		}
		body := dialogInfoBody(entity, version, v, nil)
		di, err := sip.ParseDialogInfo(body)
		if err != nil {
			t.Fatalf("dialog-info does not parse: %v\n%s", err, body)
		}
		if di.Entity != asXML(entity) || !di.HasVersion || di.Version != uint64(version) || di.State != sip.DocFull {
			t.Errorf("dialog-info %+v, want entity %q version %d full", di, asXML(entity), version)
		}
		if d := v.dialogs; len(d) == 1 {
			if len(di.Dialogs) != 1 {
				t.Fatalf("%d dialogs, want 1:\n%s", len(di.Dialogs), body)
			}
			got := di.Dialogs[0]
			if got.ID != d[0].id || got.CallID != asXML(callID) || got.State != sip.DialogConfirmed || got.Direction != sip.DirectionRecipient ||
				got.LocalIdentity != asXML(entity) || got.LocalHeld != held {
				t.Errorf("dialog %+v, want id %s call-id %q confirmed recipient, local %q held %v", got, d[0].id, asXML(callID), asXML(entity), held)
			}
			if r := d[0].remote; r != "" && (got.RemoteIdentity != asXML(r) || got.RemoteTarget != asXML(r) || got.RemoteDisplay != asXML(name)) {
				t.Errorf("remote %q %q %q, want %q named %q", got.RemoteIdentity, got.RemoteTarget, got.RemoteDisplay, asXML(r), asXML(name))
			}
		}
		body = pidfBody(entity, v)
		if len(body) > sip.MaxBodySize {
			return // the parser's limit, not the document's fault
		}
		p, err := sip.ParsePresence(body)
		if err != nil {
			t.Fatalf("PIDF does not parse: %v\n%s", err, body)
		}
		want := map[string]string{"ringing": sip.StatusRinging, "busy": sip.StatusBusy, "hold": sip.StatusBusy, "unavailable": sip.StatusUnavailable}[lamp]
		if p.Entity != asXML(entity) || p.Status() != cmpOr(want, sip.StatusIdle) {
			t.Errorf("PIDF of a %q lamp: entity %q status %s, want %q %s", lamp, p.Entity, p.Status(), asXML(entity), cmpOr(want, sip.StatusIdle))
		}
	})
}

// asXML is s as a parser reads it back from a document: every character
// XML cannot carry replaced by U+FFFD (encoding/xml's escaping does so),
// and trimmed, as the parsers trim the values the agent sends.
func asXML(s string) string {
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		s = s[n:]
		if r == utf8.RuneError && n == 1 || !(r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF ||
			r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return strings.TrimSpace(b.String())
}
