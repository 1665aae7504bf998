package callstate

import (
	"cmp"
	"slices"
	"time"
)

// DayCall is one call as a person counts it (the legs of a forward or a
// voicemail joined), as today's numbers need it.
type DayCall struct {
	ID             string    // the journey's id
	Direction      Direction // in if any leg came in
	From, To       string    // the first leg's parties
	StartedAt      time.Time
	AnsweredAt     time.Time // when a person answered; zero if nobody did
	EndedAt        time.Time // zero while active
	Outcome        string    // active, answered, voicemail, missed, forwarded, outgoing-unreached, failed
	AnsweredUserID string    // user id or extension of who answered
	TalkSeconds    float64
	UserIDs        []string // users it was offered to, or placed by
}

// TeamDay is what a team lead looks at: who waits now, and the day so far.
type TeamDay struct {
	Waiting          int       // incoming calls ringing, nobody answered yet
	LongestWaitSince time.Time // start of the longest waiting one; zero if none
	CallsIn          int       // incoming calls today
	CallsOut         int       // outgoing calls today
	Answered         int       // incoming calls a person answered, those still going on included
	Missed           int       // incoming calls nobody answered (not voicemail)
	Voicemail        int       // incoming calls the voicemail took
	MissedOpen       int       // missed calls not called back yet
	MissedCalls      []DayMissed
	People           []PersonDay // by user id
}

// DayMissed is a missed call of today and whether it was called back: a
// later outgoing call to the number, or a later incoming call from it,
// answered by a person.
type DayMissed struct {
	ID           string
	Number       string // whom to call back
	To           string // the number they called
	StartedAt    time.Time
	EndedAt      time.Time
	CalledBackAt time.Time // zero if not yet
	UserIDs      []string  // who it was offered to
}

// PersonDay is one user's day.
type PersonDay struct {
	UserID      string
	Calls       int // incoming calls offered to them and outgoing calls they placed
	Answered    int // incoming calls they answered
	Missed      int // missed calls that had been offered to them
	TalkSeconds float64
}

// MaxDayMissed bounds TeamDay.MissedCalls: the newest are kept.
const MaxDayMissed = 50

// Tally returns the team's day from calls: today's calls (started on or
// after dayStart) and the active ones, whenever they started. It is a
// pure function of the set of calls, whatever their order.
func Tally(calls []DayCall, dayStart time.Time) TeamDay {
	var t TeamDay
	people := map[string]*PersonDay{}
	person := func(id string) *PersonDay {
		p := people[id]
		if p == nil {
			p = &PersonDay{UserID: id}
			people[id] = p
		}
		return p
	}
	for _, c := range calls {
		if c.Outcome == "active" && c.Direction != DirectionOut && c.AnsweredAt.IsZero() {
			t.Waiting++
			if t.LongestWaitSince.IsZero() || c.StartedAt.Before(t.LongestWaitSince) {
				t.LongestWaitSince = c.StartedAt
			}
		}
		if c.StartedAt.Before(dayStart) {
			continue
		}
		in := c.Direction != DirectionOut
		if in {
			t.CallsIn++
		} else {
			t.CallsOut++
		}
		for _, u := range c.UserIDs {
			person(u).Calls++
		}
		if c.AnsweredUserID != "" && in {
			person(c.AnsweredUserID).Answered++
		}
		switch {
		case c.TalkSeconds > 0 && !in:
			for _, u := range c.UserIDs {
				person(u).TalkSeconds += c.TalkSeconds
			}
		case c.TalkSeconds > 0 && c.AnsweredUserID != "":
			person(c.AnsweredUserID).TalkSeconds += c.TalkSeconds
		}
		if !in {
			continue
		}
		switch {
		case c.Outcome == "answered" || (c.Outcome == "active" && !c.AnsweredAt.IsZero()):
			t.Answered++
		case c.Outcome == "voicemail":
			t.Voicemail++
		case c.Outcome == "missed":
			t.Missed++
			for _, u := range c.UserIDs {
				person(u).Missed++
			}
			m := DayMissed{ID: c.ID, Number: c.From, To: c.To, StartedAt: c.StartedAt, EndedAt: c.EndedAt, UserIDs: c.UserIDs}
			m.CalledBackAt = calledBack(calls, c)
			if m.CalledBackAt.IsZero() {
				t.MissedOpen++
			}
			t.MissedCalls = append(t.MissedCalls, m)
		}
	}
	slices.SortFunc(t.MissedCalls, func(a, b DayMissed) int {
		return cmp.Or(b.StartedAt.Compare(a.StartedAt), cmp.Compare(a.ID, b.ID))
	})
	if len(t.MissedCalls) > MaxDayMissed {
		t.MissedCalls = t.MissedCalls[:MaxDayMissed]
	}
	for _, p := range people {
		t.People = append(t.People, *p)
	}
	slices.SortFunc(t.People, func(a, b PersonDay) int { return cmp.Compare(a.UserID, b.UserID) })
	return t
}

// calledBack returns when m's number was reached after m: the earliest
// answer of a later outgoing call to it or incoming call from it.
func calledBack(calls []DayCall, m DayCall) time.Time {
	var at time.Time
	if m.From == "" || m.From == "anonymous" {
		return at
	}
	for _, c := range calls {
		if c.AnsweredAt.IsZero() || !c.StartedAt.After(m.StartedAt) {
			continue
		}
		if (c.Direction == DirectionOut && c.To == m.From) || (c.Direction != DirectionOut && c.From == m.From) {
			at = earliest(at, c.AnsweredAt)
		}
	}
	return at
}
