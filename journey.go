package callstate

import (
	"cmp"
	"slices"
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
	OutcomeFailed    Outcome = "failed"             // ended for a technical reason, or its end never came (timeout)
)

// Outcomes lists every Outcome, as journey.outcome's CHECK allows them.
var Outcomes = []Outcome{OutcomeActive, OutcomeAnswered, OutcomeVoicemail, OutcomeMissed, OutcomeForwarded, OutcomeUnreached, OutcomeFailed}

// Journey is one call as a person counts it: the legs sipgate reports for
// one call (forwards, the voicemail) or the SIP dialogs of one call on
// several watched extensions, with one outcome. It is a function of its
// legs (JourneyOf), so it is as order-independent as they are.
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
}

// JourneyID returns the id of the journey c is a leg of. sipgate: the
// origCallId, which sipgate gives every leg it starts for a forward or the
// voicemail (the first leg carries its own callId), else the callId. SIP:
// "sip:" and the Call-ID, which the dialogs of one call share on every
// watched extension behind a forking proxy (not behind a B2BUA, which
// gives each leg a Call-ID of its own); without one, "sip:" and the key.
func JourneyID(c Call) string {
	switch {
	case c.Source == SourceSIP && c.CallID != "":
		return "sip:" + c.CallID
	case c.Source == SourceSIP:
		return "sip:" + c.Key
	case c.OrigCallID != "":
		return c.OrigCallID
	case c.CallID != "":
		return c.CallID
	}
	return c.Key
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

// Failure reports whether c ended for a technical reason: sipgate's
// congestion or a timeout (a call whose hangup never came, ended by
// callstate), SIP's error or a PBX restart.
func (c Call) Failure() bool {
	switch c.Source {
	case SourceSipgate:
		return c.Cause == CauseCongestion || c.Cause == CauseTimeout
	case SourceSIP:
		return c.Cause == CauseError || c.Cause == CausePBXRestart
	}
	return false
}

func (c Call) answeredByName() string {
	return cmp.Or(c.AnsweredBy, c.Answering, c.Extension)
}

// JourneyOf returns the journey of legs, which must share a JourneyID; the
// order of legs does not matter. Outcome, in this order: active while a
// leg is; answered when a person answered a leg; voicemail when the
// voicemail or a queue picked up; failed when the last leg to end failed;
// outgoing-unreached for an outgoing journey; forwarded when the last leg
// ended "forwarded" (to where we see no leg); failed for "notFound"; else
// missed.
func JourneyOf(legs []Call) Journey {
	if len(legs) == 0 {
		return Journey{}
	}
	byStart := slices.Clone(legs)
	slices.SortFunc(byStart, func(a, b Call) int {
		return cmp.Or(cmpTime(a.StartedAt, b.StartedAt), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Key, b.Key))
	})
	j := Journey{ID: JourneyID(byStart[0]), Legs: len(legs)}
	active, in, out := false, false, false
	j.Learned = true
	var last *Call
	users := map[string]bool{}
	var answering *Call
	var ruleAt time.Time
	for i := range byStart {
		c := &byStart[i]
		if c.Rule != "" && (j.Rule == "" || c.RuleAt.Before(ruleAt) || (c.RuleAt.Equal(ruleAt) && c.Rule > j.Rule)) {
			j.Rule, ruleAt = c.Rule, c.RuleAt
		}
		in = in || c.Direction == DirectionIn
		out = out || c.Direction == DirectionOut
		if j.From == "" {
			j.From = c.From
		}
		if j.To == "" {
			j.To = c.To
		}
		j.StartedAt = earliest(j.StartedAt, c.StartedAt)
		active = active || c.Active() || c.State == StateUnknown
		j.Learned = j.Learned && c.Learned
		if c.AnsweredByPerson() {
			if answering == nil || c.AnsweredAt.Before(answering.AnsweredAt) ||
				(c.AnsweredAt.Equal(answering.AnsweredAt) && cmp.Or(cmp.Compare(c.Source, answering.Source), cmp.Compare(c.Key, answering.Key)) < 0) {
				answering = c
			}
		} else if !c.AnsweredAt.IsZero() {
			j.VoicemailAt = earliest(j.VoicemailAt, c.AnsweredAt)
		}
		if last == nil || endsAfter(*c, *last) {
			last = c
		}
		for _, u := range append(slices.Clone(c.UserIDs), c.Extension) {
			if u != "" && u != "voicemail" {
				users[u] = true
			}
		}
	}
	switch {
	case in:
		j.Direction = DirectionIn
	case out:
		j.Direction = DirectionOut
	}
	for u := range users {
		j.UserIDs = append(j.UserIDs, u)
	}
	slices.Sort(j.UserIDs)
	if answering != nil {
		j.AnsweredAt = answering.AnsweredAt
		j.AnsweredBy = answering.answeredByName()
		j.AnsweredUserID = answering.Extension
	}
	j.Cause = last.Cause
	if !active {
		j.EndedAt = last.EndedAt
	}
	switch {
	case active:
		j.Outcome = OutcomeActive
	case answering != nil:
		j.Outcome = OutcomeAnswered
	case !j.VoicemailAt.IsZero():
		j.Outcome = OutcomeVoicemail
	case last.Failure():
		j.Outcome = OutcomeFailed
	case j.Direction == DirectionOut:
		j.Outcome = OutcomeUnreached
	case last.Cause == CauseForwarded:
		j.Outcome = OutcomeForwarded
	case last.Cause == CauseNotFound:
		j.Outcome = OutcomeFailed
	default:
		j.Outcome = OutcomeMissed
	}
	return j
}

// Wait is how long the caller waited: until a person answered, else until
// the voicemail picked up, else until the journey ended. ok is false while
// it is active and no person has answered.
func (j Journey) Wait() (d time.Duration, ok bool) {
	if j.Outcome == OutcomeActive && j.AnsweredAt.IsZero() {
		return 0, false
	}
	end := j.AnsweredAt
	if end.IsZero() {
		end = j.VoicemailAt
	}
	if end.IsZero() {
		end = j.EndedAt
	}
	if end.IsZero() || j.StartedAt.IsZero() {
		return 0, false
	}
	return end.Sub(j.StartedAt), true
}

// Talk is the time from a person's answer to the journey's end; ok is
// false unless the journey was answered.
func (j Journey) Talk() (d time.Duration, ok bool) {
	if j.Outcome != OutcomeAnswered || j.EndedAt.IsZero() {
		return 0, false
	}
	return j.EndedAt.Sub(j.AnsweredAt), true
}

// endsAfter orders legs by end (a leg not ended first), then source and
// key: the greatest is the leg that ended last.
func endsAfter(a, b Call) bool {
	switch {
	case a.EndedAt.IsZero() != b.EndedAt.IsZero():
		return !a.EndedAt.IsZero()
	case !a.EndedAt.Equal(b.EndedAt):
		return a.EndedAt.After(b.EndedAt)
	}
	return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Key, b.Key)) > 0
}

func cmpTime(a, b time.Time) int {
	switch {
	case a.Equal(b):
		return 0
	case a.IsZero():
		return 1 // unknown last, as PostgreSQL sorts NULL
	case b.IsZero():
		return -1
	case a.Before(b):
		return -1
	}
	return 1
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

// JourneyEvent is the typed event a journey's end gives, EventMissed or
// EventVoicemail, or "" for other outcomes.
func (j Journey) JourneyEvent() string {
	switch j.Outcome {
	case OutcomeMissed:
		return EventMissed
	case OutcomeVoicemail:
		return EventVoicemail
	}
	return ""
}

// Abandoned reports whether the caller hung up while waiting: an incoming
// journey, missed, whose last leg ended with the caller's cancel (sipgate
// "cancel", SIP dialog-info "cancelled"). A ring-out, a rejection or a
// busy line is missed but not abandoned.
func (j Journey) Abandoned() bool {
	return j.Direction != DirectionOut && j.Outcome == OutcomeMissed && (j.Cause == CauseCancel || j.Cause == CauseCancelled)
}

// ShortAbandoned reports whether j was abandoned within short: a caller
// who hung up at once, likely a wrong number, which the service level
// leaves out.
func (j Journey) ShortAbandoned(short time.Duration) bool {
	if !j.Abandoned() {
		return false
	}
	w, _ := j.Wait()
	return w < short
}

// ServiceCount tells how j counts in the service level of userID ("" for
// the team), with sla the time within which an answer counts and short the
// short-abandon time. offered: an incoming journey whose wait is over
// (answered, missed or voicemail; for the team an answered one still
// going on, for a user when it ended), with a known wait (calls learned
// only from a call history have none), not a short abandon, and one the
// user could have answered: not one a colleague answered. within: offered
// and answered by the user (for the team, by anyone) within sla. The
// service level is within / offered.
func (j Journey) ServiceCount(userID string, sla, short time.Duration) (offered, within bool) {
	if j.Direction == DirectionOut || j.StartedAt.IsZero() || j.Learned {
		return false, false
	}
	switch j.Outcome {
	case OutcomeAnswered, OutcomeMissed, OutcomeVoicemail:
	case OutcomeActive:
		if userID != "" || j.AnsweredAt.IsZero() {
			return false, false
		}
	default:
		return false, false
	}
	w, ok := j.Wait()
	if !ok || j.ShortAbandoned(short) {
		return false, false
	}
	answered := !j.AnsweredAt.IsZero()
	if userID != "" && answered && j.AnsweredUserID != userID {
		return false, false
	}
	return true, answered && w <= sla
}
