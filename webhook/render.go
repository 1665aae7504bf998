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
	Name(number string) string   // the phonebook's name of a number, "" if none
	Format(number string) string // the number written for reading
	UserName(id string) string   // a user's (or extension's) name, "" if none
}

// noNames knows nobody.
type noNames struct{}

func (noNames) Name(string) string        { return "" }
func (noNames) Format(n string) string    { return n }
func (noNames) UserName(id string) string { return "" }

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

type callData struct {
	JourneyID string    `json:"journey_id"`
	Call      *callBody `json:"call"`
	Digits    string    `json:"digits,omitempty"`
}

type callBody struct {
	ID         int64      `json:"id"`
	Source     string     `json:"source"`
	Key        string     `json:"key"`
	CallID     string     `json:"call_id,omitempty"`
	Direction  string     `json:"direction,omitempty"`
	From       string     `json:"from,omitempty"`
	FromName   string     `json:"from_name,omitempty"`
	To         string     `json:"to,omitempty"`
	ToName     string     `json:"to_name,omitempty"`
	Extension  string     `json:"extension,omitempty"`
	Users      []string   `json:"users,omitempty"`
	UserIDs    []string   `json:"user_ids,omitempty"`
	AnsweredBy string     `json:"answered_by,omitempty"`
	Answering  string     `json:"answering_number,omitempty"`
	Diversion  string     `json:"diversion,omitempty"`
	State      string     `json:"state"`
	OnHold     bool       `json:"on_hold"`
	Cause      string     `json:"cause,omitempty"`
	DTMF       string     `json:"dtmf,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	AnsweredAt *time.Time `json:"answered_at,omitempty"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`
}

type journeyData struct {
	JourneyID string       `json:"journey_id"`
	Journey   *journeyBody `json:"journey"`
}

type journeyBody struct {
	ID             string     `json:"journey_id"`
	Direction      string     `json:"direction"`
	From           string     `json:"from"`
	FromName       string     `json:"from_name,omitempty"`
	To             string     `json:"to"`
	ToName         string     `json:"to_name,omitempty"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	AnsweredAt     *time.Time `json:"answered_at,omitempty"`
	EndedAt        *time.Time `json:"ended_at,omitempty"`
	Outcome        string     `json:"outcome"`
	AnsweredBy     string     `json:"answered_by,omitempty"`
	AnsweredUserID string     `json:"answered_user_id,omitempty"`
	WaitSeconds    *float64   `json:"wait_seconds"`
	TalkSeconds    *float64   `json:"talk_seconds"`
	UserIDs        []string   `json:"user_ids"`
	Legs           int        `json:"legs"`
	Cause          string     `json:"cause,omitempty"`
}

type lampData struct {
	Source      string    `json:"source"`
	Extension   string    `json:"extension"`
	Name        string    `json:"name,omitempty"`
	Lamp        string    `json:"lamp"`
	ActiveCalls int64     `json:"active_calls"`
	UpdatedAt   time.Time `json:"updated_at"`
	Previous    string    `json:"previous"`
}

func tp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
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

func (r Renderer) data(ev callstate.FeedEvent) any {
	n := r.names()
	switch {
	case ev.Call != nil:
		c := ev.Call
		cd := callData{JourneyID: ev.JourneyID, Call: &callBody{ID: c.ID, Source: string(c.Source), Key: c.Key,
			CallID: c.CallID, Direction: string(c.Direction), From: c.From, FromName: n.Name(c.From),
			To: c.To, ToName: n.Name(c.To), Extension: c.Extension, Users: c.Users, UserIDs: c.UserIDs,
			AnsweredBy: c.AnsweredBy, Answering: c.Answering, Diversion: c.Diversion, State: c.State.String(),
			OnHold: c.OnHold, Cause: c.Cause, DTMF: c.DTMF,
			StartedAt: tp(c.StartedAt), AnsweredAt: tp(c.AnsweredAt), EndedAt: tp(c.EndedAt)}}
		if ev.Press != nil {
			cd.Digits = ev.Press.Digits
		}
		return cd
	case ev.Journey != nil:
		j := ev.Journey
		secs := func(d time.Duration, ok bool) *float64 {
			if !ok {
				return nil
			}
			s := d.Seconds()
			return &s
		}
		users := j.UserIDs
		if users == nil {
			users = []string{}
		}
		return journeyData{JourneyID: ev.JourneyID, Journey: &journeyBody{ID: j.ID, Direction: string(j.Direction),
			From: j.From, FromName: n.Name(j.From), To: j.To, ToName: n.Name(j.To),
			StartedAt: tp(j.StartedAt), AnsweredAt: tp(j.AnsweredAt), EndedAt: tp(j.EndedAt), Outcome: string(j.Outcome),
			AnsweredBy: j.AnsweredBy, AnsweredUserID: j.AnsweredUserID, WaitSeconds: secs(j.Wait()),
			TalkSeconds: secs(j.Talk()), UserIDs: users, Legs: j.Legs, Cause: j.Cause}}
	case ev.Lamp != nil:
		l := ev.Lamp
		return lampData{Source: string(l.Source), Extension: l.Extension, Name: l.Name, Lamp: l.Lamp,
			ActiveCalls: l.ActiveCalls, UpdatedAt: l.UpdatedAt.UTC(), Previous: ev.Previous}
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
