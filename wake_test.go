package callstate_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/callstate/callstate"
)

func subscriptionJSON(tb testing.TB) string {
	tb.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"endpoint": "https://push.example.net/send/abc", "expirationTime": nil,
		"keys": map[string]string{"p256dh": base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
			"auth": base64.RawURLEncoding.EncodeToString(make([]byte, 16))}})
	return string(b)
}

func TestParseSubscription(t *testing.T) {
	good := subscriptionJSON(t)
	var m map[string]any
	json.Unmarshal([]byte(good), &m)
	with := func(key, v string) string {
		c := map[string]any{"endpoint": m["endpoint"], "keys": map[string]any{}}
		for k, x := range m["keys"].(map[string]any) {
			c["keys"].(map[string]any)[k] = x
		}
		if key == "endpoint" {
			c["endpoint"] = v
		} else {
			c["keys"].(map[string]any)[key] = v
		}
		b, _ := json.Marshal(c)
		return string(b)
	}
	p256dh := m["keys"].(map[string]any)["p256dh"].(string)
	std := base64.StdEncoding.EncodeToString(mustDecode(t, p256dh))
	tests := []struct {
		name, in, msg string
	}{
		{"OK", good, ""},
		{"OKStandardBase64Padded", with("p256dh", std), ""},
		{"ErrNotJSON", "{", "not a PushSubscription"},
		{"ErrNoEndpoint", with("endpoint", ""), "endpoint is missing"},
		{"ErrShortKey", with("p256dh", p256dh[:40]), "keys.p256dh"},
		{"ErrNotOnCurve", with("p256dh", base64.RawURLEncoding.EncodeToString(append([]byte{4}, make([]byte, 64)...))), "not a point"},
		{"ErrAuth", with("auth", "AAAA"), "keys.auth"},
		{"ErrAuthNotBase64", with("auth", "!!!!!!!!!!!!!!!!!!!!!!"), "keys.auth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := callstate.ParseSubscription([]byte(tt.in))
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Endpoint != "https://push.example.net/send/abc" {
					t.Errorf("endpoint %q", s.Endpoint)
				}
				return
			}
			if !errors.Is(err, callstate.ErrBadSubscription) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want ErrBadSubscription with %q", err, tt.msg)
			}
		})
	}
}

func mustDecode(t *testing.T, s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseSubscription(f *testing.F) {
	f.Add(subscriptionJSON(f))
	f.Add(`{"endpoint":"https://x","keys":{"p256dh":"BAAA","auth":"AAAAAAAAAAAAAAAAAAAAAA"}}`)
	f.Add(`{"endpoint":1}`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, in string) {
		s, err := callstate.ParseSubscription([]byte(in))
		if err != nil {
			if !errors.Is(err, callstate.ErrBadSubscription) {
				t.Fatalf("error %v is not ErrBadSubscription", err)
			}
			return
		}
		p, a, err := s.PushKeys()
		if err != nil || len(p) != 65 || len(a) != 16 || s.Endpoint == "" {
			t.Fatalf("accepted %q with keys %d/%d: %v", in, len(p), len(a), err)
		}
	})
}

func TestWakePayload(t *testing.T) {
	m := callstate.WakeMessage{Kind: callstate.WakeIncoming, Call: "c1", Journey: "c1", From: "4915112345678",
		FromFormatted: "+49 1511 2345678", FromName: "Anna Schmidt", To: "4921112345678", ToName: "Alice", User: "w0", At: "2026-12-07T10:42:00Z",
		Ready: "/api/devices/x/ready?call=c1"}
	b, err := m.Payload()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"kind":"incoming","call":"c1","journey":"c1","from":"4915112345678","fromFormatted":"+49 1511 2345678","fromName":"Anna Schmidt","to":"4921112345678","toName":"Alice","user":"w0","at":"2026-12-07T10:42:00Z","ready":"/api/devices/x/ready?call=c1"}`
	if string(b) != want {
		t.Errorf("payload\n got %s\nwant %s", b, want)
	}
	// Names as long as anything can make them are cut to fit, by runes.
	m.FromName, m.ToName = strings.Repeat("Ä", 3000), strings.Repeat("名", 3000)
	b, err = m.Payload()
	if err != nil || len(b) > callstate.MaxWakePayload || !utf8.Valid(b) {
		t.Fatalf("long names: %d bytes, %v", len(b), err)
	}
	clear, _ := callstate.WakeMessage{Kind: callstate.WakeClear, Call: "c1", Journey: "c1", Reason: callstate.ClearEnded}.Payload()
	if string(clear) != `{"v":1,"kind":"clear","call":"c1","journey":"c1","reason":"ended"}` {
		t.Errorf("clear %s", clear)
	}
}

func TestWakeTopic(t *testing.T) {
	a, b := callstate.WakeTopic("c1"), callstate.WakeTopic("c2")
	if len(a) != 32 || a == b || strings.Trim(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Errorf("topics %q %q: want 32 base64url characters, one per journey", a, b)
	}
}

func TestWakeTargets(t *testing.T) {
	var none *callstate.WakeTargets
	if none.WakeUsers([]string{"w0"}) != nil || none.HasExtension("101") {
		t.Error("a nil set has someone")
	}
	ts := &callstate.WakeTargets{Users: map[string]struct{}{"w0": {}, "w2": {}}, Extensions: map[string]struct{}{"101": {}}}
	if got := ts.WakeUsers([]string{"w1", "w2", "w0"}); strings.Join(got, ",") != "w2,w0" {
		t.Errorf("WakeUsers = %v", got)
	}
	if !ts.HasExtension("101") || ts.HasExtension("102") {
		t.Error("HasExtension")
	}
}

func TestWakeFeedRules(t *testing.T) {
	sipRinging := &callstate.Call{Source: callstate.SourceSIP, Extension: "101", State: callstate.StateRinging, Direction: callstate.DirectionIn}
	sipOut := &callstate.Call{Source: callstate.SourceSIP, Extension: "101", State: callstate.StateRinging, Direction: callstate.DirectionOut}
	sipgate := &callstate.Call{Source: callstate.SourceSipgate, Extension: "w0", State: callstate.StateRinging}
	tests := []struct {
		name  string
		ev    callstate.FeedEvent
		clear string
		early bool
	}{
		{"Answered", callstate.FeedEvent{Type: callstate.EventAnswered}, callstate.ClearAnswered, false},
		{"Ended", callstate.FeedEvent{Type: callstate.EventEnded}, callstate.ClearEnded, false},
		{"JourneyEnded", callstate.FeedEvent{Type: callstate.EventJourneyEnded}, callstate.ClearEnded, false},
		{"Missed", callstate.FeedEvent{Type: callstate.EventMissed}, "", false},
		{"EarlyDialog", callstate.FeedEvent{Type: callstate.EventRinging, Call: sipRinging}, "", true},
		{"OutgoingDialog", callstate.FeedEvent{Type: callstate.EventRinging, Call: sipOut}, "", false},
		{"SipgateRinging", callstate.FeedEvent{Type: callstate.EventRinging, Call: sipgate}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := callstate.ClearFor(tt.ev); got != tt.clear {
				t.Errorf("ClearFor = %q, want %q", got, tt.clear)
			}
			if got := callstate.EarlyDialog(tt.ev); got != tt.early {
				t.Errorf("EarlyDialog = %v, want %v", got, tt.early)
			}
		})
	}
}
