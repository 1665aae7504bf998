// Package reference holds the Go reference implementations of callstate's
// rules that run in PostgreSQL in production: the journey of a call's legs
// (its id, the leg predicates, the outcome's precedence, the wait and talk
// times) and the service level's counting. Production reads journeys and
// their statistics from the database (store/schema.sql: call_leg,
// journey_from_legs, journey_stats_rows); these functions say the same
// rules in Go, for the tests to hold the SQL against on the same calls
// (the conformance suite). Nothing but tests imports this package.
package reference

import (
	"cmp"
	"slices"
	"time"

	"github.com/callstate/callstate"
)

// JourneyID returns the id of the journey c is a leg of. sipgate: the
// origCallId, which sipgate gives every leg it starts for a forward or the
// voicemail (the first leg carries its own callId), else the callId. SIP:
// "sip:" and the Call-ID, which the dialogs of one call share on every
// watched extension behind a forking proxy (not behind a B2BUA, which
// gives each leg a Call-ID of its own); without one, "sip:" and the key.
func JourneyID(c callstate.Call) string {
	switch {
	case c.Source == callstate.SourceSIP && c.CallID != "":
		return "sip:" + c.CallID
	case c.Source == callstate.SourceSIP:
		return "sip:" + c.Key
	case c.OrigCallID != "":
		return c.OrigCallID
	case c.CallID != "":
		return c.CallID
	}
	return c.Key
}

// Failure reports whether c ended for a technical reason, or out of
// sight: sipgate's congestion or a timeout (a call whose hangup never
// came, ended by callstate), SIP's error, a PBX restart, or a dialog that
// vanished (its end never came; migration 040).
func Failure(c callstate.Call) bool {
	switch c.Source {
	case callstate.SourceSipgate:
		return c.Cause == callstate.CauseCongestion || c.Cause == callstate.CauseTimeout
	case callstate.SourceSIP:
		return c.Cause == callstate.CauseError || c.Cause == callstate.CausePBXRestart || c.Cause == callstate.CauseVanished
	}
	return false
}

func answeredByName(c callstate.Call) string {
	return cmp.Or(c.AnsweredBy, c.Answering, c.Extension)
}

// JourneyOf returns the journey of legs, as journey_from_legs computes it;
// legs must share a JourneyID, the
// order of legs does not matter. Outcome, in this order: active while a
// leg is; answered when a person answered a leg; voicemail when the
// voicemail or a queue picked up; failed when the last leg to end failed;
// outgoing-unreached for an outgoing journey; forwarded when the last leg
// ended "forwarded" (to where we see no leg); failed for "notFound"; else
// missed.
func JourneyOf(legs []callstate.Call) callstate.Journey {
	if len(legs) == 0 {
		return callstate.Journey{}
	}
	byStart := slices.Clone(legs)
	slices.SortFunc(byStart, func(a, b callstate.Call) int {
		return cmp.Or(cmpTime(a.StartedAt, b.StartedAt), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Key, b.Key))
	})
	j := callstate.Journey{ID: JourneyID(byStart[0]), Legs: len(legs)}
	active, in, out := false, false, false
	j.Learned = true
	var last *callstate.Call
	users := map[string]bool{}
	var answering *callstate.Call
	var ruleAt time.Time
	for i := range byStart {
		c := &byStart[i]
		if c.Rule != "" && (j.Rule == "" || c.RuleAt.Before(ruleAt) || (c.RuleAt.Equal(ruleAt) && c.Rule > j.Rule)) {
			j.Rule, ruleAt = c.Rule, c.RuleAt
		}
		in = in || c.Direction == callstate.DirectionIn
		out = out || c.Direction == callstate.DirectionOut
		if j.From == "" {
			j.From = c.From
		}
		if j.To == "" {
			j.To = c.To
		}
		j.StartedAt = earliest(j.StartedAt, c.StartedAt)
		active = active || c.Active() || c.State == callstate.StateUnknown
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
		j.Direction = callstate.DirectionIn
	case out:
		j.Direction = callstate.DirectionOut
	}
	for u := range users {
		j.UserIDs = append(j.UserIDs, u)
	}
	slices.Sort(j.UserIDs)
	if answering != nil {
		j.AnsweredAt = answering.AnsweredAt
		j.AnsweredBy = answeredByName(*answering)
		j.AnsweredUserID = answering.Extension
	}
	j.Cause = last.Cause
	if !active {
		j.EndedAt = last.EndedAt
	}
	switch {
	case active:
		j.Outcome = callstate.OutcomeActive
	case answering != nil:
		j.Outcome = callstate.OutcomeAnswered
	case !j.VoicemailAt.IsZero():
		j.Outcome = callstate.OutcomeVoicemail
	case Failure(*last):
		j.Outcome = callstate.OutcomeFailed
	case j.Direction == callstate.DirectionOut:
		j.Outcome = callstate.OutcomeUnreached
	case last.Cause == callstate.CauseForwarded:
		j.Outcome = callstate.OutcomeForwarded
	case last.Cause == callstate.CauseNotFound:
		j.Outcome = callstate.OutcomeFailed
	default:
		j.Outcome = callstate.OutcomeMissed
	}
	j.WaitSeconds, j.TalkSeconds = seconds(Wait(j)), seconds(Talk(j))
	return j
}

func seconds(d time.Duration, ok bool) *float64 {
	if !ok {
		return nil
	}
	s := d.Seconds()
	return &s
}

// Wait is how long the caller waited: until a person answered, else until
// the voicemail picked up, else until the journey ended. ok is false while
// it is active and no person has answered.
func Wait(j callstate.Journey) (d time.Duration, ok bool) {
	if j.Outcome == callstate.OutcomeActive && j.AnsweredAt.IsZero() {
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
func Talk(j callstate.Journey) (d time.Duration, ok bool) {
	if j.Outcome != callstate.OutcomeAnswered || j.EndedAt.IsZero() {
		return 0, false
	}
	return j.EndedAt.Sub(j.AnsweredAt), true
}

// endsAfter orders legs by end (a leg not ended first), then source and
// key: the greatest is the leg that ended last.
func endsAfter(a, b callstate.Call) bool {
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

// JourneyEvent is the typed event a journey's end gives, callstate.EventMissed or
// callstate.EventVoicemail, or "" for other outcomes.
func JourneyEvent(j callstate.Journey) string {
	switch j.Outcome {
	case callstate.OutcomeMissed:
		return callstate.EventMissed
	case callstate.OutcomeVoicemail:
		return callstate.EventVoicemail
	}
	return ""
}

// Abandoned reports whether the caller hung up while waiting: an incoming
// journey, missed, whose last leg ended with the caller's cancel (sipgate
// "cancel", SIP dialog-info "cancelled"). A ring-out, a rejection or a
// busy line is missed but not abandoned.
func Abandoned(j callstate.Journey) bool {
	return j.Direction != callstate.DirectionOut && j.Outcome == callstate.OutcomeMissed && (j.Cause == callstate.CauseCancel || j.Cause == callstate.CauseCancelled)
}

// ShortAbandoned reports whether j was abandoned within short: a caller
// who hung up at once, likely a wrong number, which the service level
// leaves out.
func ShortAbandoned(j callstate.Journey, short time.Duration) bool {
	if !Abandoned(j) {
		return false
	}
	w, _ := Wait(j)
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
func ServiceCount(j callstate.Journey, userID string, sla, short time.Duration) (offered, within bool) {
	if j.Direction == callstate.DirectionOut || j.StartedAt.IsZero() || j.Learned {
		return false, false
	}
	switch j.Outcome {
	case callstate.OutcomeAnswered, callstate.OutcomeMissed, callstate.OutcomeVoicemail:
	case callstate.OutcomeActive:
		if userID != "" || j.AnsweredAt.IsZero() {
			return false, false
		}
	default:
		return false, false
	}
	w, ok := Wait(j)
	if !ok || ShortAbandoned(j, short) {
		return false, false
	}
	answered := !j.AnsweredAt.IsZero()
	if userID != "" && answered && j.AnsweredUserID != userID {
		return false, false
	}
	return true, answered && w <= sla
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
