// Package callstate is the domain of the callstate service: calls, their
// states, and the events that sources report about them.
//
// Two sources feed one call-state table: sipgate.io push webhooks and a SIP
// subscriber that watches PBX extensions. Each source turns what it receives
// into Events; an Event carries an Update, the part of a call's state that the
// event tells about. Updates merge into a Call by the rules of Call.Apply, which
// are idempotent (the same event twice changes nothing) and order-tolerant (a
// call only moves forward: ringing, answered, ended).
//
// This package does no I/O. The adapters depend on it and never on each other:
// handlers (HTTP), sip (SIP) and store (PostgreSQL).
package callstate

import (
	"errors"
	"fmt"
)

// Source names where an event came from.
type Source string

// The sources callstate knows.
const (
	SourceSipgate Source = "sipgate" // sipgate.io push webhooks
	SourceSIP     Source = "sip"     // the SIP dialog/presence subscriber
)

// Valid reports whether s is a known source.
func (s Source) Valid() bool { return s == SourceSipgate || s == SourceSIP }

// State is where a call is in its life. States are ordered: a call moves from
// ringing to answered to ended and never back.
type State uint8

// The states of a call, in order.
const (
	StateUnknown  State = iota // nothing is known yet
	StateRinging               // offered, not yet answered
	StateAnswered              // answered and in progress
	StateEnded                 // over, whether answered or not
)

var stateNames = [...]string{"unknown", "ringing", "answered", "ended"}

// String returns the state's lower-case name as stored in the database.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// ErrUnknownState is returned by ParseState for a name it does not know.
var ErrUnknownState = errors.New("unknown call state")

// ParseState returns the State named name, as String writes it.
// It returns an error wrapping ErrUnknownState for any other name.
func ParseState(name string) (State, error) {
	for i, n := range stateNames {
		if n == name {
			return State(i), nil
		}
	}
	return StateUnknown, fmt.Errorf("%w: %q", ErrUnknownState, name)
}

// Advance returns the later of s and next: a call never goes back.
func (s State) Advance(next State) State {
	if next > s {
		return next
	}
	return s
}

// Direction tells who placed a call, seen from our side.
type Direction string

// The directions of a call.
const (
	DirectionUnknown Direction = ""
	DirectionIn      Direction = "in"  // the call came to us (we are the callee)
	DirectionOut     Direction = "out" // we placed it (we are the caller)
)

// Valid reports whether d is a known direction, the unknown one included.
func (d Direction) Valid() bool {
	return d == DirectionUnknown || d == DirectionIn || d == DirectionOut
}
