package callstate

import "time"

// TeamDay is what a team lead looks at: who waits now, and the day so far.
type TeamDay struct {
	Day              string    // the day, 2006-01-02, in the time zone the day is cut in
	DayStart         time.Time // its start
	Waiting          int       // incoming calls ringing, nobody answered yet, with news (see Call.NoNews)
	LongestWaitSince time.Time // start of the longest waiting one; zero if none
	NoNews           int       // incoming sipgate calls ringing with no news for a while: likely a lost hangup, not counted in Waiting
	CallsIn          int       // incoming calls today
	CallsOut         int       // outgoing calls today
	Answered         int       // incoming calls a person answered, those still going on included
	Missed           int       // incoming calls nobody answered (not voicemail)
	Voicemail        int       // incoming calls the voicemail took
	MissedOpen       int       // calls to return (missed or voicemail) of the day neither called back nor marked done, with a number to call
	Abandoned        int       // missed calls whose caller hung up while waiting
	ShortAbandoned   int       // of those, the ones that waited less than the short-abandon time
	SLAnswered       int       // incoming calls answered within the SLA (those still going on included)
	SLOffered        int       // incoming calls whose wait is over, short abandons excluded (journey_stats_rows; internal/reference.ServiceCount)
	SLASeconds       float64   // the service level's time to answer
	MissedCalls      []DayMissed
	People           []PersonDay // by user id
}

// ServiceLevel is SLAnswered / SLOffered; ok is false when nothing was
// offered.
func (t TeamDay) ServiceLevel() (level float64, ok bool) {
	if t.SLOffered == 0 {
		return 0, false
	}
	return float64(t.SLAnswered) / float64(t.SLOffered), true
}

// DayMissed is a call to return of today (missed, or taken by the
// voicemail) and whether it was called back: a later outgoing call to the
// number, or a later incoming call from it, answered by a person (at the
// answer); or marked done by a lead.
type DayMissed struct {
	ID           string
	Outcome      Outcome
	Number       string // whom to call back
	To           string // the number they called
	StartedAt    time.Time
	EndedAt      time.Time
	CalledBackAt time.Time // zero if not yet
	UserIDs      []string  // who it was offered to
	DoneAt       time.Time // when a lead marked it done; zero if not
	DoneBy       string
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
