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
