package callstate

import "time"

// TeamDay is what a team lead looks at: who waits now, and the day so far.
type TeamDay struct {
	Day              string    // the day, 2006-01-02, in the time zone the day is cut in
	DayStart         time.Time // its start
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
