package routing_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/routing"
	"github.com/callstate/callstate/xmlresponse"
)

var plan, _ = callstate.NewNumberPlan("DE")

func mustParse(tb testing.TB, src string) *routing.Rules {
	tb.Helper()
	r, err := routing.Parse([]byte(src), plan)
	if err != nil {
		tb.Fatalf("parse: %v", err)
	}
	return r
}

var berlin, _ = time.LoadLocation("Europe/Berlin")

func at(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
	if err != nil {
		panic(err)
	}
	return t
}

func TestIssueExample(t *testing.T) {
	src, err := os.ReadFile("testdata/issue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := mustParse(t, string(src))
	tests := []struct {
		name string
		call routing.Call
		rule string
		xml  string
	}{
		{"BlockedPrefix", routing.Call{Direction: "in", From: "4930999123", To: "4928559389086", At: at("2026-12-07 10:00")}, "block list", `<Reject reason="busy"></Reject>`},
		{"Anonymous", routing.Call{Direction: "in", From: "anonymous", To: "4928559389086", At: at("2026-12-07 10:00")}, "block list", `<Reject reason="busy"></Reject>`},
		{"BusinessHours", routing.Call{Direction: "in", From: "491776249000", To: "4928559389086", At: at("2026-12-07 10:00")}, "", ""},
		{"Evening", routing.Call{Direction: "in", From: "491776249000", At: at("2026-12-07 18:00")}, "after hours", `<Dial><Voicemail></Voicemail></Dial>`},
		{"Saturday", routing.Call{Direction: "in", From: "491776249000", At: at("2026-12-12 10:00")}, "after hours", `<Voicemail>`},
		{"Holiday", routing.Call{Direction: "in", From: "491776249000", At: at("2026-12-24 10:00")}, "after hours", `<Voicemail>`},
		{"Outgoing", routing.Call{Direction: "out", From: "4928559389086", To: "4930999123", At: at("2026-12-12 10:00")}, "", ""},
		{"SummerTime", routing.Call{Direction: "in", From: "491776249000", At: time.Date(2026, 7, 6, 15, 59, 0, 0, time.UTC)}, "", ""},
		{"SummerTimeEvening", routing.Call{Direction: "in", From: "491776249000", At: time.Date(2026, 7, 6, 16, 0, 0, 0, time.UTC)}, "after hours", `<Voicemail>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := r.Evaluate(tt.call, routing.Env{})
			if d.Rule != tt.rule || d.Matched != (tt.rule != "") {
				t.Fatalf("rule %q (matched %v), want %q", d.Rule, d.Matched, tt.rule)
			}
			if tt.rule == "" {
				return
			}
			body, err := xmlresponse.Response{Action: d.Action.Response("")}.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(body), tt.xml) {
				t.Errorf("answer %s lacks %s", body, tt.xml)
			}
		})
	}
}

// Every problem of a file comes back at once, each with its line.
func TestParseErrors(t *testing.T) {
	src := `time_zone: Mars/Base
holidays: [2026-13-01]
rules:
  - name: a
    when: { from: ["+49 abc"], lamp: { w0: sleepy } }
    then: { reject: maybe }
  - name: a
    then: { dial: ["21"], hangup: true }
  - when: { inside: "Mon-Fry 08:00-18:00" }
    then: { gather: { menu: nowhere } }
  - name: c
    when: { digits: "1", colour: red }
    then: { play: "ftp://example.com/a.wav" }
  - name: d
    then: {}
`
	_, err := routing.Parse([]byte(src), plan)
	var pe *routing.Error
	if !errors.As(err, &pe) || !errors.Is(err, routing.ErrInvalid) {
		t.Fatalf("err %v, want a *routing.Error", err)
	}
	want := []string{
		"line 1:12: time_zone \"Mars/Base\"",
		"line 2:12: holiday \"2026-13-01\"",
		"line 5:20: from: \"+49 abc\"",
		"line 5:44: lamp w0: \"sleepy\"",
		"line 6:21: reject must be busy or rejected",
		"line 7:11: rule name \"a\" is used twice (first on line 4)",
		"line 8:20: dial: \"21\"",
		"line 8:27: then: one action per rule",
		"line 9:9: a rule needs a name",
		"line 9:13: inside/outside need time_zone",
		"line 9:21: inside: \"Mon-Fry\": \"fry\" is not a day",
		"line 10:29: gather: menu \"nowhere\" is not defined",
		"line 12:13: when: unknown key \"digits\"",
		"line 12:26: when: unknown key \"colour\"",
		"line 13:19: play: \"ftp://example.com/a.wav\"",
		"line 15:11: then: needs one action",
	}
	got := strings.Split(err.Error(), "\n")
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, w)
		}
		if !found {
			t.Errorf("no problem %q in:\n%s", w, err)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(got), len(want), err)
	}
}

func TestParseRefusals(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"Empty", "", "the file is empty"},
		{"NoRules", "time_zone: UTC\n", "rules: is missing"},
		{"Syntax", "rules: [\n", "line 1"},
		{"Alias", "a: &x [1]\nrules: *x\n", "aliases"},
		{"TwoDocs", "rules: []\n---\nrules: []\n", "one YAML document"},
		{"DuplicateKey", "rules: []\nrules: []\n", "already defined"},
		{"WindowsWithoutZone", "rules:\n  - name: a\n    when: { inside: \"Mon 08:00-09:00\" }\n    then: { hangup: true }\n", "need time_zone"},
		{"TooManyDial", "rules:\n  - name: a\n    then: { dial: [+4930111111, +4930111112, +4930111113, +4930111114, +4930111115, +4930111116] }\n", "at most 5"},
		{"BarePrefix", "rules:\n  - name: a\n    when: { from: \"*\" }\n    then: { hangup: true }\n", "needs digits"},
		{"NotUTF8", "rules: \xff\n", "not UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := routing.Parse([]byte(tt.src), plan)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one saying %q", err, tt.want)
			}
		})
	}
}

const full = `time_zone: Europe/Berlin
holidays: [12-31]
rules:
  - name: vip to owner
    when: { group: VIP }
    then: { dial: { numbers: ["0176 1234567"], caller_id: "+4928559389086", anonymous: true } }
  - name: acme
    when: { contact: "ACME GmbH" }
    then: { play: "https://example.com/acme.wav" }
  - name: alice busy
    when: { user: [w0], lamp: { w0: [busy, ringing, hold] } }
    then: { dial: ["+491601111111"] }
  - name: pbx 100 free
    when: { to: "0285 59389086", lamp: { "100": idle } }
    then: { dial: ["+491602222222"] }
  - name: support line
    when: { to: "+4928559389087", inside: ["Mon-Fri 08:00-12:00, 13:00-17:00"] }
    then: { gather: { menu: main, play: "https://example.com/menu.wav", max_digits: 1, timeout: 4s } }
  - name: outgoing hangup
    when: { direction: out, to: "0900*" }
    then: { hangup: true }
menus:
  main:
    - name: sales
      when: { digits: "1" }
      then: { dial: ["+491603333333"] }
    - name: more
      when: { digits: ["2", "3"] }
      then: { gather: { menu: main } }
    - name: nothing pressed
      when: { digits: "" }
      then: { voicemail: true }
    - name: anything else
      then: { reject: rejected }
`

func TestEvaluate(t *testing.T) {
	r := mustParse(t, full)
	book := func(n string) (string, []string, bool) {
		switch n {
		case "491701111111":
			return "Vera", []string{"vip"}, true
		case "491702222222":
			return "acme gmbh", nil, true
		}
		return "", nil, false
	}
	monday := at("2026-12-07 10:00")
	tests := []struct {
		name  string
		call  routing.Call
		lamps map[string]string
		rule  string
		kind  string
	}{
		{"GroupCaseInsensitive", routing.Call{Direction: "in", From: "491701111111", At: monday}, nil, "vip to owner", "dial"},
		{"Contact", routing.Call{Direction: "in", From: "491702222222", At: monday}, nil, "acme", "play"},
		{"UserBusy", routing.Call{Direction: "in", From: "49301", UserIDs: []string{"w0"}, At: monday}, map[string]string{"w0": "busy"}, "alice busy", "dial"},
		{"UserIdle", routing.Call{Direction: "in", From: "49301", UserIDs: []string{"w0"}, At: monday}, map[string]string{"w0": "idle"}, "", ""},
		{"UserByName", routing.Call{Direction: "in", From: "49301", Users: []string{"W0"}, At: monday}, map[string]string{"w0": "hold"}, "alice busy", "dial"},
		{"PBXIdle", routing.Call{Direction: "in", To: "4928559389086", At: monday}, map[string]string{"100": "idle"}, "pbx 100 free", "dial"},
		{"PBXUnknownIsUnavailable", routing.Call{Direction: "in", To: "4928559389086", At: monday}, nil, "", ""},
		{"MenuInHours", routing.Call{Direction: "in", To: "4928559389087", At: at("2026-12-07 13:00")}, nil, "support line", "gather"},
		{"MenuLunch", routing.Call{Direction: "in", To: "4928559389087", At: at("2026-12-07 12:30")}, nil, "", ""},
		{"MenuNewYearsEve", routing.Call{Direction: "in", To: "4928559389087", At: at("2026-12-31 10:00")}, nil, "", ""},
		{"OutgoingPrefix", routing.Call{Direction: "out", To: "49900123456", At: monday}, nil, "outgoing hangup", "hangup"},
		{"IncomingNotOutgoingRule", routing.Call{Direction: "in", To: "49900123456", At: monday}, nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := r.Evaluate(tt.call, routing.Env{Lamps: tt.lamps, Contact: book})
			if d.Rule != tt.rule || d.Action.Kind() != tt.kind {
				t.Fatalf("rule %q %s, want %q %s", d.Rule, d.Action.Kind(), tt.rule, tt.kind)
			}
			if !d.Matched {
				return
			}
			if err := (xmlresponse.Response{Action: d.Action.Response("https://cs.example.com/webhooks/sipgate?menu=main")}).Validate(); err != nil {
				t.Fatalf("invalid answer: %v", err)
			}
		})
	}
	t.Run("Dial", func(t *testing.T) {
		d := r.Evaluate(routing.Call{Direction: "in", From: "491701111111", At: monday}, routing.Env{Contact: book})
		body, _ := xmlresponse.Response{Action: d.Action.Response("")}.Marshal()
		want := `<Dial callerId="4928559389086" anonymous="true"><Number>491761234567</Number></Dial>`
		if !strings.Contains(string(body), want) {
			t.Fatalf("%s lacks %s", body, want)
		}
	})
	t.Run("Menu", func(t *testing.T) {
		for digits, rule := range map[string]string{"1": "sales", "2": "more", "3": "more", "": "nothing pressed", "9": "anything else"} {
			d, ok := r.EvaluateMenu("main", routing.Call{Direction: "in", Digits: digits, At: monday}, routing.Env{})
			if !ok || d.Rule != rule {
				t.Errorf("digits %q: rule %q (%v), want %q", digits, d.Rule, ok, rule)
			}
		}
		if _, ok := r.EvaluateMenu("gone", routing.Call{}, routing.Env{}); ok {
			t.Error("a menu the rules lack was found")
		}
	})
	if r.Len() != 10 {
		t.Errorf("Len %d, want 10", r.Len())
	}
}

func TestMenuSignature(t *testing.T) {
	secret := []byte("0123456789abcdef")
	u := routing.MenuURL("https://cs.example.com/webhooks/sipgate", secret, "call-1", "main")
	if !strings.HasPrefix(u, "https://cs.example.com/webhooks/sipgate?menu=main&sig=") {
		t.Fatalf("url %s", u)
	}
	sig := u[strings.LastIndex(u, "=")+1:]
	tests := []struct {
		name            string
		secret          []byte
		call, menu, sig string
		ok              bool
	}{
		{"OK", secret, "call-1", "main", sig, true},
		{"ErrOtherCall", secret, "call-2", "main", sig, false},
		{"ErrOtherMenu", secret, "call-1", "other", sig, false},
		{"ErrOtherSecret", []byte("fedcba9876543210"), "call-1", "main", sig, false},
		{"ErrNoSecret", nil, "call-1", "main", sig, false},
		{"ErrEmptySig", secret, "call-1", "main", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := routing.VerifyMenu(tt.secret, tt.call, tt.menu, tt.sig); got != tt.ok {
				t.Fatalf("VerifyMenu %v, want %v", got, tt.ok)
			}
		})
	}
}

func TestParseWindows(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"Mon-Fri 08:00-18:00", "Mon,Tue,Wed,Thu,Fri 08:00-18:00"},
		{"Sat,Sun", "Sun,Sat 00:00-24:00"},
		{"Mon-Fri 08:00-12:00, 13:00-17:00", "Mon,Tue,Wed,Thu,Fri 08:00-12:00|Mon,Tue,Wed,Thu,Fri 13:00-17:00"},
		{"Mon-Fri 08:00-18:00, Sat 09:00-13:00", "Mon,Tue,Wed,Thu,Fri 08:00-18:00|Sat 09:00-13:00"},
		{"08:00-09:00", "Sun,Mon,Tue,Wed,Thu,Fri,Sat 08:00-09:00"},
		{"Fri 22:00-06:00", "Fri 22:00-24:00|Sat 00:00-06:00"},
		{"Sat-Mon 10:00-24:00", "Sun,Mon,Sat 10:00-24:00"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ws, err := routing.ParseWindows(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range ws {
				got = append(got, w.String())
			}
			if strings.Join(got, "|") != tt.want {
				t.Fatalf("got %s, want %s", strings.Join(got, "|"), tt.want)
			}
		})
	}
	for _, bad := range []string{"", "Mon-Fri 8-18", "Mon 25:00-26:00", "Mon 08:00-08:00", "Moon", "Mon 24:00-01:00"} {
		if _, err := routing.ParseWindows(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
