package callstate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Call is the current state of one call, one row of the call-state table.
// A call is identified by its Source and Key.
//
// A Call is a projection of the call's events (the journal): Apply merges
// one event into it by rules that are commutative and idempotent, so the
// same set of events gives the same Call whatever order they are applied
// in, on whichever instance, once or more. The fields after UpdatedAt are
// what those rules need besides the visible state.
type Call struct {
	ID     int64  // the store's number for the call, stable for its life
	Source Source // who reported it
	Key    string // the call's identity within its source, see Update.Key

	// JourneyID is the journey the call is a leg of, as the store computes
	// it (call_state.journey_id); "" for a call not read from the store.
	JourneyID string

	CallID     string    // the source's call id: sipgate's callId, SIP's Call-ID
	OrigCallID string    // sipgate's origCallId: the call this one was forked from
	Extension  string    // the extension or user it concerns
	Direction  Direction // seen from Extension's side
	From       string    // calling party
	To         string    // called party

	Users       []string // sipgate: names of the users the call was offered to
	UserIDs     []string // sipgate: their user ids
	FullUserIDs []string // sipgate: their full user ids
	AnsweredBy  string   // sipgate: name of the user who answered
	Answering   string   // number that answered the call
	Diversion   string   // sipgate: number the call was diverted from
	XCID        string   // sipgate: xcid

	State  State  // ringing, answered or ended
	OnHold bool   // held (SIP only, from +sip.rendering)
	Cause  string // why it ended: sipgate's hangup cause or SIP's dialog event
	DTMF   string // DTMF digits received, in the order received (see Presses)
	Rule   string // the routing rule that answered the call's newCall; "" if none

	StartedAt  time.Time // earliest event about the call; zero if unknown
	AnsweredAt time.Time // earliest event saying it was answered, never after EndedAt; zero if never
	EndedAt    time.Time // earliest event saying it ended; zero if not yet
	UpdatedAt  time.Time // latest event about the call

	ExtensionPinned bool      // Extension comes from an update that pins it
	HoldAt          time.Time // time of the latest event that stated OnHold
	CauseAt         time.Time // time of the earliest event that stated Cause
	RuleAt          time.Time // time of the earliest event that stated Rule
	Presses         []Press   // every DTMF event, ordered by Press.Key

	Learned    bool      // every event of the call was learned from the source's own record (sipgate's history): its webhooks never came
	EndRank    Rank      // rank of the updates EndedAt and Cause come from (see Rank)
	AnswerRank Rank      // rank of the updates AnswerAt comes from
	AnswerAt   time.Time // earliest answer of rank AnswerRank; AnsweredAt is it, never after EndedAt
}

// Rank is how much an update's account of a call's end and answer weighs
// where accounts differ. A higher rank replaces what a lower one said; the
// end and the answer are taken from the updates of the highest rank that
// state them.
type Rank uint8

// The ranks, lowest first.
const (
	RankNone    Rank = iota // nothing stated
	RankGuessed             // callstate's guess: a timeout end (Update.Guessed)
	RankLearned             // learned afterwards from the source's own record (sipgate's history)
	RankStated              // stated by an event of the call itself (a webhook, a SIP NOTIFY)
)

// Rank returns the rank of what u says about the call's end and answer.
func (u Update) Rank() Rank {
	switch {
	case u.Learned:
		return RankLearned
	case u.Guessed:
		return RankGuessed
	}
	return RankStated
}

// Update is what one event tells about one call. Zero fields tell nothing.
// The spool and the journal keep it as JSON under the fields' names: rename
// none.
type Update struct {
	Key string `json:",omitempty"` // the call's identity within its source (sipgate: callId; SIP: entity and dialog id)

	CallID       string    `json:",omitempty"`
	OrigCallID   string    `json:",omitempty"`
	Extension    string    `json:",omitempty"`
	PinExtension bool      `json:",omitempty"` // Extension is authoritative (who answered), not a first guess
	Direction    Direction `json:",omitempty"`
	From         string    `json:",omitempty"`
	To           string    `json:",omitempty"`
	Users        []string  `json:",omitempty"`
	UserIDs      []string  `json:",omitempty"`
	FullUserIDs  []string  `json:",omitempty"`
	AnsweredBy   string    `json:",omitempty"`
	Answering    string    `json:",omitempty"`
	Diversion    string    `json:",omitempty"`
	XCID         string    `json:",omitempty"`

	State      State  `json:",omitempty"`
	OnHold     *bool  `json:",omitempty"` // nil: says nothing about hold
	Cause      string `json:",omitempty"` // set by the event that ends the call
	DTMF       string `json:",omitempty"` // digits the caller pressed
	DTMFDigest string `json:",omitempty"` // with DTMF: a digest of the event's bytes, the same for copies of one request (see ReplayWindow)

	// Learned marks an update learned from the source's own record after
	// the fact (sipgate's history), not told by an event of the call: it
	// fills what no event said and gives way to what one did (see Rank).
	Learned bool `json:",omitempty"`
	// Guessed marks an update that callstate made up: the end of a call
	// whose end never came (CauseTimeout). Anything else replaces it.
	Guessed bool `json:",omitempty"`
	// The times the update states, where they are not the event's own
	// receive time: a learned update knows when the call started, was
	// answered (with State ended: it was answered) and ended.
	StartedAt  time.Time `json:",omitzero"`
	AnsweredAt time.Time `json:",omitzero"`
	EndedAt    time.Time `json:",omitzero"`

	// Rule is the routing rule that decided the answer to this event (a
	// newCall); "" for none.
	Rule string `json:",omitempty"`
}

// Event is one accepted input from a source, as the journal keeps it.
type Event struct {
	Source     Source
	Type       string    // the source's event name: newCall, answer, hangup, dtmf; dialog, presence
	DedupKey   string    // identical events share it; a repeat is not journaled twice
	ReceivedAt time.Time // when the accepting instance accepted it; the event's time in every merge rule
	Payload    []byte    // the raw input, as received
	Update     Update    // what it tells about the call
}

// Errors returned by Event.Validate.
var (
	ErrInvalidEvent = errors.New("invalid event")
)

// Validate reports whether e is complete enough to store. It returns an error
// wrapping ErrInvalidEvent that names the first missing or bad field.
func (e Event) Validate() error {
	switch {
	case !e.Source.Valid():
		return fmt.Errorf("%w: unknown source %q", ErrInvalidEvent, e.Source)
	case e.Type == "":
		return fmt.Errorf("%w: missing type", ErrInvalidEvent)
	case e.DedupKey == "":
		return fmt.Errorf("%w: missing dedup key", ErrInvalidEvent)
	case e.Update.Key == "":
		return fmt.Errorf("%w: missing call key", ErrInvalidEvent)
	case e.ReceivedAt.IsZero():
		return fmt.Errorf("%w: missing receive time", ErrInvalidEvent)
	case e.Update.State > StateEnded:
		return fmt.Errorf("%w: bad state %d", ErrInvalidEvent, e.Update.State)
	case !e.Update.Direction.Valid():
		return fmt.Errorf("%w: bad direction %q", ErrInvalidEvent, e.Update.Direction)
	case strings.ContainsRune(e.Update.DTMF, ':') || strings.ContainsRune(e.Update.DTMFDigest, ':'):
		return fmt.Errorf("%w: DTMF or its digest contains ':'", ErrInvalidEvent)
	case !inOrder(e.Update.StartedAt, e.Update.AnsweredAt, e.Update.EndedAt):
		return fmt.Errorf("%w: stated times out of order: started %v, answered %v, ended %v", ErrInvalidEvent,
			e.Update.StartedAt, e.Update.AnsweredAt, e.Update.EndedAt)
	case !e.Update.EndedAt.IsZero() && e.Update.State != StateEnded:
		return fmt.Errorf("%w: an end time without state ended", ErrInvalidEvent)
	}
	return nil
}

// inOrder reports whether the non-zero times of ts are in order.
func inOrder(ts ...time.Time) bool {
	var last time.Time
	for _, t := range ts {
		if t.IsZero() {
			continue
		}
		if t.Before(last) {
			return false
		}
		last = t
	}
	return true
}

// EventTime is t as events carry it: to the microsecond, as PostgreSQL
// keeps it, so that the domain and the store compare the same times.
func EventTime(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// Apply merges u, received at at, into c and returns the result. These rules
// are the contract the store implements in SQL; each is a join (commutative,
// associative, idempotent), so the result depends on the set of updates and
// their times only, never on the order in which they are applied:
//
//   - State is the greatest of the updates' states (ringing < answered <
//     ended): a call never goes back.
//   - StartedAt is the earliest event, EndedAt the earliest event that said
//     ended, AnsweredAt the earliest that said answered but never after
//     EndedAt (a hang-up received before its answer leaves a talk time of
//     zero, not a negative one), UpdatedAt the latest event. So
//     StartedAt ≤ AnsweredAt ≤ EndedAt always. An event's time is its
//     receive time, unless its update states the time (Update.StartedAt,
//     AnsweredAt, EndedAt: a learned update knows when things happened).
//   - Cause comes from the earliest event that states one, and so does
//     Rule (the routing rule that answered the newCall: the first wins).
//   - Which source wins: the end (EndedAt, Cause) comes from the updates
//     of the highest Rank that state one, the answer from those of the
//     highest rank that state one and rank at least as high as the end's:
//     an event's stated fact stands; a learned update (sipgate's history)
//     fills what no event said and replaces what callstate only guessed
//     (a timeout end); an answer only the history knows counts unless an
//     event of the call stated its end without one (the event's account
//     stands). Ranks only rise and each rank's values join as before, so
//     this too is a join. Learned is true while every update was learned.
//   - OnHold follows the latest event that states it (a SIP subscription's
//     events carry times in the source's own CSeq order), and is false
//     once ended.
//   - Extension: a pinned one (sipgate's answer names who answered) beats
//     a first guess.
//   - Every other field is the same in every event that carries it; a
//     non-empty value beats an empty one, and should two differ, the
//     greater (byte order) wins, so that no order can change it.
//   - DTMF: every dtmf event is kept as a Press and the digits are read in
//     the order of the presses' times (see Presses and ReplayWindow).
//
// A Call is thus a state-based CRDT: Apply(u, t) twice is Apply once, and
// any two orders of the same updates give the same Call. Times are the
// accepting instance's clock (EventTime); instances must keep their clocks
// in step (NTP) for DTMF digits received by different instances within a
// clock skew of each other to keep their order.
func (c Call) Apply(u Update, at time.Time) Call {
	at = EventTime(at)
	rank := u.Rank()
	c.Learned = (c.UpdatedAt.IsZero() || c.Learned) && rank == RankLearned
	c.Key = join(c.Key, u.Key)
	c.CallID = join(c.CallID, u.CallID)
	c.OrigCallID = join(c.OrigCallID, u.OrigCallID)
	if u.Extension != "" {
		pinned := u.PinExtension
		switch {
		case pinned && !c.ExtensionPinned:
			c.Extension, c.ExtensionPinned = u.Extension, true
		case pinned == c.ExtensionPinned:
			c.Extension = join(c.Extension, u.Extension)
		}
	}
	c.Direction = Direction(join(string(c.Direction), string(u.Direction)))
	c.From = join(c.From, u.From)
	c.To = join(c.To, u.To)
	c.Users = joinList(c.Users, u.Users)
	c.UserIDs = joinList(c.UserIDs, u.UserIDs)
	c.FullUserIDs = joinList(c.FullUserIDs, u.FullUserIDs)
	c.AnsweredBy = join(c.AnsweredBy, u.AnsweredBy)
	c.Answering = join(c.Answering, u.Answering)
	c.Diversion = join(c.Diversion, u.Diversion)
	c.XCID = join(c.XCID, u.XCID)
	endAt, answerAt, startAt := at, at, at
	if !u.EndedAt.IsZero() {
		endAt = EventTime(u.EndedAt)
	}
	if !u.AnsweredAt.IsZero() {
		answerAt = EventTime(u.AnsweredAt)
	}
	if !u.StartedAt.IsZero() {
		startAt = EventTime(u.StartedAt)
	}
	for _, t := range []time.Time{u.AnsweredAt, u.EndedAt} {
		if !t.IsZero() {
			startAt = earliest(startAt, EventTime(t))
		}
	}
	if u.State == StateEnded || u.Cause != "" {
		if rank > c.EndRank {
			c.EndRank, c.EndedAt, c.Cause, c.CauseAt = rank, time.Time{}, "", time.Time{}
		}
		if rank == c.EndRank {
			if u.State == StateEnded {
				c.EndedAt = earliest(c.EndedAt, endAt)
			}
			if u.Cause != "" {
				switch {
				case c.CauseAt.IsZero() || endAt.Before(c.CauseAt):
					c.Cause, c.CauseAt = u.Cause, endAt
				case endAt.Equal(c.CauseAt):
					c.Cause = join(c.Cause, u.Cause)
				}
			}
		}
	}
	if c.AnswerRank < c.EndRank { // an answer below the end's rank counts no more
		c.AnswerRank, c.AnswerAt = RankNone, time.Time{}
	}
	if (u.State == StateAnswered || !u.AnsweredAt.IsZero()) && rank >= c.EndRank {
		switch {
		case rank > c.AnswerRank:
			c.AnswerRank, c.AnswerAt = rank, answerAt
		case rank == c.AnswerRank:
			c.AnswerAt = earliest(c.AnswerAt, answerAt)
		}
	}

	if u.Rule != "" {
		switch {
		case c.RuleAt.IsZero() || at.Before(c.RuleAt):
			c.Rule, c.RuleAt = u.Rule, at
		case at.Equal(c.RuleAt):
			c.Rule = join(c.Rule, u.Rule)
		}
	}

	c.State = c.State.Advance(u.State)
	if u.OnHold != nil {
		switch {
		case at.After(c.HoldAt):
			c.OnHold, c.HoldAt = *u.OnHold, at
		case at.Equal(c.HoldAt):
			c.OnHold = c.OnHold || *u.OnHold
		}
	}
	if c.State == StateEnded {
		c.OnHold = false
	}

	c.StartedAt = earliest(c.StartedAt, startAt)
	c.AnsweredAt = c.AnswerAt
	if !c.AnsweredAt.IsZero() && !c.EndedAt.IsZero() && c.EndedAt.Before(c.AnsweredAt) {
		c.AnsweredAt = c.EndedAt
	}
	if at.After(c.UpdatedAt) {
		c.UpdatedAt = at
	}

	if u.DTMF != "" {
		c.Presses = AddPress(c.Presses, Press{At: at, Digest: u.DTMFDigest, Digits: u.DTMF})
		c.DTMF = Digits(c.Presses)
	}
	return c
}

// Active reports whether the call is still going on.
func (c Call) Active() bool { return c.State == StateRinging || c.State == StateAnswered }

// join is the merge of two values of a field that every event carrying it
// should agree on: non-empty beats empty, then the greater wins.
func join(a, b string) string {
	if b > a {
		return b
	}
	return a
}

// joinList is join for lists: non-empty beats empty, then the greater in
// element-wise byte order wins.
func joinList(a, b []string) []string {
	switch {
	case len(b) == 0:
		return a
	case len(a) == 0 || slices.Compare(b, a) > 0:
		return slices.Clone(b)
	}
	return a
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// NoNews reports whether c is a sipgate call still ringing with no news
// for after or longer at now: most likely its hangup was lost. Such a call
// is shown as "no news since" its last update, greyed, and not counted as
// a caller waiting; it still ends at SIPGATE_RINGING_TIMEOUT. An after of
// 0 means never.
func (c Call) NoNews(now time.Time, after time.Duration) bool {
	return after > 0 && c.Source == SourceSipgate && c.State == StateRinging && now.Sub(c.UpdatedAt) >= after
}
