package callstate

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Call is the current state of one call, one row of the call-state table.
// A call is identified by its Source and Key.
type Call struct {
	ID     int64  // the store's number for the call, stable for its life
	Source Source // who reported it
	Key    string // the call's identity within its source, see Update.Key

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
	DTMF   string // all DTMF digits received, in order of arrival

	StartedAt  time.Time // first event about the call; zero if unknown
	AnsweredAt time.Time // first event saying it was answered; zero if never
	EndedAt    time.Time // first event saying it ended; zero if not yet
	UpdatedAt  time.Time // last change
}

// Update is what one event tells about one call. Zero fields tell nothing.
type Update struct {
	Key string // the call's identity within its source (sipgate: callId; SIP: entity and dialog id)

	CallID       string
	OrigCallID   string
	Extension    string
	PinExtension bool // Extension is authoritative (who answered), not a first guess
	Direction    Direction
	From         string
	To           string
	Users        []string
	UserIDs      []string
	FullUserIDs  []string
	AnsweredBy   string
	Answering    string
	Diversion    string
	XCID         string

	State  State
	OnHold *bool  // nil: says nothing about hold
	Cause  string // set by the event that ends the call
	DTMF   string // digits to append
}

// Event is one accepted input from a source, as the journal keeps it.
type Event struct {
	Source     Source
	Type       string    // the source's event name: newCall, answer, hangup, dtmf; dialog, presence
	DedupKey   string    // identical events share it; a repeat is not applied twice
	ReceivedAt time.Time // when callstate accepted it
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
	}
	return nil
}

// Apply merges u, received at at, into c and returns the result. These rules
// are the contract the store implements in SQL:
//
//   - State only moves forward (Advance); ended is final.
//   - Identity and parties (call ids, direction, from, to, users, xcid,
//     diversion, answering number, answered-by, cause) keep their first
//     non-empty value, so a repeat or a late event cannot overwrite them.
//   - Extension keeps its first non-empty value unless the update pins it
//     (sipgate's answer names who answered), then the pinned value wins.
//   - StartedAt is the earliest event; AnsweredAt and EndedAt the earliest
//     event that reached that state; UpdatedAt the latest event.
//   - OnHold follows the last update that states it, and is false once ended.
//   - DTMF digits are appended.
//
// Applying the same event twice is prevented by the journal (Event.DedupKey);
// every rule but DTMF's is idempotent anyway, and all but OnHold's and pinned
// Extension's are independent of order.
func (c Call) Apply(u Update, at time.Time) Call {
	if c.Key == "" {
		c.Key = u.Key
	}
	first := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	first(&c.CallID, u.CallID)
	first(&c.OrigCallID, u.OrigCallID)
	if u.PinExtension && u.Extension != "" {
		c.Extension = u.Extension
	} else {
		first(&c.Extension, u.Extension)
	}
	if c.Direction == DirectionUnknown {
		c.Direction = u.Direction
	}
	first(&c.From, u.From)
	first(&c.To, u.To)
	if len(c.Users) == 0 {
		c.Users = slices.Clone(u.Users)
	}
	if len(c.UserIDs) == 0 {
		c.UserIDs = slices.Clone(u.UserIDs)
	}
	if len(c.FullUserIDs) == 0 {
		c.FullUserIDs = slices.Clone(u.FullUserIDs)
	}
	first(&c.AnsweredBy, u.AnsweredBy)
	first(&c.Answering, u.Answering)
	first(&c.Diversion, u.Diversion)
	first(&c.XCID, u.XCID)
	first(&c.Cause, u.Cause)
	c.DTMF += u.DTMF

	c.State = c.State.Advance(u.State)
	if u.OnHold != nil {
		c.OnHold = *u.OnHold
	}
	if c.State == StateEnded {
		c.OnHold = false
	}

	c.StartedAt = earliest(c.StartedAt, at)
	if u.State == StateAnswered {
		c.AnsweredAt = earliest(c.AnsweredAt, at)
	}
	if u.State == StateEnded {
		c.EndedAt = earliest(c.EndedAt, at)
	}
	if at.After(c.UpdatedAt) {
		c.UpdatedAt = at
	}
	return c
}

// Active reports whether the call is still going on.
func (c Call) Active() bool { return c.State == StateRinging || c.State == StateAnswered }

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
