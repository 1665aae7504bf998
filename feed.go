package callstate

import (
	"slices"
	"time"
)

// FeedTypes are the typed events the feed produces, as subscribers choose
// them (call.updated and lamp.updated, which tell no transition, are left
// out: they are for the live stream's whole objects).
var FeedTypes = []string{
	EventRinging, EventAnswered, EventHeld, EventDTMF, EventEnded,
	EventMissed, EventVoicemail, EventJourneyEnded, EventLampChanged,
}

// KnownFeedType reports whether t is a type of the feed, transition or not.
func KnownFeedType(t string) bool {
	return slices.Contains(FeedTypes, t) || t == EventOther || t == EventLampUpdated
}

// FeedEvent is one event of the durable feed: a transition of a call, a
// journey or a lamp, written in the transaction that made it visible.
//
// Each transition gives one event, once, whichever instance writes it,
// whatever order the events of a call arrive in and however often they
// are repeated (a spool draining after an outage):
//
//   - A call's events compare its row before and after a write. The row
//     is a join of its events (Call.Apply): the state only rises, an
//     answer once known stays known, DTMF presses are a growing set, and a
//     repeated event changes nothing. Every write of a row locks it, so
//     each write sees the row as the one before left it, and exactly one
//     committed write makes each transition: call.ringing when the row is
//     made, call.answered when it first has an answer time, call.ended
//     when its state becomes ended, call.dtmf for each press it did not
//     have, call.held when a live call's hold flag changes (both ways; Call
//     tells which). A change that is none of these is call.updated. An
//     event arriving late makes the transitions it completes: a hang-up
//     before the answer gives call.ended, then the answer call.answered.
//   - A journey's events compare its row before and after: journeys are
//     computed again from their legs under a lock per journey, and written
//     only when they change. journey.ended when it stops being active,
//     call.missed and call.voicemail when its outcome becomes missed or
//     voicemail.
//   - Lamps are a view of the active calls and the PBX's extensions; one
//     writer at a time (a lock) compares the view with the lamps the feed
//     told last. A lamp that changes and changes back between two looks
//     (50 ms apart under load) gives no event.
//
// A rolled-back write takes its events with it. Feed ids are given after
// commit, in commit order (see the store), so a reader that read up to an
// id misses nothing by reading on from it.
type FeedEvent struct {
	ID        int64     // feed id, in commit order; the stream's event id
	Type      string    // EventRinging … EventLampUpdated
	At        time.Time // when the transition happened (event time)
	JourneyID string    // the call's or journey's; "" for lamps
	Call      *Call     // call.* events of one leg: the call as the transition left it
	Seq       int64     // with Call: its change sequence number then
	Journey   *Journey  // journey.ended, call.missed, call.voicemail
	Press     *Press    // call.dtmf: the press it tells
	Lamp      *LampStatus
	Previous  string // lamp.*: the lamp before ("" for a new one)
}

// FeedWindow is what of the feed is kept: ids after Floor up to Head.
// Every id up to Floor may have been deleted (retention), so a reader
// that read up to an id below Floor has missed events.
type FeedWindow struct {
	Floor, Head int64
}

// Covers reports whether a reader that read up to id can read on from the
// feed without missing an event.
func (w FeedWindow) Covers(id int64) bool { return id >= w.Floor && id <= w.Head }
