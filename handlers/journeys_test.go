package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/internal/reference"
	"github.com/callstate/callstate/store/storetest"
)

// clock is the webhook's clock in these tests: each event is posted at
// its own time. Unset (zero), it is time.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// hook is one sipgate webhook request of a scenario, sec seconds after
// the scenario's start.
type hook struct {
	sec  float64
	form url.Values
}

// sipgate forms, as sipgate sends them (sipgate.io issue 134 for the
// forward and voicemail legs).
func fNew(id, orig, dir, from, to string, users, ids []string, extra ...string) url.Values {
	v := url.Values{"event": {"newCall"}, "callId": {id}, "direction": {dir}, "from": {from}, "to": {to},
		"user[]": users, "userId[]": ids}
	if orig != "" {
		v.Set("origCallId", orig)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

func fAnswer(id, orig, user, userID, number string) url.Values {
	v := url.Values{"event": {"answer"}, "callId": {id}, "user": {user}, "userId": {userID}, "answeringNumber": {number}}
	if orig != "" {
		v.Set("origCallId", orig)
	}
	return v
}

func fHangup(id, orig, cause string) url.Values {
	v := url.Values{"event": {"hangup"}, "callId": {id}, "cause": {cause}}
	if orig != "" {
		v.Set("origCallId", orig)
	}
	return v
}

type journeyScenario struct {
	name    string
	hooks   []hook
	outcome string
	by      string
	legs    int
	missed  bool // listed as a call to return (missed or voicemail)
}

// journeyScenarios are realistic sipgate sequences; each uses call ids
// of its own (prefix p).
func journeyScenarios(p string) []journeyScenario {
	a, b := p+"A", p+"B"
	in := func(id, orig string, users, ids []string, extra ...string) url.Values {
		return fNew(id, orig, "in", "4917"+p, "4930555", users, ids, extra...)
	}
	out := func(id string) url.Values {
		return fNew(id, "", "out", "4930555", "4916"+p, []string{"Ann"}, []string{"w1"})
	}
	return []journeyScenario{
		{"InboundAnswered", []hook{{0, in(a, a, []string{"Ann"}, []string{"w1"})}, {4, fAnswer(a, a, "Ann", "w1", "4930555")}, {64, fHangup(a, a, "normalClearing")}},
			"answered", "Ann", 1, false},
		{"RingsSeveralOneAnswers", []hook{{0, in(a, a, []string{"Ann", "Ben", "Cem"}, []string{"w1", "w2", "w3"})},
			{7, fAnswer(a, a, "Ben", "w2", "4930555")}, {37, fHangup(a, a, "normalClearing")}}, "answered", "Ben", 1, false},
		{"ForwardedToMobileAnsweredThere", []hook{{0, in(a, a, []string{"Ann"}, []string{"w1"})}, {20, fHangup(a, a, "forwarded")},
			{20.1, in(b, a, nil, nil, "diversion", "4930555")}, {26, fAnswer(b, a, "", "", "49170555")}, {86, fHangup(b, a, "normalClearing")}},
			"answered", "49170555", 2, false},
		{"ForwardedNotAnswered", []hook{{0, in(a, a, []string{"Ann"}, []string{"w1"})}, {20, fHangup(a, a, "forwarded")},
			{20.1, in(b, a, []string{"Ben"}, []string{"w2"}, "diversion", "4930555")}, {45, fHangup(b, a, "cancel")}}, "missed", "", 2, true},
		{"ForwardedOutOfReach", []hook{{0, in(a, a, []string{"Ann"}, []string{"w1"})}, {15, fHangup(a, a, "forwarded")}}, "forwarded", "", 1, false},
		{"Voicemail", []hook{{0, in(a, a, []string{"Ann"}, []string{"w1"})}, {21.5, fHangup(a, a, "forwarded")},
			{21.6, in(b, a, []string{"voicemail"}, nil, "diversion", "4930555")}, {22, fAnswer(b, a, "", "", "")}, {52, fHangup(b, a, "normalClearing")}},
			"voicemail", "", 2, true},
		{"CallerHangsUpWhileRinging", []hook{{0, in(a, a, []string{"Ann", "Ben"}, []string{"w1", "w2"})}, {12, fHangup(a, a, "cancel")}}, "missed", "", 1, true},
		{"RejectedBusy", []hook{{0, in(a, a, []string{"Ann"}, []string{"w1"})}, {2, fHangup(a, a, "busy")}}, "missed", "", 1, true},
		{"Transfer", []hook{{0, in(a, a, []string{"Ann"}, []string{"w1"})}, {3, fAnswer(a, a, "Ann", "w1", "4930555")}, {40, fHangup(a, a, "forwarded")},
			{40.1, in(b, a, []string{"Ben"}, []string{"w2"})}, {45, fAnswer(b, a, "Ben", "w2", "4930555")}, {103, fHangup(b, a, "normalClearing")}},
			"answered", "Ann", 2, false},
		{"OutgoingBusy", []hook{{0, out(a)}, {3, fHangup(a, "", "busy")}}, "outgoing-unreached", "", 1, false},
		{"OutgoingNoAnswer", []hook{{0, out(a)}, {40, fHangup(a, "", "noAnswer")}}, "outgoing-unreached", "", 1, false},
		{"OutgoingAnswered", []hook{{0, out(a)}, {5, fAnswer(a, "", "Ann", "w1", "")}, {25, fHangup(a, "", "normalClearing")}}, "answered", "Ann", 1, false},
	}
}

// syncJourneys waits until in's store has computed the journeys of
// everything posted so far (they are computed just after each write).
func syncJourneys(tb testing.TB, in *instance) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.store.SyncJourneys(ctx); err != nil {
		tb.Fatal(err)
	}
}

// journeyAPIRow is a journey as GET /api/journeys shows it.
type journeyAPIRow struct {
	JourneyID   string   `json:"journey_id"`
	Outcome     string   `json:"outcome"`
	AnsweredBy  string   `json:"answered_by"`
	Legs        int      `json:"legs"`
	UserIDs     []string `json:"user_ids"`
	WaitSeconds *float64 `json:"wait_seconds"`
	TalkSeconds *float64 `json:"talk_seconds"`
	Direction   string   `json:"direction"`
}

// TestJourneysThroughWebhook posts each scenario through the webhook into
// PostgreSQL, in several orders, and reads it back through the views and
// the API; the journey the SQL keeps is the one the domain's rules
// (callstate.JourneyOf) compute from the same legs.
func TestJourneysThroughWebhook(t *testing.T) {
	db := storetest.NewDatabase(t)
	clk := &clock{}
	in := newInstanceClock(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{}, clk.now)
	base := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(7, 7))
	want := map[string]journeyScenario{}
	n := 0
	for round := range 3 {
		for i := range journeyScenarios("") {
			sc := journeyScenarios(fmt.Sprintf("r%d%02d", round, i))[i]
			n++
			hooks := slices.Clone(sc.hooks)
			if round > 0 { // events in any order
				r.Shuffle(len(hooks), func(i, j int) { hooks[i], hooks[j] = hooks[j], hooks[i] })
			}
			start := base.Add(time.Duration(n) * 10 * time.Minute)
			for _, h := range hooks {
				clk.set(start.Add(time.Duration(h.sec * float64(time.Second))))
				in.post(t, h.form.Encode())
			}
			want[sc.hooks[0].form.Get("callId")] = sc
		}
	}

	var page struct {
		Journeys []journeyAPIRow `json:"journeys"`
	}
	syncJourneys(t, in)
	if code, body := get(t, in, "/api/journeys?limit=1000", nil, &page); code != 200 {
		t.Fatalf("GET /api/journeys: %d %s", code, body)
	}
	if len(page.Journeys) != len(want) {
		t.Fatalf("journeys = %d, want %d", len(page.Journeys), len(want))
	}
	// The legs as the store has them, grouped as the domain groups them.
	calls, _, err := in.store.ListCalls(context.Background(), callstate.CallFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	legs := map[string][]callstate.Call{}
	for _, c := range calls {
		legs[reference.JourneyID(c)] = append(legs[reference.JourneyID(c)], c)
	}
	for _, j := range page.Journeys {
		sc, ok := want[j.JourneyID]
		if !ok {
			t.Errorf("journey %s: not a scenario's", j.JourneyID)
			continue
		}
		if j.Outcome != sc.outcome || j.AnsweredBy != sc.by || j.Legs != sc.legs {
			t.Errorf("%s (%s): outcome %s by %q legs %d; want %s by %q legs %d", sc.name, j.JourneyID, j.Outcome, j.AnsweredBy, j.Legs, sc.outcome, sc.by, sc.legs)
		}
		d := reference.JourneyOf(legs[j.JourneyID])
		w, wok := reference.Wait(d)
		tk, tok := reference.Talk(d)
		if string(d.Outcome) != j.Outcome || d.AnsweredBy != j.AnsweredBy || d.Legs != j.Legs || !slices.Equal(d.UserIDs, j.UserIDs) ||
			(j.WaitSeconds != nil) != wok || (wok && *j.WaitSeconds != w.Seconds()) ||
			(j.TalkSeconds != nil) != tok || (tok && *j.TalkSeconds != tk.Seconds()) {
			t.Errorf("%s: SQL journey %+v differs from the domain's %+v", sc.name, j, d)
		}
	}

	// Missed calls: those of the scenarios that are, none called back.
	var missed struct {
		Missed []struct {
			JourneyID  string `json:"journey_id"`
			Number     string `json:"number"`
			CalledBack bool   `json:"called_back"`
		} `json:"missed"`
	}
	if code, body := get(t, in, "/api/missed?open=false&limit=1000", nil, &missed); code != 200 {
		t.Fatalf("GET /api/missed: %d %s", code, body)
	}
	wantMissed := 0
	for _, sc := range want {
		if sc.missed {
			wantMissed++
		}
	}
	if len(missed.Missed) != wantMissed {
		t.Errorf("missed calls = %d, want %d", len(missed.Missed), wantMissed)
	}
	for _, m := range missed.Missed {
		if sc := want[m.JourneyID]; !sc.missed || m.CalledBack {
			t.Errorf("missed call %+v: scenario %s", m, sc.name)
		}
	}

	// Calling one back (an answered outgoing call to the number) closes it.
	if len(missed.Missed) == 0 {
		t.Fatal("no missed calls")
	}
	first := missed.Missed[len(missed.Missed)-1]
	back := "cb1"
	clk.set(base.Add(24 * time.Hour))
	in.post(t, fNew(back, "", "out", "4930555", first.Number, []string{"Ann"}, []string{"w1"}).Encode())
	in.post(t, fAnswer(back, "", "Ann", "w1", "").Encode())
	in.post(t, fHangup(back, "", "normalClearing").Encode())
	syncJourneys(t, in)
	if code, body := get(t, in, "/api/missed?limit=1000", nil, &missed); code != 200 {
		t.Fatalf("GET /api/missed: %d %s", code, body)
	}
	for _, m := range missed.Missed {
		if m.Number == first.Number {
			t.Errorf("missed call of %s still open after the call back", m.Number)
		}
	}

	// The day's team stats count journeys, not legs.
	var stats struct {
		Stats []struct {
			Day       string   `json:"day"`
			UserID    string   `json:"user_id"`
			CallsIn   int64    `json:"calls_in"`
			CallsOut  int64    `json:"calls_out"`
			Answered  int64    `json:"answered"`
			Missed    int64    `json:"missed"`
			Voicemail int64    `json:"voicemail"`
			Ratio     *float64 `json:"answer_ratio"`
		} `json:"stats"`
	}
	if code, body := get(t, in, "/api/stats?from=2026-11-24&to=2026-11-24&user=", nil, &stats); code != 200 || len(stats.Stats) != 1 {
		t.Fatalf("GET /api/stats: %d %s", code, body)
	}
	var wantIn, wantOut, wantAns, wantMiss, wantVM int64
	for _, sc := range want {
		switch {
		case sc.hooks[0].form.Get("direction") == "out":
			wantOut++
		default:
			wantIn++
			switch sc.outcome {
			case "answered":
				wantAns++
			case "missed":
				wantMiss++
			case "voicemail":
				wantVM++
			}
		}
	}
	s := stats.Stats[0]
	if s.UserID != "" || s.CallsIn != wantIn || s.CallsOut != wantOut || s.Answered != wantAns || s.Missed != wantMiss || s.Voicemail != wantVM ||
		s.Ratio == nil || *s.Ratio != float64(wantAns)/float64(wantAns+wantMiss+wantVM) {
		t.Errorf("team stats %+v; want in %d out %d answered %d missed %d voicemail %d", s, wantIn, wantOut, wantAns, wantMiss, wantVM)
	}

	// Bad parameters are refused with a clear error.
	for path, want := range map[string]string{
		"/api/journeys?outcome=lost":               "outcome must be one of",
		"/api/stats?from=2026-12-01&to=2026-11-01": "from must not be after to",
		"/api/stats?from=2026-12-01T00:00:00Z":     "from must be a date such as 2026-01-31",
		"/api/journeys?since=2026-12-01":           "since must be an RFC 3339 time",
		"/api/missed?open=maybe":                   "open must be one of",
		"/api/journeys?cursor=AAAA":                "cursor is not one this API returned",
	} {
		code, body := get(t, in, path, nil, nil)
		if code != 400 || !contains(body, want) {
			t.Errorf("GET %s: %d %s; want 400 with %q", path, code, body, want)
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestHangupMissing: a call whose hangup never comes stays active until
// callstate's timeout ends it (cmd/callstate's stuck-call sweep journals a
// "timeout" event); unanswered, the journey then counts as failed, not as
// missed, since it cannot be told whether someone answered.
func TestHangupMissing(t *testing.T) {
	db := storetest.NewDatabase(t)
	in := newInstance(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{})
	in.post(t, fNew("hm1", "hm1", "in", "4917", "4930", []string{"Ann"}, []string{"w1"}).Encode())
	journey := func() journeyAPIRow {
		t.Helper()
		var page struct {
			Journeys []journeyAPIRow `json:"journeys"`
		}
		syncJourneys(t, in)
		get(t, in, "/api/journeys", nil, &page)
		if len(page.Journeys) != 1 {
			t.Fatalf("journeys: %+v", page)
		}
		return page.Journeys[0]
	}
	if j := journey(); j.Outcome != "active" || j.WaitSeconds != nil {
		t.Fatalf("ringing: %+v", j)
	}
	ev := callstate.Event{Source: callstate.SourceSipgate, Type: "timeout", DedupKey: "timeout:hm1", ReceivedAt: time.Now().Add(30 * time.Minute),
		Payload: []byte(`{}`), Update: callstate.Update{Key: "hm1", State: callstate.StateEnded, Cause: "timeout", Guessed: true}}
	if _, err := in.store.Apply(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if j := journey(); j.Outcome != "failed" {
		t.Errorf("after the timeout: %+v", j)
	}
}

// TestTypedStreamEvents reads the live stream with a real SSE client:
// besides the whole call, a leg's ringing, answer and end, a journey's
// missed or voicemail end and a lamp's change come as typed events, each
// with the journey id.
func TestTypedStreamEvents(t *testing.T) {
	db := storetest.NewDatabase(t)
	in := newInstance(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{})
	sc := openStream(t, in, "")
	sc.next(t, handlers.EventSnapshot, 10*time.Second)

	type typed struct {
		JourneyID string `json:"journey_id"`
		Call      *struct {
			Key   string `json:"key"`
			State string `json:"state"`
		} `json:"call"`
		Journey *struct {
			Outcome string `json:"outcome"`
			Legs    int    `json:"legs"`
		} `json:"journey"`
	}
	read := func(typ string) typed {
		t.Helper()
		ev := sc.next(t, typ, 10*time.Second)
		var v typed
		if err := json.Unmarshal([]byte(ev.Data), &v); err != nil {
			t.Fatalf("%s: %v in %s", typ, err, ev.Data)
		}
		if ev.LastEventID == "" {
			t.Errorf("%s without an id", typ)
		}
		return v
	}

	// Missed: the caller gives up while it rings.
	in.post(t, fNew("s1", "s1", "in", "4917", "4930", []string{"Ann"}, []string{"w1"}).Encode())
	if v := read(handlers.EventCallRinging); v.JourneyID != "s1" || v.Call == nil || v.Call.State != "ringing" {
		t.Errorf("call.ringing %+v", v)
	}
	if l := sc.next(t, handlers.EventLampChanged, 10*time.Second); !contains(l.Data, `"lamp":"ringing"`) {
		t.Errorf("lamp.changed %s", l.Data)
	}
	in.post(t, fHangup("s1", "s1", "cancel").Encode())
	if v := read(handlers.EventCallEnded); v.JourneyID != "s1" || v.Call.State != "ended" {
		t.Errorf("call.ended %+v", v)
	}
	if v := read(handlers.EventCallMissed); v.JourneyID != "s1" || v.Journey == nil || v.Journey.Outcome != "missed" {
		t.Errorf("call.missed %+v", v)
	}

	// Voicemail: the first leg is forwarded, the voicemail leg answers.
	in.post(t, fNew("s2", "s2", "in", "4917", "4930", []string{"Ann"}, []string{"w1"}).Encode())
	in.post(t, fHangup("s2", "s2", "forwarded").Encode())
	in.post(t, fNew("s2v", "s2", "in", "4917", "4930", []string{"voicemail"}, nil).Encode())
	in.post(t, fAnswer("s2v", "s2", "", "", "").Encode())
	if v := read(handlers.EventCallAnswered); v.JourneyID != "s2" || v.Call.Key != "s2v" {
		t.Errorf("call.answered %+v", v)
	}
	in.post(t, fHangup("s2v", "s2", "normalClearing").Encode())
	// The whole-object event comes first, with the journey id.
	if ev := sc.next(t, handlers.EventCall, 10*time.Second); !contains(ev.Data, `"journey_id":"s2"`) {
		t.Errorf("call event %s", ev.Data)
	}
	if v := read(handlers.EventCallVoicemail); v.JourneyID != "s2" || v.Journey.Outcome != "voicemail" || v.Journey.Legs != 2 {
		t.Errorf("call.voicemail %+v", v)
	}
}
