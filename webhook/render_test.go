package webhook_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/webhook"
)

// names is a phonebook of one caller and one user.
type names struct{}

func (names) Name(n string) string {
	if n == "491701234567" {
		return "Anna Schmidt"
	}
	return ""
}

func (names) Format(n string) string {
	if n == "491701234567" {
		return "+49 170 1234567"
	}
	return n
}

func (names) CauseText(c callstate.Call) string { return "in words: " + c.Cause }

func (names) UserName(id string) string {
	if id == "w1" {
		return "Alice"
	}
	return ""
}

var at = time.Date(2026, 12, 7, 9, 42, 0, 0, time.UTC)

func missedEvent() callstate.FeedEvent {
	return callstate.FeedEvent{ID: 42, Type: callstate.EventMissed, At: at.Add(time.Minute), JourneyID: "j1",
		Journey: &callstate.Journey{ID: "j1", Direction: callstate.DirectionIn, From: "491701234567", To: "4930555",
			StartedAt: at, EndedAt: at.Add(time.Minute), Outcome: callstate.OutcomeMissed, UserIDs: []string{"w1"}, Legs: 1}}
}

func ringingEvent() callstate.FeedEvent {
	return callstate.FeedEvent{ID: 7, Type: callstate.EventRinging, At: at, JourneyID: "c1",
		Call: &callstate.Call{ID: 3, Source: callstate.SourceSipgate, Key: "c1", CallID: "c1", Direction: callstate.DirectionIn,
			From: "491701234567", To: "4930555", Users: []string{"Alice"}, UserIDs: []string{"w1"}, State: callstate.StateRinging, StartedAt: at}}
}

func TestRenderStandard(t *testing.T) {
	r := webhook.Renderer{Names: names{}}
	ep := callstate.WebhookEndpoint{ID: 1, Format: callstate.FormatStandard}
	d, ok := r.Render(ep, ringingEvent())
	if !ok || d.MsgID != "msg_7" || d.OrderKey != "c1" || d.ContentType != "application/json" {
		t.Fatalf("delivery %+v %v", d, ok)
	}
	var m struct {
		Type      string    `json:"type"`
		Timestamp time.Time `json:"timestamp"`
		Data      struct {
			JourneyID string `json:"journey_id"`
			Call      struct {
				State    string `json:"state"`
				FromName string `json:"from_name"`
			} `json:"call"`
		} `json:"data"`
	}
	if err := json.Unmarshal(d.Body, &m); err != nil {
		t.Fatal(err)
	}
	if m.Type != "call.ringing" || !m.Timestamp.Equal(at) || m.Data.JourneyID != "c1" || m.Data.Call.State != "ringing" || m.Data.Call.FromName != "Anna Schmidt" {
		t.Fatalf("body %s", d.Body)
	}
	// Types the endpoint did not choose give nothing; lamps their own order key.
	if _, ok := r.Render(callstate.WebhookEndpoint{Types: []string{callstate.EventMissed}}, ringingEvent()); ok {
		t.Error("call.ringing rendered for an endpoint of call.missed only")
	}
	if _, ok := r.Render(ep, callstate.FeedEvent{ID: 8, Type: callstate.EventOther}); ok {
		t.Error("call.updated rendered for an endpoint of the default types")
	}
	// The data is the object the live stream sends (callstate.FeedJSON),
	// names and all.
	for _, ev := range []callstate.FeedEvent{ringingEvent(), missedEvent()} {
		d, _ := r.Render(ep, ev)
		var m struct{ Data json.RawMessage }
		if err := json.Unmarshal(d.Body, &m); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(callstate.FeedJSON(ev, ev.Seq, names{}))
		if string(m.Data) != string(want) {
			t.Errorf("%s: data %s; the stream's is %s", ev.Type, m.Data, want)
		}
	}
	l, ok := r.Render(ep, callstate.FeedEvent{ID: 9, Type: callstate.EventLampChanged, Lamp: &callstate.LampStatus{Source: "sip", Extension: "100", Lamp: "busy"}, Previous: "idle"})
	if !ok || l.OrderKey != "lamp:sip/100" || !strings.Contains(string(l.Body), `"previous":"idle"`) {
		t.Errorf("lamp %+v %s", l, l.Body)
	}
}

func TestRenderZammad(t *testing.T) {
	r := webhook.Renderer{}
	ep := callstate.WebhookEndpoint{Format: callstate.FormatZammad}
	d, ok := r.Render(ep, ringingEvent())
	if !ok || d.ContentType != "application/x-www-form-urlencoded" {
		t.Fatalf("%+v %v", d, ok)
	}
	v, err := url.ParseQuery(string(d.Body))
	if err != nil || v.Get("event") != "newCall" || v.Get("from") != "491701234567" || v.Get("direction") != "in" ||
		v.Get("callId") != "c1" || v.Get("user[]") != "Alice" {
		t.Fatalf("form %s", d.Body)
	}
	end := ringingEvent()
	end.Type, end.Call.State, end.Call.Cause = callstate.EventEnded, callstate.StateEnded, "cancel"
	d, _ = r.Render(ep, end)
	if v, _ := url.ParseQuery(string(d.Body)); v.Get("event") != "hangup" || v.Get("cause") != "cancel" {
		t.Fatalf("hangup %s", d.Body)
	}
	if _, ok := r.Render(ep, missedEvent()); ok {
		t.Error("Zammad got a journey event")
	}
}

func TestRenderChat(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	r := webhook.Renderer{Names: names{}, Location: berlin}
	ep := callstate.WebhookEndpoint{Format: callstate.FormatChat}
	d, ok := r.Render(ep, missedEvent())
	if !ok {
		t.Fatal("no chat message for a missed call")
	}
	var m map[string]string
	if err := json.Unmarshal(d.Body, &m); err != nil {
		t.Fatal(err)
	}
	if want := "Missed call from Anna Schmidt (+49 170 1234567) for Alice at 10:42 — not called back yet"; m["text"] != want {
		t.Fatalf("text %q, want %q", m["text"], want)
	}
	vm := missedEvent()
	vm.Type, vm.Journey.Outcome = callstate.EventVoicemail, callstate.OutcomeVoicemail
	vm.Journey.From = ""
	if got := r.ChatText(vm.Type, *vm.Journey); got != "Voicemail from an unknown number for Alice at 10:42" {
		t.Fatalf("voicemail %q", got)
	}
	if _, ok := r.Render(ep, ringingEvent()); ok {
		t.Error("chat message for a ringing call")
	}
}
