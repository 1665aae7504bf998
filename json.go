package callstate

import "time"

// This file is the JSON callstate shows the outside: the HTTP API, the
// live stream and the webhooks out send these same objects, so that a
// call, a journey or a lamp reads the same wherever it is received.

// Names tells the people behind numbers, and a call's cause in words, for
// the JSON callstate shows. The handlers' phonebook is one.
type Names interface {
	Name(number string) string   // the phonebook's name of a number, "" if none
	Format(number string) string // the number written for reading
	CauseText(c Call) string     // why c ended, in words
}

// CallJSON is a call as callstate shows it.
type CallJSON struct {
	ID         int64      `json:"id"`
	Seq        int64      `json:"seq,omitempty"`
	Source     string     `json:"source"`
	Key        string     `json:"key"`
	JourneyID  string     `json:"journey_id"`
	CallID     string     `json:"call_id,omitempty"`
	OrigCallID string     `json:"orig_call_id,omitempty"`
	Extension  string     `json:"extension,omitempty"`
	Direction  string     `json:"direction,omitempty"`
	From       string     `json:"from,omitempty"`
	To         string     `json:"to,omitempty"`
	Users      []string   `json:"users,omitempty"`
	UserIDs    []string   `json:"user_ids,omitempty"`
	AnsweredBy string     `json:"answered_by,omitempty"`
	Answering  string     `json:"answering_number,omitempty"`
	Diversion  string     `json:"diversion,omitempty"`
	State      string     `json:"state"`
	Active     bool       `json:"active"`
	OnHold     bool       `json:"on_hold"`
	Cause      string     `json:"cause,omitempty"`
	DTMF       string     `json:"dtmf,omitempty"`
	Rule       string     `json:"rule,omitempty"`
	StartedAt  *time.Time `json:"started_at"`
	AnsweredAt *time.Time `json:"answered_at,omitempty"`
	EndedAt    *time.Time `json:"ended_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
	Learned    bool       `json:"learned,omitempty"` // known only from sipgate's history: its webhooks never came
	NoNews     bool       `json:"no_news,omitempty"` // ringing with no news for a while: likely a lost hangup, not waiting (Call.NoNews)

	// For reading: the phonebook's names, the numbers formatted, the
	// cause in words (see Names).
	FromName           string `json:"from_name,omitempty"`
	ToName             string `json:"to_name,omitempty"`
	FromFormatted      string `json:"from_formatted,omitempty"`
	ToFormatted        string `json:"to_formatted,omitempty"`
	DiversionFormatted string `json:"diversion_formatted,omitempty"`
	CauseText          string `json:"cause_text,omitempty"`
}

// NewCallJSON returns c as callstate shows it, with seq (its place in the
// changes; 0 for none) and the names of names (nil for none).
func NewCallJSON(c Call, seq int64, names Names) CallJSON {
	j := CallJSON{
		ID: c.ID, Seq: seq, Source: string(c.Source), Key: c.Key, JourneyID: c.JourneyID, CallID: c.CallID, OrigCallID: c.OrigCallID,
		Extension: c.Extension, Direction: string(c.Direction), From: c.From, To: c.To,
		Users: nonNil(c.Users), UserIDs: nonNil(c.UserIDs), AnsweredBy: c.AnsweredBy, Answering: c.Answering,
		Diversion: c.Diversion, State: c.State.String(), Active: c.Active(), OnHold: c.OnHold,
		Cause: c.Cause, DTMF: c.DTMF, Rule: c.Rule,
		StartedAt: timePtr(c.StartedAt), AnsweredAt: timePtr(c.AnsweredAt), EndedAt: timePtr(c.EndedAt), UpdatedAt: c.UpdatedAt.UTC(),
		Learned: c.Learned,
	}
	if names != nil {
		j.FromName, j.ToName = names.Name(c.From), names.Name(c.To)
		j.FromFormatted, j.ToFormatted = names.Format(c.From), names.Format(c.To)
		j.DiversionFormatted = names.Format(c.Diversion)
		if c.Cause != "" {
			j.CauseText = names.CauseText(c)
		}
	}
	return j
}

// JourneyJSON is a journey as callstate shows it.
type JourneyJSON struct {
	JourneyID      string     `json:"journey_id"`
	Direction      string     `json:"direction"`
	From           string     `json:"from"`
	FromName       string     `json:"from_name,omitempty"`
	To             string     `json:"to"`
	ToName         string     `json:"to_name,omitempty"`
	StartedAt      *time.Time `json:"started_at"`
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
	Rule           string     `json:"rule,omitempty"`
}

// NewJourneyJSON returns j as callstate shows it, with the names of its
// parties from names (nil for none).
func NewJourneyJSON(j Journey, names Names) JourneyJSON {
	out := JourneyJSON{
		JourneyID: j.ID, Direction: string(j.Direction), From: j.From, To: j.To,
		StartedAt: timePtr(j.StartedAt), AnsweredAt: timePtr(j.AnsweredAt), EndedAt: timePtr(j.EndedAt),
		Outcome: string(j.Outcome), AnsweredBy: j.AnsweredBy, AnsweredUserID: j.AnsweredUserID,
		WaitSeconds: j.WaitSeconds, TalkSeconds: j.TalkSeconds, UserIDs: nonNil(j.UserIDs), Legs: j.Legs, Cause: j.Cause,
		Rule: j.Rule,
	}
	if names != nil {
		out.FromName, out.ToName = names.Name(j.From), names.Name(j.To)
	}
	return out
}

// LampJSON is a lamp as callstate shows it.
type LampJSON struct {
	Source      string    `json:"source"`
	Extension   string    `json:"extension,omitempty"`
	Name        string    `json:"name"`
	Lamp        string    `json:"lamp"`
	ActiveCalls int64     `json:"active_calls"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// NewLampJSON returns l as callstate shows it.
func NewLampJSON(l LampStatus) LampJSON {
	return LampJSON{Source: string(l.Source), Extension: l.Extension, Name: l.Name, Lamp: l.Lamp,
		ActiveCalls: l.ActiveCalls, UpdatedAt: l.UpdatedAt.UTC()}
}

// TypedJSON is the data of a typed event of a call or a journey, as the
// live stream and the webhooks out send it: {journey_id, call[, digits]}
// or {journey_id, journey}.
type TypedJSON struct {
	JourneyID string       `json:"journey_id,omitempty"`
	Call      *CallJSON    `json:"call,omitempty"`
	Digits    string       `json:"digits,omitempty"` // call.dtmf: the digits of this press
	Journey   *JourneyJSON `json:"journey,omitempty"`
}

// LampChangedJSON is the data of a lamp's event: the lamp and what it
// showed before.
type LampChangedJSON struct {
	LampJSON
	Previous string `json:"previous"`
}

// FeedJSON returns the data of ev as the live stream and the webhooks out
// send it: a TypedJSON for a call's or a journey's event, a
// LampChangedJSON for a lamp's, nil for an event with neither.
func FeedJSON(ev FeedEvent, seq int64, names Names) any {
	switch {
	case ev.Call != nil:
		c := NewCallJSON(*ev.Call, seq, names)
		t := TypedJSON{JourneyID: ev.JourneyID, Call: &c}
		if ev.Press != nil {
			t.Digits = ev.Press.Digits
		}
		return t
	case ev.Journey != nil:
		j := NewJourneyJSON(*ev.Journey, names)
		return TypedJSON{JourneyID: ev.JourneyID, Journey: &j}
	case ev.Lamp != nil:
		return LampChangedJSON{LampJSON: NewLampJSON(*ev.Lamp), Previous: ev.Previous}
	}
	return nil
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
