package webhook

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/callstate/callstate"
)

// Names tells the people behind numbers and user ids, for bodies people
// read (the chat format) and for the parties' names in every format.
type Names interface {
	callstate.Names            // the parties' names, the numbers for reading, the cause in words
	UserName(id string) string // a user's (or extension's) name, "" if none
}

// noNames knows nobody.
type noNames struct{}

func (noNames) Name(string) string                { return "" }
func (noNames) Format(n string) string            { return n }
func (noNames) CauseText(c callstate.Call) string { return c.Cause }
func (noNames) UserName(id string) string         { return "" }

// Renderer turns feed events into an endpoint's messages.
type Renderer struct {
	Names    Names          // nil: no names
	Location *time.Location // times in the chat format; nil: UTC
}

// message is the body of the standard format: {type, timestamp, data}.
type message struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      any       `json:"data"`
}

func (r Renderer) names() Names {
	if r.Names == nil {
		return noNames{}
	}
	return r.Names
}

// MsgID is the webhook-id of the message of feed event id: one per event,
// the same for every endpoint and every try.
func MsgID(feedID int64) string { return "msg_" + strconv.FormatInt(feedID, 10) }

// Render returns ep's delivery of ev, or false when ep receives nothing for
// it (a type it did not choose, or one its format has no message for).
func (r Renderer) Render(ep callstate.WebhookEndpoint, ev callstate.FeedEvent) (callstate.WebhookDelivery, bool) {
	if !ep.Wants(ev.Type) {
		return callstate.WebhookDelivery{}, false
	}
	d := callstate.WebhookDelivery{EndpointID: ep.ID, FeedID: ev.ID, MsgID: MsgID(ev.ID), Type: ev.Type,
		JourneyID: ev.JourneyID, OrderKey: ev.JourneyID}
	if ev.Lamp != nil {
		d.OrderKey = "lamp:" + string(ev.Lamp.Source) + "/" + ev.Lamp.Extension
	}
	var ok bool
	switch ep.Format {
	case callstate.FormatZammad:
		d.Body, ok = r.zammad(ev)
		d.ContentType = "application/x-www-form-urlencoded"
	case callstate.FormatChat:
		d.Body, ok = r.chat(ev)
		d.ContentType = "application/json"
	default:
		d.Body, ok = r.standard(ev), true
		d.ContentType = "application/json"
	}
	return d, ok
}

func (r Renderer) standard(ev callstate.FeedEvent) []byte {
	m := message{Type: ev.Type, Timestamp: ev.At.UTC(), Data: r.data(ev)}
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("webhook: encode %s: %v", ev.Type, err)) // our own types always encode
	}
	return b
}

// data is the data of ev's message in the standard format: the objects
// the live stream sends (callstate.FeedJSON), the same whatever the
// receiver.
func (r Renderer) data(ev callstate.FeedEvent) any {
	var names callstate.Names
	if r.Names != nil {
		names = r.Names
	}
	if d := callstate.FeedJSON(ev, ev.Seq, names); d != nil {
		return d
	}
	return struct{}{}
}

// zammad renders Zammad's generic CTI form (newCall, answer, hangup) of a
// leg's ringing, answer and end; nothing for other events.
func (r Renderer) zammad(ev callstate.FeedEvent) ([]byte, bool) {
	c := ev.Call
	if c == nil {
		return nil, false
	}
	v := url.Values{"from": {c.From}, "to": {c.To}, "direction": {string(c.Direction)}, "callId": {zammadCallID(*c)}}
	switch ev.Type {
	case callstate.EventRinging:
		v.Set("event", "newCall")
		for _, u := range c.Users {
			v.Add("user[]", u)
		}
	case callstate.EventAnswered:
		v.Set("event", "answer")
		if c.AnsweredBy != "" {
			v.Set("user", c.AnsweredBy)
		}
		if c.Answering != "" {
			v.Set("answeringNumber", c.Answering)
		}
	case callstate.EventEnded:
		v.Set("event", "hangup")
		v.Set("cause", zammadCause(c.Cause))
		if c.Answering != "" {
			v.Set("answeringNumber", c.Answering)
		}
	default:
		return nil, false
	}
	return []byte(v.Encode()), true
}

// zammadCallID is the id Zammad matches a call's three events by: the
// leg's call id (sipgate's callId, a SIP Call-ID), else its key.
func zammadCallID(c callstate.Call) string {
	if c.CallID != "" {
		return c.CallID
	}
	return string(c.Source) + ":" + c.Key
}

// zammadCause maps a hang-up cause to Zammad's (sipgate.io's names, which
// Zammad's generic CTI takes); others pass as they are.
func zammadCause(cause string) string {
	switch cause {
	case "":
		return callstate.CauseNormalClearing
	case callstate.CauseRejected, "busy-here":
		return callstate.CauseBusy
	case callstate.CauseTimeout:
		return callstate.CauseNoAnswer
	}
	return cause
}

// chat renders the incoming-webhook message ({"text"}) that Slack,
// Mattermost and Teams take, for a missed call or a voicemail.
func (r Renderer) chat(ev callstate.FeedEvent) ([]byte, bool) {
	j := ev.Journey
	if j == nil || (ev.Type != callstate.EventMissed && ev.Type != callstate.EventVoicemail) {
		return nil, false
	}
	b, _ := json.Marshal(map[string]string{"text": r.ChatText(ev.Type, *j)})
	return b, true
}

// ChatText is the chat format's text for a missed call or a voicemail,
// e.g. "Missed call from Anna Schmidt (+49 170 1234567) for Alice at
// 10:42 — not called back yet".
func (r Renderer) ChatText(typ string, j callstate.Journey) string {
	n := r.names()
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	from := "an unknown number"
	if j.From != "" {
		from = n.Format(j.From)
		if name := n.Name(j.From); name != "" {
			from = name + " (" + from + ")"
		}
	}
	var users []string
	for _, id := range j.UserIDs {
		users = append(users, cmpOr(n.UserName(id), id))
	}
	what := "Missed call"
	if typ == callstate.EventVoicemail {
		what = "Voicemail"
	}
	text := what + " from " + from
	if len(users) > 0 {
		text += " for " + strings.Join(users, ", ")
	}
	if !j.StartedAt.IsZero() {
		text += " at " + j.StartedAt.In(loc).Format("15:04")
	}
	if typ == callstate.EventMissed {
		text += " — not called back yet"
	}
	return text
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestMessage is the delivery of a test message to ep (POST
// /api/webhooks/{id}/test): a webhook.test event, or a chat text for the
// chat format, with a message id of its own.
func TestMessage(ep callstate.WebhookEndpoint, now time.Time) callstate.WebhookDelivery {
	id := "msg_test_" + strconv.FormatInt(now.UnixNano(), 36)
	d := callstate.WebhookDelivery{EndpointID: ep.ID, MsgID: id, OrderKey: id, Type: callstate.EventWebhookTest,
		ContentType: "application/json"}
	switch ep.Format {
	case callstate.FormatChat:
		d.Body, _ = json.Marshal(map[string]string{"text": "callstate: test message"})
	case callstate.FormatZammad:
		d.ContentType = "application/x-www-form-urlencoded"
		d.Body = []byte(url.Values{"event": {"test"}}.Encode())
	default:
		d.Body, _ = json.Marshal(message{Type: callstate.EventWebhookTest, Timestamp: now.UTC(),
			Data: map[string]string{"message": "callstate: test message"}})
	}
	return d
}
