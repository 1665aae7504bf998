package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/routing"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
	"github.com/callstate/callstate/xmlresponse"
)

const routingRules = `time_zone: Europe/Berlin
holidays: [2026-12-24]
rules:
  - name: block list
    when: { from: ["0177 6249000", "+4930999*", anonymous] }
    then: { reject: busy }
  - name: spam
    when: { from: "+4930666*" }
    then: { reject: rejected }
  - name: hang up on 0900
    when: { from: "0900*" }
    then: { hangup: true }
  - name: vip to owner
    when: { group: vip }
    then: { dial: { numbers: ["+491601111111"], caller_id: "+4928559389086" } }
  - name: alice busy, ring bob
    when: { user: w0, lamp: { w0: [busy, ringing, hold] } }
    then: { dial: ["+491602222222"] }
  - name: alice
    when: { user: w0 }
    then: { dial: ["+491603333333"] }
  - name: after hours
    when: { to: "+4928559389086", outside: "Mon-Fri 08:00-18:00" }
    then: { voicemail: true }
  - name: announcement
    when: { to: "+4928559389087" }
    then: { play: "https://sounds.example.com/welcome.wav" }
  - name: hotline
    when: { to: "+4928559389088" }
    then: { gather: { menu: main, play: "https://sounds.example.com/menu.wav", max_digits: 1, timeout: 3s } }
menus:
  main:
    - name: main 1 sales
      when: { digits: "1" }
      then: { dial: ["+491604444444"] }
    - name: main 2 support menu
      when: { digits: "2" }
      then: { gather: { menu: support, play: "https://sounds.example.com/support.wav" } }
    - name: main nothing
      then: { voicemail: true }
  support:
    - name: support 1
      when: { digits: "1" }
      then: { dial: ["+491605555555"] }
    - name: support other
      then: { hangup: true }
`

type routingEnv struct {
	h       http.Handler
	store   *store.Store
	lamps   *handlers.LiveLamps
	pb      *handlers.Phonebook
	rules   atomic.Pointer[routing.Rules]
	metrics *metrics.Metrics
	logs    *bytes.Buffer
	now     time.Time
}

var routingSecret = []byte("routing-secret-0123456789")

const apiToken = "route-test-token-0123456789"

// newRoutingEnv starts the webhook with rules src on a database of its
// own, the lamps fed by the store's change notifications as
// cmd/callstate does.
func newRoutingEnv(tb testing.TB, src string, o handlers.SipgateOptions) *routingEnv {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, storetest.NewDatabase(tb), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	plan, _ := callstate.NewNumberPlan("DE")
	e := &routingEnv{store: st, metrics: metrics.New(), logs: &bytes.Buffer{},
		now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)} // a Monday, 11:00 in Berlin
	if src != "" {
		r, err := routing.Parse([]byte(src), plan)
		if err != nil {
			tb.Fatal(err)
		}
		e.rules.Store(r)
	}
	log := slog.New(slog.NewTextHandler(&syncWriter{w: e.logs}, nil))
	e.pb = handlers.NewPhonebook(st, plan, log)
	e.lamps = handlers.NewLiveLamps(st, log)
	if o.PublicURL == "" {
		o.PublicURL = "https://callstate.example.com"
	}
	o.Routing = &handlers.RoutingOptions{Rules: e.rules.Load, Lamps: e.lamps, Phonebook: e.pb, Secret: routingSecret,
		Now: func() time.Time { return e.now }}
	dash := handlers.DashboardOptions{Store: st, Phonebook: e.pb, BearerToken: apiToken}
	h, err := handlers.New(handlers.Options{Store: st, Ready: st, Sipgate: o, Logger: log, Metrics: e.metrics, Dashboard: dash})
	if err != nil {
		tb.Fatal(err)
	}
	e.h = h
	done := make(chan struct{}, 2)
	go func() { e.lamps.Run(ctx); done <- struct{}{} }() //nolint:errcheck // test
	go func() {
		st.Listen(ctx, func(store.Change) { e.lamps.Changed() }) //nolint:errcheck // test
		done <- struct{}{}
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
		<-done
		st.Close()
	})
	return e
}

func (e *routingEnv) post(tb testing.TB, path, body string, header http.Header) *httptest.ResponseRecorder {
	tb.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", formType)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		tb.Fatalf("post %s %s: %d %s", path, body, rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); rec.Body.Len() > 0 && ct != xmlresponse.ContentType {
		tb.Fatalf("Content-Type %q", ct)
	}
	return rec
}

func newCallForm(id, from, to string, userIDs ...string) string {
	v := url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {from}, "to": {to}, "callId": {id}, "origCallId": {id}}
	for _, u := range userIDs {
		v.Add("userId[]", u)
		v.Add("user[]", "User "+u)
	}
	return v.Encode()
}

const webhookURL = "https://callstate.example.com/webhooks/sipgate"

// answerOf is what newCall's answer looks like with action's XML.
func answerOf(action string) string {
	return `<?xml version="1.0" encoding="UTF-8"?><Response onAnswer="` + webhookURL + `" onHangup="` + webhookURL + `">` + action + `</Response>`
}

// checkValid parses body back into sipgate's structure: well-formed XML
// with one Response element.
func checkValid(tb testing.TB, body []byte) {
	tb.Helper()
	var doc struct {
		XMLName xml.Name
	}
	if err := xml.Unmarshal(body, &doc); err != nil || doc.XMLName.Local != "Response" {
		tb.Fatalf("answer is not a sipgate Response: %v: %s", err, body)
	}
}

// TestRoutingCapturedNewCall: sipgate's captured, signed newCall (from
// 491776249000) is rejected as busy by a block list that writes the
// number in national form.
func TestRoutingCapturedNewCall(t *testing.T) {
	header, body := readCapture(t)
	v, err := handlers.NewSignatureVerifier(handlers.SipgatePublicKey)
	if err != nil {
		t.Fatal(err)
	}
	e := newRoutingEnv(t, routingRules, handlers.SipgateOptions{Verifier: v})
	rec := e.post(t, handlers.SipgatePath, string(body), header)
	if got, want := rec.Body.String(), answerOf(`<Reject reason="busy"></Reject>`); got != want {
		t.Fatalf("answer\n got  %s\n want %s", got, want)
	}
	const callID = "54566B150B0C0D3A5D534D5F565D7C5F54535A5C5B53525A7E5B5D5745504457444C425D5057"
	if c, err := e.store.Call(context.Background(), callstate.SourceSipgate, callID); err != nil || c.State != callstate.StateRinging {
		t.Fatalf("stored call %+v, %v", c, err)
	}
}

// TestRoutingEveryAction: unsigned newCalls, one for each action and for
// no rule matching (the default answer, SIPGATE_NEWCALL_ACTION's).
func TestRoutingEveryAction(t *testing.T) {
	e := newRoutingEnv(t, routingRules, handlers.SipgateOptions{NewCallAction: xmlresponse.Play{URL: "https://sounds.example.com/default.wav"}})
	if _, _, err := e.store.AddContacts(context.Background(), []callstate.Contact{
		{Name: "Vera", Numbers: []string{"491701111111"}, Groups: []string{"VIP"}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.pb.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		form     string
		evening  bool
		rule     string
		wantXML  string
		wantPart string
	}{
		{"RejectBusy", newCallForm("a1", "4930999123", "4928559389086"), false, "block list", `<Reject reason="busy"></Reject>`, ""},
		{"RejectAnonymous", newCallForm("a2", "anonymous", "4928559389086"), false, "block list", `<Reject reason="busy"></Reject>`, ""},
		{"RejectRejected", newCallForm("a3", "4930666123", "4928559389086"), false, "spam", `<Reject reason="rejected"></Reject>`, ""},
		{"Hangup", newCallForm("a4", "49900123456", "4928559389086"), false, "hang up on 0900", `<Hangup></Hangup>`, ""},
		{"DialGroup", newCallForm("a5", "491701111111", "4928559389086"), false, "vip to owner",
			`<Dial callerId="4928559389086"><Number>491601111111</Number></Dial>`, ""},
		{"Voicemail", newCallForm("a6", "491709999999", "4928559389086"), true, "after hours", `<Dial><Voicemail></Voicemail></Dial>`, ""},
		{"Play", newCallForm("a7", "491709999999", "4928559389087"), false, "announcement", `<Play><Url>https://sounds.example.com/welcome.wav</Url></Play>`, ""},
		{"Gather", newCallForm("a8", "491709999999", "4928559389088"), false, "hotline", "",
			`<Gather onData="` + webhookURL + `?menu=main&amp;sig=`},
		{"NoRuleDefault", newCallForm("a9", "491709999999", "4928559389086"), false, "", `<Play><Url>https://sounds.example.com/default.wav</Url></Play>`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.now = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
			if tt.evening {
				e.now = time.Date(2026, 12, 7, 19, 0, 0, 0, time.UTC)
			}
			rec := e.post(t, handlers.SipgatePath, tt.form, nil)
			checkValid(t, rec.Body.Bytes())
			if tt.wantXML != "" && rec.Body.String() != answerOf(tt.wantXML) {
				t.Fatalf("answer\n got  %s\n want %s", rec.Body, answerOf(tt.wantXML))
			}
			if tt.wantPart != "" && !strings.Contains(rec.Body.String(), tt.wantPart) {
				t.Fatalf("answer %s lacks %s", rec.Body, tt.wantPart)
			}
			id, _ := url.ParseQuery(tt.form)
			c, err := e.store.Call(context.Background(), callstate.SourceSipgate, id.Get("callId"))
			if err != nil || c.Rule != tt.rule {
				t.Fatalf("stored call's rule %q (%v), want %q", c.Rule, err, tt.rule)
			}
		})
	}
}

// onData returns the onData URL of a Gather answer, as sipgate reads it.
func onData(tb testing.TB, body []byte) string {
	tb.Helper()
	var doc struct {
		Gather struct {
			OnData string `xml:"onData,attr"`
		}
	}
	if err := xml.Unmarshal(body, &doc); err != nil || doc.Gather.OnData == "" {
		tb.Fatalf("no Gather onData in %s (%v)", body, err)
	}
	return doc.Gather.OnData
}

// pathOf is the request path sipgate posts to for an onData URL.
func pathOf(tb testing.TB, raw string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return u.RequestURI()
}

// TestRoutingMenu walks a two-level menu: the newCall's Gather, a 2 that
// opens the support menu, a 1 that dials; a tampered signature and a
// signature of another call get the plain dtmf answer.
func TestRoutingMenu(t *testing.T) {
	e := newRoutingEnv(t, routingRules, handlers.SipgateOptions{Verifier: testVerifier(t)})
	signed := func(body string) http.Header { return http.Header{"X-Sipgate-Signature": {sign(body)}} }
	nc := newCallForm("m1", "491709999999", "4928559389088")
	first := e.post(t, handlers.SipgatePath, nc, signed(nc))
	main := pathOf(t, onData(t, first.Body.Bytes()))

	dtmf := func(id, digits string) string {
		return url.Values{"event": {"dtmf"}, "callId": {id}, "dtmf": {digits}}.Encode()
	}
	plain := `<?xml version="1.0" encoding="UTF-8"?><Response onHangup="` + webhookURL + `"></Response>`
	menuAnswer := func(action string) string {
		return `<?xml version="1.0" encoding="UTF-8"?><Response onAnswer="` + webhookURL + `" onHangup="` + webhookURL + `">` + action + `</Response>`
	}

	t.Run("Sales", func(t *testing.T) {
		b := dtmf("m1", "1")
		rec := e.post(t, main, b, signed(b))
		if want := menuAnswer(`<Dial><Number>491604444444</Number></Dial>`); rec.Body.String() != want {
			t.Fatalf("answer\n got  %s\n want %s", rec.Body, want)
		}
	})
	t.Run("TwoLevels", func(t *testing.T) {
		b := dtmf("m1", "2")
		rec := e.post(t, main, b, signed(b))
		support := pathOf(t, onData(t, rec.Body.Bytes()))
		if !strings.Contains(support, "menu=support") {
			t.Fatalf("second menu's onData %s", support)
		}
		b = dtmf("m1", "1")
		rec = e.post(t, support, b, signed(b))
		if want := menuAnswer(`<Dial><Number>491605555555</Number></Dial>`); rec.Body.String() != want {
			t.Fatalf("answer\n got  %s\n want %s", rec.Body, want)
		}
	})
	t.Run("NothingPressed", func(t *testing.T) {
		b := dtmf("m1", "")
		rec := e.post(t, main, b, signed(b))
		if want := menuAnswer(`<Dial><Voicemail></Voicemail></Dial>`); rec.Body.String() != want {
			t.Fatalf("answer\n got  %s\n want %s", rec.Body, want)
		}
	})
	t.Run("ErrTamperedSignature", func(t *testing.T) {
		b := dtmf("m1", "1")
		rec := e.post(t, strings.Replace(main, "menu=main", "menu=support", 1), b, signed(b))
		if rec.Body.String() != plain {
			t.Fatalf("answer %s, want the plain dtmf answer", rec.Body)
		}
	})
	t.Run("ErrOtherCall", func(t *testing.T) {
		b := dtmf("m2", "1")
		rec := e.post(t, main, b, signed(b))
		if rec.Body.String() != plain {
			t.Fatalf("answer %s, want the plain dtmf answer", rec.Body)
		}
	})
	t.Run("ErrMenuGone", func(t *testing.T) {
		plan, _ := callstate.NewNumberPlan("DE")
		old := e.rules.Load()
		r, err := routing.Parse([]byte("rules:\n  - name: x\n    then: { hangup: true }\n"), plan)
		if err != nil {
			t.Fatal(err)
		}
		e.rules.Store(r)
		defer e.rules.Store(old)
		b := dtmf("m1", "1")
		rec := e.post(t, main, b, signed(b))
		if rec.Body.String() != plain {
			t.Fatalf("answer %s, want the plain dtmf answer", rec.Body)
		}
	})
	if !strings.Contains(e.logs.String(), "signature does not hold") || !strings.Contains(e.logs.String(), "no longer have") {
		t.Errorf("logs lack the refused menus:\n%s", e.logs)
	}
	// Every dtmf was journaled, menu or not.
	if j, err := e.store.Journal(context.Background(), callstate.SourceSipgate, "m1"); err != nil || len(j) != 7 {
		t.Errorf("journal of m1: %d entries, %v; want the newCall and 6 dtmf", len(j), err)
	}
}

// waitLamp waits until the live view shows who's lamp as want.
func (e *routingEnv) waitLamp(tb testing.TB, who, want string) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if e.lamps.Lamps(context.Background())[who] == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatalf("lamp of %s is %q, want %q", who, e.lamps.Lamps(context.Background())[who], want)
}

// TestRoutingBusyAware: while Alice (w0) is on a call, made by real
// webhooks, her calls ring Bob; when it ends, they ring her again.
func TestRoutingBusyAware(t *testing.T) {
	e := newRoutingEnv(t, routingRules, handlers.SipgateOptions{})
	e.post(t, handlers.SipgatePath, newCallForm("b0", "491709999999", "4928559389086", "w0"), nil)
	e.waitLamp(t, "w0", "ringing")
	e.post(t, handlers.SipgatePath, url.Values{"event": {"hangup"}, "callId": {"b0"}, "cause": {"cancel"}}.Encode(), nil)
	e.waitLamp(t, "w0", "idle")

	rec := e.post(t, handlers.SipgatePath, newCallForm("b1", "491709999999", "4928559389086", "w0"), nil)
	if want := answerOf(`<Dial><Number>491603333333</Number></Dial>`); rec.Body.String() != want {
		t.Fatalf("idle Alice: answer\n got  %s\n want %s", rec.Body, want)
	}
	e.post(t, handlers.SipgatePath, url.Values{"event": {"answer"}, "callId": {"b1"}, "user": {"User w0"}, "userId": {"w0"},
		"answeringNumber": {"491603333333"}}.Encode(), nil)
	e.waitLamp(t, "w0", "busy")

	rec = e.post(t, handlers.SipgatePath, newCallForm("b2", "491708888888", "4928559389086", "w0"), nil)
	if want := answerOf(`<Dial><Number>491602222222</Number></Dial>`); rec.Body.String() != want {
		t.Fatalf("busy Alice: answer\n got  %s\n want %s", rec.Body, want)
	}
	e.post(t, handlers.SipgatePath, url.Values{"event": {"hangup"}, "callId": {"b2"}, "cause": {"normalClearing"}}.Encode(), nil)
	e.post(t, handlers.SipgatePath, url.Values{"event": {"hangup"}, "callId": {"b1"}, "cause": {"normalClearing"}}.Encode(), nil)
	e.waitLamp(t, "w0", "idle")
	rec = e.post(t, handlers.SipgatePath, newCallForm("b3", "491707777777", "4928559389086", "w0"), nil)
	if want := answerOf(`<Dial><Number>491603333333</Number></Dial>`); rec.Body.String() != want {
		t.Fatalf("Alice free again: answer\n got  %s\n want %s", rec.Body, want)
	}
}

// TestRoutingFailureAnswersDefault: rules whose answer sipgate would not
// take (made by hand: Parse refuses them) give the default answer, a log
// line and a metric; the call is stored all the same.
func TestRoutingFailureAnswersDefault(t *testing.T) {
	e := newRoutingEnv(t, "", handlers.SipgateOptions{})
	e.rules.Store(&routing.Rules{Rules: []routing.Rule{{Name: "broken", Then: routing.Action{Dial: &xmlresponse.Dial{Numbers: []string{"not a number"}}}}}})
	rec := e.post(t, handlers.SipgatePath, newCallForm("f1", "491709999999", "4928559389086"), nil)
	if want := answerOf(""); rec.Body.String() != want {
		t.Fatalf("answer\n got  %s\n want %s", rec.Body, want)
	}
	if !strings.Contains(e.logs.String(), "not valid for sipgate") {
		t.Errorf("no log line:\n%s", e.logs)
	}
	m := httptest.NewRecorder()
	e.metrics.Handler().ServeHTTP(m, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(m.Body.String(), `callstate_routing_failures_total{reason="evaluation"} 1`) {
		t.Errorf("metrics lack the failure:\n%s", m.Body)
	}
	if _, err := e.store.Call(context.Background(), callstate.SourceSipgate, "f1"); err != nil {
		t.Errorf("call not stored: %v", err)
	}
}

func (e *routingEnv) get(tb testing.TB, path string, auth bool) (int, string) {
	tb.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if auth {
		req.Header.Set("Authorization", "Bearer "+apiToken)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// TestRouteDryRun: GET /api/route shows the rule and the XML a call would
// get, with the lamps as the database has them, and the call list shows
// the rule that routed each call.
func TestRouteDryRun(t *testing.T) {
	e := newRoutingEnv(t, routingRules, handlers.SipgateOptions{})
	e.post(t, handlers.SipgatePath, newCallForm("d1", "491709999999", "4928559389086", "w0"), nil)
	e.post(t, handlers.SipgatePath, url.Values{"event": {"answer"}, "callId": {"d1"}, "user": {"User w0"}, "userId": {"w0"}}.Encode(), nil)

	type answer struct {
		Rule    string `json:"rule"`
		Line    int    `json:"line"`
		Action  string `json:"action"`
		Default bool   `json:"default"`
		XML     string `json:"xml"`
	}
	tests := []struct {
		name  string
		query string
		code  int
		want  answer
		xml   string
	}{
		{"BlockList", "from=4930999123&to=4928559389086&at=2026-12-07T10:00:00Z", 200,
			answer{Rule: "block list", Line: 4, Action: "reject"}, `<Reject reason="busy"></Reject>`},
		{"AfterHours", "from=%2B49%20170%209999999&to=4928559389086&at=2026-12-07T19:00:00%2B01:00", 200,
			answer{Rule: "after hours", Line: 22, Action: "voicemail"}, `<Voicemail>`},
		{"HolidayAtNoon", "from=491709999999&to=4928559389086&at=2026-12-24T12:00:00%2B01:00", 200,
			answer{Rule: "after hours", Line: 22, Action: "voicemail"}, `<Voicemail>`},
		{"LampFromDatabase", "from=491709999999&to=4928559389086&user=w0&at=2026-12-07T10:00:00Z", 200,
			answer{Rule: "alice busy, ring bob", Line: 16, Action: "dial"}, `<Number>491602222222</Number>`},
		{"Menu", "from=491709999999&to=4928559389088&at=2026-12-07T10:00:00Z", 200,
			answer{Rule: "hotline", Line: 28, Action: "gather"}, `menu=main&amp;sig=`},
		{"Default", "from=491709999999&to=4928559389086&at=2026-12-07T10:00:00Z", 200,
			answer{Default: true}, `<Response onAnswer=`},
		{"MenuDigits", "menu=main&digits=1&at=2026-12-07T10:00:00Z", 200,
			answer{Rule: "main 1 sales", Line: 33, Action: "dial"}, `<Number>491604444444</Number>`},
		{"MenuNothingPressed", "menu=support&at=2026-12-07T10:00:00Z", 200,
			answer{Rule: "support other", Line: 45, Action: "hangup"}, `<Hangup>`},
		{"ErrNoMenu", "menu=nowhere&digits=1", 400, answer{}, ""},
		{"ErrBadDigits", "menu=main&digits=x", 400, answer{}, ""},
		{"ErrBadTime", "at=yesterday", 400, answer{}, ""},
		{"ErrUnknownParameter", "form=1", 400, answer{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.get(t, "/api/route?"+tt.query, true)
			if code != tt.code {
				t.Fatalf("%d %s, want %d", code, body, tt.code)
			}
			if code != 200 {
				return
			}
			var got answer
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatal(err)
			}
			x := got.XML
			got.XML = ""
			if got != tt.want || !strings.Contains(x, tt.xml) {
				t.Fatalf("got %+v %s, want %+v with %s", got, x, tt.want, tt.xml)
			}
			checkValid(t, []byte(x))
		})
	}
	if code, _ := e.get(t, "/api/route?from=4930999123", false); code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", code)
	}
	code, body := e.get(t, "/api/calls", true)
	if code != 200 || !strings.Contains(body, `"rule":"alice"`) {
		t.Errorf("call list lacks the rule that routed d1: %d %s", code, body)
	}
}

// TestRoutingRulesSwapped: answers follow the rules in force at once, even
// when a new version keeps a rule's name and changes what it does.
func TestRoutingRulesSwapped(t *testing.T) {
	e := newRoutingEnv(t, "rules:\n  - name: all\n    then: { reject: busy }\n", handlers.SipgateOptions{})
	if rec := e.post(t, handlers.SipgatePath, newCallForm("s1", "491709999999", "4928559389086"), nil); rec.Body.String() != answerOf(`<Reject reason="busy"></Reject>`) {
		t.Fatalf("first rules: %s", rec.Body)
	}
	plan, _ := callstate.NewNumberPlan("DE")
	r, err := routing.Parse([]byte("rules:\n  - name: all\n    then: { hangup: true }\n"), plan)
	if err != nil {
		t.Fatal(err)
	}
	e.rules.Store(r)
	if rec := e.post(t, handlers.SipgatePath, newCallForm("s2", "491709999999", "4928559389086"), nil); rec.Body.String() != answerOf(`<Hangup></Hangup>`) {
		t.Fatalf("second rules: %s", rec.Body)
	}
}
