package presence

import (
	"strings"
	"testing"
	"time"
)

func TestParseExpires(t *testing.T) {
	for in, want := range map[string]string{"0": "0s", "3600": "1h0m0s", " 60 ": "1m0s", "99999999999999999999": "876000h0m0s"} {
		if d, err := parseExpires(in); err != nil || d.String() != want {
			t.Errorf("parseExpires(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1e3", "60s", strings.Repeat("9", 65)} {
		if _, err := parseExpires(in); err == nil {
			t.Errorf("parseExpires(%q): no error", in)
		}
	}
}

func TestParseEvent(t *testing.T) {
	for in, want := range map[string]string{"dialog": "dialog dialog", "Dialog ; id=7": "dialog dialog;id=7",
		"presence;id=<x>": "presence presence", "dialog;sla": "dialog dialog", "": " "} {
		pkg, echo := parseEvent(in)
		if got := pkg + " " + echo; got != want {
			t.Errorf("parseEvent(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseDigest(t *testing.T) {
	c, err := parseDigest(`Digest username="desk", realm="r", nonce="n.1", uri="sip:w0@d", response="ab", qop=auth, nc=00000001, cnonce="c,d"`)
	if err != nil || c.username != "desk" || c.cnonce != "c,d" || c.qop != "auth" || c.nc != "00000001" {
		t.Errorf("parseDigest = %+v, %v", c, err)
	}
	for _, bad := range []string{"", "Basic x", `Digest username="a`, `Digest username="a", nonce="n", uri="u"`,
		`Digest username="a", nonce="n", uri="u", response="r", algorithm=SHA-256`, "Digest " + strings.Repeat("a", 3000)} {
		if _, err := parseDigest(bad); err == nil {
			t.Errorf("parseDigest(%q): no error", bad)
		}
	}
	n := nonces{key: []byte("k")}
	now := time.Unix(1_800_000_000, 0)
	nonce := n.make(now)
	if v, stale := n.check(nonce, now.Add(time.Minute)); !v || stale {
		t.Errorf("fresh nonce: valid %v stale %v", v, stale)
	}
	if v, stale := n.check(nonce, now.Add(nonceTTL+time.Second)); !v || !stale {
		t.Errorf("old nonce: valid %v stale %v", v, stale)
	}
	if v, _ := n.check(strings.Replace(nonce, ".", "0.", 1), now); v {
		t.Error("forged nonce valid")
	}
	if !digestOK(digestCreds{uri: "sip:a@b", nonce: "n", response: md5hex(HA1("u", "r", "p") + ":n:" + md5hex("SUBSCRIBE:sip:a@b"))}, "SUBSCRIBE", HA1("u", "r", "p")) {
		t.Error("RFC 2069 response (no qop) refused")
	}
}
