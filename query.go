package callstate

import (
	"errors"
	"time"
)

// Errors a store returns, wrapped, when reading calls.
var (
	ErrNotFound    = errors.New("not found")            // no such call
	ErrBadCursor   = errors.New("bad cursor")           // a page cursor the store did not make
	ErrUnavailable = errors.New("database unavailable") // not connected yet, unreachable, or no answer in time
)

// CallFilter selects calls to list, newest first.
type CallFilter struct {
	Active    bool      // only calls ringing or answered
	Since     time.Time // only calls changed at or after Since
	Extension string    // only calls of this extension or sipgate user id
	Source    Source    // only calls from this source; empty for all
	Limit     int       // page size; 0 for the store's default
	Cursor    string    // the previous page's next cursor; empty for the first page
}

// JournalEntry is one accepted event as the journal keeps it.
type JournalEntry struct {
	ID         int64
	Source     Source
	DedupKey   string
	CallKey    string
	Type       string
	ReceivedAt time.Time
	Payload    []byte // as received
	Event      string // the typed event it was (TypedEvent); "" when journaled without its update
}

// LampStatus is what a BLF key or a wall board shows for one PBX extension
// (source sip) or sipgate user (source sipgate).
type LampStatus struct {
	Source      Source
	Extension   string    // PBX extension, or sipgate user id
	Name        string    // sipgate user's name, if known
	Lamp        string    // idle, ringing, busy, hold or unavailable
	ActiveCalls int64     // calls ringing or answered
	UpdatedAt   time.Time // last change
}

// ChangedCall is a call as it is now, with the change sequence number of its
// last write: the same on every instance, so it can order and resume a live
// stream.
type ChangedCall struct {
	Seq  int64
	Call Call
}

// JourneyFilter selects journeys to list, newest first (by start).
type JourneyFilter struct {
	Since   time.Time // only journeys started at or after Since
	Until   time.Time // only journeys started before Until
	Outcome Outcome   // only journeys of this outcome; empty for all
	UserID  string    // only journeys offered to or placed by this user or extension
	Limit   int       // page size; 0 for the store's default
	Cursor  string    // the previous page's next cursor; empty for the first page
}

// MissedCall is a call to return: a journey missed or taken by the
// voicemail, and whether it was called back (a later outgoing journey to
// Number, or a later incoming one from it, that a person answered: it
// counts at the answer) or marked done by a lead.
type MissedCall struct {
	JourneyID    string
	Outcome      Outcome // OutcomeMissed or OutcomeVoicemail
	Number       string  // whom to call back: the caller
	To           string  // the number they called
	UserIDs      []string
	StartedAt    time.Time
	EndedAt      time.Time
	CalledBack   bool
	CalledBackAt time.Time
	DoneAt       time.Time // when a lead marked it done; zero if not
	DoneBy       string    // who marked it done
}

// Open reports whether m is still to return: neither called back nor
// marked done.
func (m MissedCall) Open() bool { return !m.CalledBack && m.DoneAt.IsZero() }

// MissedDone is a lead's mark that a call to return needs no call back.
type MissedDone struct {
	JourneyID string
	DoneAt    time.Time
	DoneBy    string
}

// MaxDoneBy bounds MissedDone.DoneBy, in characters.
const MaxDoneBy = 100

// MissedFilter selects calls to return, newest first.
type MissedFilter struct {
	Open  bool      // only those neither called back nor marked done, with a number to call (not anonymous)
	Since time.Time // only those started at or after Since
	Limit int       // 0 for the store's default
}

// DayStats is one row of journey_stats_day: a day's journeys of one user,
// or of the whole team (UserID "").
type DayStats struct {
	Day               time.Time // midnight UTC of the day, cut in the stats time zone
	UserID            string
	CallsIn, CallsOut int64
	Answered, Missed  int64
	Voicemail         int64
	AnswerRatio       *float64 // answered / (answered + missed + voicemail) of the calls UserID could have answered; nil without any
	MeanAnswerSeconds *float64
	MaxAnswerSeconds  *float64
	TalkSeconds       float64
	Abandoned         int64    // missed calls whose caller hung up while waiting
	ShortAbandoned    int64    // of those, the ones that waited less than the short-abandon time
	ServiceLevel      *float64 // answered within the SLA / offered (journey_stats_rows; internal/reference.ServiceCount); nil when nothing was offered
}
