package watch

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sip"
)

// A tracker remembers the calls that ended for endedKeep (at most
// endedMemory of them), so that a document that still lists one of them
// does not bring it back: a late document, or one of a PBX that keeps
// listing a dialog it has lost track of. Kamailio under load does: a dialog
// whose PUBLISH lost the race for its entity tag stays in every document
// as "early" until that publication expires (pua_dialoginfo's lifetime,
// minutes), beside its real state. The bound is that of a busy extension:
// 5 calls a second for 10 minutes is 3,000 calls, about 1 MB.
const (
	endedMemory = 16384
	endedKeep   = 10 * time.Minute
)

// tracker keeps the active dialogs of one watched extension and turns
// dialog-info documents into call updates (RFC 4235: a full document replaces
// the extension's dialogs, a partial one updates those it lists).
type tracker struct {
	ext        string
	active     map[string]*trackedDialog // by dialog id
	ended      map[string]*trackedDialog // recently ended, by call key without a first-seen stamp
	endedOrder []string
}

// trackedDialog is a dialog the tracker knows about: its call key and, when
// the PBX sends them, the SIP identifiers that tell one use of a dialog id
// from the next.
type trackedDialog struct {
	key                         string
	base                        string // key without a first-seen stamp
	callID, localTag, remoteTag string
	state                       callstate.State
	onHold                      bool
	changed                     time.Time // last change of state or hold
	checked                     time.Time // last refresh asked for because it seemed stuck
	endedAt                     time.Time // when the call ended, for those remembered
	over                        bool      // the call ended
	concluded                   bool      // the tracker ended it (see end); the PBX has not said how
	sent                        string    // the last update returned for it, see said
}

// dialogChange is one call update a document implies, with the dialog id it
// came from (empty for none) for the journal's dedup key.
type dialogChange struct {
	dialogID string
	update   callstate.Update
	ended    string // the cause, when the tracker itself ends the call
}

func newTracker(ext string) *tracker {
	return &tracker{ext: ext, active: make(map[string]*trackedDialog), ended: make(map[string]*trackedDialog)}
}

// callHash is the part of a call key that stands for the dialog's Call-ID:
// a PBX may give a dialog id to another call later, and the Call-ID tells
// the calls apart.
func callHash(callID string) string {
	h := sha256.Sum256([]byte(callID))
	return hex.EncodeToString(h[:4])
}

// baseKey is the call key of dialog d: "<ext>/<id>~<hash of call-id>", or
// "<ext>/<id>" when the PBX sends no call-id (then a first-seen stamp is
// added, see dialog).
func (t *tracker) baseKey(d sip.Dialog) string {
	if d.CallID == "" {
		return t.ext + "/" + d.ID
	}
	return t.ext + "/" + d.ID + "~" + callHash(d.CallID)
}

// load seeds the tracker with the extension's active calls from the store,
// so a full document can end the ones that vanished while nobody watched.
// Calls already tracked are kept.
func (t *tracker) load(calls []callstate.Call, now time.Time) {
	prefix := t.ext + "/"
	tracked := make(map[string]bool, len(t.active))
	for _, td := range t.active {
		tracked[td.key] = true
	}
	for _, c := range calls {
		if !strings.HasPrefix(c.Key, prefix) || tracked[c.Key] {
			continue
		}
		id, base := strings.TrimPrefix(c.Key, prefix), c.Key
		if c.CallID != "" {
			h := "~" + callHash(c.CallID)
			if i := strings.LastIndex(id, h); i >= 0 {
				id, base = id[:i], prefix+id[:i]+h
			}
		} else if i := strings.LastIndexByte(id, '@'); i >= 0 {
			// Keys of dialogs without call-id carry a first-seen stamp.
			id, base = id[:i], prefix+id[:i]
		}
		if _, ok := t.active[id]; ok {
			// Two calls left active under one dialog id: the PBX can list
			// only one of them; the other ends with the next full document.
			id += "\x00" + c.Key
		}
		t.active[id] = &trackedDialog{key: c.Key, base: base, callID: c.CallID, state: c.State, onHold: c.OnHold, changed: now}
		tracked[c.Key] = true
	}
}

// document returns the updates doc implies and records them. A document
// without a state attribute is taken as full; a full one ends the dialogs it
// does not list with callstate.CauseVanished.
func (t *tracker) document(doc sip.DialogInfo, now time.Time) []dialogChange {
	return t.apply(doc, now, callstate.CauseVanished)
}

// apply is document with the cause given to the dialogs a full document
// no longer lists.
func (t *tracker) apply(doc sip.DialogInfo, now time.Time, cause string) []dialogChange {
	var out []dialogChange
	listed := make(map[string]bool, len(doc.Dialogs))
	for _, d := range collapse(doc.Dialogs) {
		listed[d.ID] = true
		out = append(out, t.dialog(d, now, false)...)
	}
	if doc.State != sip.DocPartial {
		ids := make([]string, 0, len(t.active))
		for id := range t.active {
			if !listed[id] {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		for _, id := range ids {
			out = append(out, t.end(id, cause, now))
		}
	}
	return out
}

// late returns the updates of a document that arrived after a newer one
// was applied. What it says still counts (that a call was answered before
// it ended, say), but it cannot bring back a call that is over, change what
// the newer documents said about hold, or end the dialogs it does not list.
func (t *tracker) late(doc sip.DialogInfo, now time.Time) []dialogChange {
	var out []dialogChange
	for _, d := range collapse(doc.Dialogs) {
		out = append(out, t.dialog(d, now, true)...)
	}
	return out
}

// end forgets the active dialog id and returns the update that ends its
// call with cause, at now.
func (t *tracker) end(id, cause string, now time.Time) dialogChange {
	td := t.active[id]
	delete(t.active, id)
	t.remember(td, now)
	td.concluded = true
	dialogID, _, _ := strings.Cut(id, "\x00")
	return dialogChange{dialogID: dialogID, ended: cause, update: callstate.Update{
		Key: td.key, Extension: t.ext, State: callstate.StateEnded, Cause: cause,
	}}
}

// remember keeps a call that ended at now, and forgets the oldest beyond
// endedMemory and those ended more than endedKeep ago.
func (t *tracker) remember(td *trackedDialog, now time.Time) {
	if _, ok := t.ended[td.base]; !ok {
		t.endedOrder = append(t.endedOrder, td.base)
	}
	td.endedAt, td.over = now, true
	t.ended[td.base] = td
	for len(t.endedOrder) > 0 {
		old := t.ended[t.endedOrder[0]]
		if len(t.endedOrder) <= endedMemory && now.Sub(old.endedAt) < endedKeep {
			break
		}
		delete(t.ended, t.endedOrder[0])
		t.endedOrder = t.endedOrder[1:]
	}
}

// conflicts reports whether d is another dialog than td though it has the
// same id: its call-id or one of its tags differs from what td had.
func (td *trackedDialog) conflicts(d sip.Dialog) bool {
	differ := func(a, b string) bool { return a != "" && b != "" && a != b }
	return differ(td.callID, d.CallID) || differ(td.localTag, d.LocalTag) || differ(td.remoteTag, d.RemoteTag)
}

// learn takes the identifiers d carries that td did not have yet.
// They are copied: the parser's strings share the memory of the whole
// document, which the tracker must not hold on to.
func (td *trackedDialog) learn(d sip.Dialog) {
	if td.callID == "" {
		td.callID = strings.Clone(d.CallID)
	}
	if td.localTag == "" {
		td.localTag = strings.Clone(d.LocalTag)
	}
	if td.remoteTag == "" {
		td.remoteTag = strings.Clone(d.RemoteTag)
	}
}

// dialog returns the updates one listed dialog implies: its own, after the
// end of the call that had its id before when the PBX gave the id to
// another call. A late dialog never reopens an ended call nor changes hold.
func (t *tracker) dialog(d sip.Dialog, now time.Time, late bool) []dialogChange {
	state := dialogState(d.State)
	if state == callstate.StateUnknown {
		return nil
	}
	var out []dialogChange
	td := t.active[d.ID]
	if td != nil && td.conflicts(d) {
		out = append(out, t.end(d.ID, callstate.CauseVanished, now))
		td = nil
	}
	tracked := true
	if td == nil {
		if state == callstate.StateEnded && d.CallID == "" {
			// Asterisk and FreeSWITCH list an idle extension as a
			// terminated dialog named after it: no call to record.
			return out
		}
		base := t.baseKey(d)
		key, old := base, t.ended[base]
		switch {
		case d.CallID == "":
			// The id may come back for the next call (Asterisk uses the
			// extension): tell the calls apart by when they started.
			key += "@" + strconv.FormatInt(now.UnixMilli(), 36)
		case old != nil && old.conflicts(d):
			// Same id and call-id, other tags: another dialog of the call.
			key += "@" + strconv.FormatInt(now.UnixMilli(), 36)
		case old != nil:
			// A word about a call that is over: it counts, but the call
			// stays over.
			tracked = false
		}
		if tracked {
			td = &trackedDialog{key: key, base: base, changed: now}
			t.active[strings.Clone(d.ID)] = td // not the document's memory, see learn
		} else {
			td = old
		}
	}
	td.learn(d)
	u := callstate.Update{
		Key:       td.key,
		CallID:    d.CallID,
		Extension: t.ext,
		State:     state,
	}
	switch d.Direction {
	case sip.DirectionInitiator:
		u.Direction = callstate.DirectionOut
		u.From, u.To = party(d.LocalIdentity), party(d.RemoteIdentity)
	case sip.DirectionRecipient:
		u.Direction = callstate.DirectionIn
		u.From, u.To = party(d.RemoteIdentity), party(d.LocalIdentity)
	}
	// What a document can add: to a call that is over, only a word that
	// it was answered (a quick answer before the hang-up, in a document
	// that came late), or how it ended when the tracker ended it itself;
	// to an active call, nothing that goes back (a PBX's stale listing of
	// an earlier state), and from a late document only progress.
	switch {
	case td.over:
		answer := state == callstate.StateAnswered && td.state < callstate.StateAnswered
		end := state == callstate.StateEnded && td.concluded
		if !answer && !end {
			return out
		}
		if end {
			td.concluded = false
		}
	case state < td.state, late && state == td.state:
		return out
	}
	if state == callstate.StateAnswered {
		held := d.LocalHeld || d.RemoteHeld
		u.OnHold = &held
		if held != td.onHold && !late {
			td.onHold, td.changed = held, now
		}
	}
	switch {
	case state == callstate.StateEnded:
		u.Cause = d.Event
		if u.Cause == "" && d.Code > 0 {
			u.Cause = strconv.Itoa(d.Code)
		}
		if tracked {
			delete(t.active, d.ID)
			t.remember(td, now)
		}
	case state > td.state:
		td.state, td.changed = state, now
	}
	if !td.said(u) {
		// The PBX repeats itself (every full document lists every
		// dialog): nothing new to journal.
		return out
	}
	return append(out, dialogChange{dialogID: d.ID, update: u})
}

// said records u as the last update returned for td, and reports whether
// it differs from the one before.
func (td *trackedDialog) said(u callstate.Update) bool {
	hold := "-"
	if u.OnHold != nil {
		hold = strconv.FormatBool(*u.OnHold)
	}
	s := strings.Join([]string{u.State.String(), hold, u.CallID, string(u.Direction), u.From, u.To, u.Cause}, "\x00")
	if s == td.sent {
		return false
	}
	td.sent = s
	return true
}

// unsent forgets which updates were returned, so that the next document
// returns all it implies again: those returned last may not have been
// stored.
func (t *tracker) unsent() {
	for _, td := range t.active {
		td.sent = ""
	}
	for _, td := range t.ended {
		td.sent = ""
	}
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

// lamp is what a BLF key shows for the tracked dialogs, by the lamp rule
// of the sip_lamp view (callstate.ExtensionLamp).
func (t *tracker) lamp() string {
	calls := make([]callstate.Call, 0, len(t.active))
	for _, td := range t.active {
		calls = append(calls, callstate.Call{State: td.state, OnHold: td.onHold})
	}
	return callstate.ExtensionLamp(calls)
}

// collapse returns ds with each dialog once. A PBX that builds an entity's
// document from several publications (Kamailio's presence_dialoginfo) may
// list one dialog twice: its real state, and an earlier one from a
// publication that was not updated. A dialog's state only moves forward
// (RFC 4235 section 3.7.1), so the furthest one listed is the dialog's;
// what it leaves out (a tag, an identity) is taken from the others.
// Elements with the same id that are not the same dialog (another
// call-id or tag) stay apart. ds is returned as it is when no id repeats.
func collapse(ds []sip.Dialog) []sip.Dialog {
	seen := make(map[string]int, len(ds))
	repeat := false
	for _, d := range ds {
		if _, ok := seen[d.ID]; ok {
			repeat = true
			break
		}
		seen[d.ID] = 0
	}
	if !repeat {
		return ds
	}
	out := make([]sip.Dialog, 0, len(ds))
	byID := make(map[string][]int, len(ds)) // indices in out
	for _, d := range ds {
		merged := false
		for _, i := range byID[d.ID] {
			if !sameDialog(out[i], d) {
				continue
			}
			out[i] = furthest(out[i], d)
			merged = true
			break
		}
		if !merged {
			byID[d.ID] = append(byID[d.ID], len(out))
			out = append(out, d)
		}
	}
	return out
}

// sameDialog reports whether a and b, listed under one id, can be one
// dialog: no SIP identifier that both carry differs.
func sameDialog(a, b sip.Dialog) bool {
	differ := func(x, y string) bool { return x != "" && y != "" && x != y }
	return !differ(a.CallID, b.CallID) && !differ(a.LocalTag, b.LocalTag) && !differ(a.RemoteTag, b.RemoteTag)
}

// furthest returns whichever of a and b is in the later state, with what
// it leaves out taken from the other.
func furthest(a, b sip.Dialog) sip.Dialog {
	if stateRank(b.State) > stateRank(a.State) {
		a, b = b, a
	}
	a.CallID = cmp.Or(a.CallID, b.CallID)
	a.LocalTag = cmp.Or(a.LocalTag, b.LocalTag)
	a.RemoteTag = cmp.Or(a.RemoteTag, b.RemoteTag)
	a.Direction = cmp.Or(a.Direction, b.Direction)
	a.LocalIdentity = cmp.Or(a.LocalIdentity, b.LocalIdentity)
	a.RemoteIdentity = cmp.Or(a.RemoteIdentity, b.RemoteIdentity)
	a.LocalDisplay = cmp.Or(a.LocalDisplay, b.LocalDisplay)
	a.RemoteDisplay = cmp.Or(a.RemoteDisplay, b.RemoteDisplay)
	return a
}

// stateRank orders RFC 4235 dialog states as they follow each other; an
// unknown or missing state comes first.
func stateRank(s string) int {
	switch s {
	case sip.DialogTrying:
		return 1
	case sip.DialogProceeding:
		return 2
	case sip.DialogEarly:
		return 3
	case sip.DialogConfirmed:
		return 4
	case sip.DialogTerminated:
		return 5
	}
	return 0
}

// dialogState maps an RFC 4235 dialog state to a call state.
func dialogState(s string) callstate.State {
	switch s {
	case sip.DialogTrying, sip.DialogProceeding, sip.DialogEarly:
		return callstate.StateRinging
	case sip.DialogConfirmed:
		return callstate.StateAnswered
	case sip.DialogTerminated:
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
