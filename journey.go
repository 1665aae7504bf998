package callstate

import (
	"time"
)

// Outcome is how a journey ended, as a person counts it.
type Outcome string

// The outcomes of a journey.
const (
	OutcomeActive    Outcome = "active"             // a leg is still ringing or answered
	OutcomeAnswered  Outcome = "answered"           // a person answered (see Call.AnsweredByPerson)
	OutcomeVoicemail Outcome = "voicemail"          // the voicemail, or a queue, picked up and no person did
	OutcomeMissed    Outcome = "missed"             // incoming, never answered: ring-out, caller gave up, rejected, busy
	OutcomeForwarded Outcome = "forwarded"          // forwarded out of our sight (the last leg ended "forwarded")
	OutcomeUnreached Outcome = "outgoing-unreached" // outgoing, not answered: busy, no answer, not found, cancelled
	OutcomeFailed    Outcome = "failed"             // ended for a technical reason, or its end never came (timeout, vanished)
)

// Outcomes lists every Outcome, as journey.outcome's CHECK allows them.
var Outcomes = []Outcome{OutcomeActive, OutcomeAnswered, OutcomeVoicemail, OutcomeMissed, OutcomeForwarded, OutcomeUnreached, OutcomeFailed}

// Journey is one call as a person counts it: the legs sipgate reports for
// one call (forwards, the voicemail) or the SIP dialogs of one call on
// several watched extensions, with one outcome. It is a function of its
// legs, so it is as order-independent as they are. The database computes
// it (the call_leg and journey_from_legs views, store/schema.sql) and
// keeps it (the journey table); internal/reference.JourneyOf says the same
// rules in Go for the tests.
type Journey struct {
	ID             string
	Direction      Direction // in when any leg is in, else out when any is out
	From, To       string    // of the first leg (earliest start) that names them
	StartedAt      time.Time // earliest leg's start
	AnsweredAt     time.Time // earliest answer by a person; zero if none
	EndedAt        time.Time // latest leg's end; zero while a leg is active
	Outcome        Outcome
	AnsweredBy     string   // who answered: the user's name, else the answering number, else the extension
	AnsweredUserID string   // the answering leg's user id or extension
	UserIDs        []string // every user or extension the journey was offered to or placed by, sorted
	Legs           int
	Cause          string    // the cause of the leg that ended last
	VoicemailAt    time.Time // earliest pickup by voicemail or a queue; zero if none
	Rule           string    // the routing rule of the leg routed first (earliest RuleAt; on a tie the greater name); "" if none
	Learned        bool      // every leg was learned from sipgate's history: nobody saw it wait

	// WaitSeconds is how long the caller waited: until a person answered,
	// else until the voicemail picked up, else until the journey ended;
	// nil while it is active and no person has answered. TalkSeconds is
	// the time from a person's answer to the journey's end; nil unless the
	// journey was answered and ended. Both as the journey table has them.
	WaitSeconds, TalkSeconds *float64
}

// VoicemailLeg reports whether c is a sipgate leg to the voicemail: offered
// to user[]=voicemail alone (sipgate's own statistics example tells them so).
func (c Call) VoicemailLeg() bool {
	return c.Source == SourceSipgate && len(c.Users) == 1 && c.Users[0] == "voicemail"
}

// AnsweredByPerson reports whether a person answered c: it was answered,
// is no voicemail leg, and is a SIP dialog, an outgoing call, or an
// incoming sipgate call whose answer names a user or an answering number.
// sipgate answers with neither when its voicemail or a queue picks up
// (sipgate.io issue 70).
func (c Call) AnsweredByPerson() bool {
	if c.AnsweredAt.IsZero() || c.VoicemailLeg() {
		return false
	}
	return c.Source == SourceSIP || c.Direction == DirectionOut || c.AnsweredBy != "" || c.Answering != ""
}

// TypedEvent names what u tells about its call: the state it reports, else
// DTMF or hold, else EventOther.
func TypedEvent(u Update) string {
	switch {
	case u.State == StateEnded:
		return EventEnded
	case u.State == StateAnswered:
		return EventAnswered
	case u.DTMF != "":
		return EventDTMF
	case u.OnHold != nil:
		return EventHeld
	case u.State == StateRinging:
		return EventRinging
	}
	return EventOther
}
