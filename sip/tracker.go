package sip

import (
	"strconv"
	"strings"
	"time"

	"github.com/callstate/callstate"
)

// CauseVanished is the Cause of a call ended because a full dialog-info
// document no longer listed it.
const CauseVanished = "vanished"

// tracker keeps the active dialogs of one watched extension and turns
// dialog-info documents into call updates (RFC 4235: a full document replaces
// the extension's dialogs, a partial one updates those it lists).
type tracker struct {
	ext    string
	active map[string]*trackedDialog // by dialog id
}

// trackedDialog is an active dialog the tracker knows about.
type trackedDialog struct {
	key     string
	state   callstate.State
	onHold  bool
	changed time.Time // last change of state or hold
	checked time.Time // last refresh asked for because it seemed stuck
}

// dialogChange is one call update a document implies, with the dialog id it
// came from (empty for none) for the journal's dedup key.
type dialogChange struct {
	dialogID string
	update   callstate.Update
}

func newTracker(ext string) *tracker {
	return &tracker{ext: ext, active: make(map[string]*trackedDialog)}
}

// load seeds the tracker with the extension's active calls from the store,
// so a full document can end the ones that vanished while nobody watched.
// Calls already tracked are kept.
func (t *tracker) load(calls []callstate.Call, now time.Time) {
	prefix := t.ext + "/"
	for _, c := range calls {
		if !strings.HasPrefix(c.Key, prefix) {
			continue
		}
		id := strings.TrimPrefix(c.Key, prefix)
		if c.CallID == "" {
			// Keys of dialogs without call-id carry a first-seen stamp.
			if i := strings.LastIndexByte(id, '@'); i >= 0 {
				id = id[:i]
			}
		}
		if _, ok := t.active[id]; !ok {
			t.active[id] = &trackedDialog{key: c.Key, state: c.State, onHold: c.OnHold, changed: now}
		}
	}
}

// document returns the updates doc implies and records them. A document
// without a state attribute is taken as full.
func (t *tracker) document(doc DialogInfo, now time.Time) []dialogChange {
	var out []dialogChange
	listed := make(map[string]bool, len(doc.Dialogs))
	for _, d := range doc.Dialogs {
		listed[d.ID] = true
		if c, ok := t.dialog(d, now); ok {
			out = append(out, c)
		}
	}
	if doc.State != DocPartial {
		for id, td := range t.active {
			if listed[id] {
				continue
			}
			delete(t.active, id)
			out = append(out, dialogChange{dialogID: id, update: callstate.Update{
				Key: td.key, Extension: t.ext, State: callstate.StateEnded, Cause: CauseVanished,
			}})
		}
	}
	return out
}

func (t *tracker) dialog(d Dialog, now time.Time) (dialogChange, bool) {
	state := dialogState(d.State)
	if state == callstate.StateUnknown {
		return dialogChange{}, false
	}
	td := t.active[d.ID]
	if td == nil {
		if state == callstate.StateEnded && d.CallID == "" {
			// Asterisk and FreeSWITCH list an idle extension as a
			// terminated dialog named after it: no call to record.
			return dialogChange{}, false
		}
		td = &trackedDialog{key: t.ext + "/" + d.ID, changed: now}
		if d.CallID == "" {
			// The id may come back for the next call (Asterisk uses the
			// extension): tell the calls apart by when they started.
			td.key += "@" + strconv.FormatInt(now.UnixMilli(), 36)
		}
		t.active[d.ID] = td
	}
	u := callstate.Update{
		Key:       td.key,
		CallID:    d.CallID,
		Extension: t.ext,
		State:     state,
	}
	switch d.Direction {
	case DirectionInitiator:
		u.Direction = callstate.DirectionOut
		u.From, u.To = party(d.LocalIdentity), party(d.RemoteIdentity)
	case DirectionRecipient:
		u.Direction = callstate.DirectionIn
		u.From, u.To = party(d.RemoteIdentity), party(d.LocalIdentity)
	}
	if state == callstate.StateAnswered {
		held := d.LocalHeld || d.RemoteHeld
		u.OnHold = &held
		if held != td.onHold {
			td.onHold, td.changed = held, now
		}
	}
	if state == callstate.StateEnded {
		u.Cause = d.Event
		if u.Cause == "" && d.Code > 0 {
			u.Cause = strconv.Itoa(d.Code)
		}
		delete(t.active, d.ID)
	} else if state > td.state {
		td.state, td.changed = state, now
	}
	return dialogChange{dialogID: d.ID, update: u}, true
}

// stuck reports whether some dialog has not changed for longer than bound,
// and marks those dialogs checked so that each asks once per bound.
func (t *tracker) stuck(now time.Time, bound time.Duration) bool {
	if bound <= 0 {
		return false
	}
	found := false
	for _, td := range t.active {
		last := td.changed
		if td.checked.After(last) {
			last = td.checked
		}
		if now.Sub(last) >= bound {
			td.checked = now
			found = true
		}
	}
	return found
}

// lamp is what a BLF key shows for the tracked dialogs: hold when every
// answered call is held, busy, ringing, else idle.
func (t *tracker) lamp() string {
	var answered, held, ringing int
	for _, td := range t.active {
		switch td.state {
		case callstate.StateAnswered:
			answered++
			if td.onHold {
				held++
			}
		case callstate.StateRinging:
			ringing++
		}
	}
	switch {
	case answered > 0 && answered == held:
		return LampHold
	case answered > 0:
		return LampBusy
	case ringing > 0:
		return LampRinging
	}
	return LampIdle
}

// The lamps of the sip_lamp view.
const (
	LampIdle        = "idle"
	LampRinging     = "ringing"
	LampBusy        = "busy"
	LampHold        = "hold"
	LampUnavailable = "unavailable"
)

// dialogState maps an RFC 4235 dialog state to a call state.
func dialogState(s string) callstate.State {
	switch s {
	case DialogTrying, DialogProceeding, DialogEarly:
		return callstate.StateRinging
	case DialogConfirmed:
		return callstate.StateAnswered
	case DialogTerminated:
		return callstate.StateEnded
	}
	return callstate.StateUnknown
}

// party returns the user part of a SIP or tel URI ("sip:101@pbx" → "101"),
// or the identity as sent when it has none.
func party(identity string) string {
	s := strings.TrimSpace(identity)
	s = strings.TrimPrefix(strings.TrimSuffix(s, ">"), "<")
	for _, scheme := range []string{"sip:", "sips:", "tel:"} {
		if len(s) > len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			rest := s[len(scheme):]
			if i := strings.IndexAny(rest, "@;?"); i > 0 {
				return rest[:i]
			}
			return rest
		}
	}
	return s
}
