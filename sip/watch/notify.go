package watch

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sip"
)

// onNotify handles a NOTIFY of this subscription and returns the status to
// answer with. A 200 means what the NOTIFY changed is kept (Store.Keep),
// or is on its way there and, should keeping it fail, asked for again: the
// body is parsed before the subscription's lock is taken, the dialogs it
// changed are worked out under it (in the PBX's CSeq order, in memory
// only), and the events are kept after it is released. Nothing the
// subscription's lock guards ever waits for the network, the disk or the
// database, so a burst of NOTIFYs is answered as fast as it is parsed.
//
// The answer waits for Keep at most Config.AnswerWithin. A disk that
// stalls (an fsync of seconds on a loaded machine) must not cost the
// subscription: a PBX gives a NOTIFY up after its transaction timer
// (Kamailio's fr_timer, 32 s by RFC 3261, often set to a few seconds) and
// ends the subscription, and every lamp of the extension goes dark until
// it is made again. So a slow Keep is answered 200 in time and goes on;
// if it then fails, what it held is asked for again with the full state,
// as when it fails at once. What such an early answer risks is a crash
// before the write ends: the PBX does not send those changes again.
func (sub *subscription) onNotify(req *sipmsg.Request) (int, string) {
	doc := sub.parse(req.Body())
	code, reason, evs, cseq := sub.take(req, doc)
	if code != sipmsg.StatusOK || len(evs) == 0 {
		return code, reason
	}
	callID := req.CallID().Value() // the subscription dialog's (Subscriber.onNotify)
	kept := make(chan error, 1)
	go func() {
		ctx, cancel := sub.s.storeContext()
		defer cancel()
		kept <- sub.s.cfg.Store.Keep(ctx, evs)
	}()
	timer := time.NewTimer(sub.s.cfg.AnswerWithin)
	defer timer.Stop()
	select {
	case err := <-kept:
		return sub.answerKept(callID, cseq, len(evs), err)
	case <-timer.C:
	}
	if !sub.s.answerEarly(len(evs)) {
		// Too many answered early are still on their way to the disk: a
		// disk that does not come back must not pile them up in memory
		// without end. This one waits for its Keep, as before the limit.
		return sub.answerKept(callID, cseq, len(evs), <-kept)
	}
	go func() {
		defer sub.s.early.Add(-1)
		if err := <-kept; err != nil {
			sub.keepFailed(callID, cseq, len(evs), err)
		}
	}()
	return sipmsg.StatusOK, "OK"
}

// answerKept returns the answer to the NOTIFY numbered cseq of the dialog
// callID once Keep returned err for its events.
func (sub *subscription) answerKept(callID string, cseq uint32, events int, err error) (int, string) {
	if err != nil {
		return sub.keepFailed(callID, cseq, events, err)
	}
	return sipmsg.StatusOK, "OK"
}

// keepFailed takes back what the tracker took for said when keeping the
// events of the NOTIFY numbered cseq of the dialog callID failed: the full
// state is asked for, so that the PBX says it all again. It returns the
// answer for a NOTIFY not yet answered.
func (sub *subscription) keepFailed(callID string, cseq uint32, events int, err error) (int, string) {
	sub.mu.Lock()
	sub.trouble(time.Now()) // answered 500, or answered 200 and lost
	if sub.callID == callID {
		// A dialog made since counts its CSeqs anew.
		sub.forgetAnswer(cseq)
	}
	sub.tracker.unsent()
	sub.wantFull = true
	sub.signal()
	sub.mu.Unlock()
	sub.log().Warn("sip: keeping dialog changes failed; asking for full state", "err", err, "events", events)
	if errors.Is(err, callstate.ErrInvalidEvent) {
		return sipmsg.StatusBadRequest, "Unusable Dialog-Info Body"
	}
	return sipmsg.StatusInternalServerError, "Store Unavailable"
}

// parsedBody is a NOTIFY body as its package's parser read it.
type parsedBody struct {
	dialogs  sip.DialogInfo
	raw      [][]byte // each dialog's element as received, see sip.ParseDialogInfoRaw
	presence sip.Presence
	err      error
}

// parse reads a NOTIFY body of the subscription's package. It runs before
// the subscription's lock is taken, so that the documents of a busy
// extension are parsed side by side, each in its own NOTIFY's goroutine.
func (sub *subscription) parse(body []byte) parsedBody {
	var p parsedBody
	if sub.event == eventPresence {
		p.presence, p.err = sip.ParsePresence(body)
	} else {
		p.dialogs, p.raw, p.err = sip.ParseDialogInfoRaw(body)
	}
	return p
}

// take checks a NOTIFY against the subscription dialog, waits for its turn
// and works out, under mu, the events its parsed body implies. It returns
// the answer and, with 200, the events to keep before answering.
func (sub *subscription) take(req *sipmsg.Request, doc parsedBody) (int, string, []callstate.Event, uint32) {
	now := time.Now()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	toTag, _ := req.To().Params.Get("tag")
	fromTag, _ := req.From().Params.Get("tag")
	callID := sub.callID
	if sub.callID == "" || toTag != sub.localTag || fromTag == "" {
		return sipmsg.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist", nil, 0
	}
	if sub.remoteTag == "" {
		sub.remoteTag = fromTag
		sub.learnTarget(req.Contact(), req.GetHeaders("Record-Route"))
	} else if fromTag != sub.remoteTag {
		// Our subscription, from a dialog the PBX did not have before:
		// it has restarted and kept (or rebuilt) its subscriptions.
		sub.s.goPBXRestarted("a NOTIFY came from a new remote tag", sub.epoch)
		return sipmsg.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist", nil, 0
	} else if c := req.Contact(); c != nil && c.Address.Host != "" && !sameTarget(c.Address, sub.target) {
		// NOTIFY refreshes the remote target (RFC 6665 section 4.1.2.4).
		sub.learnTarget(c, req.GetHeaders("Record-Route"))
		sub.s.checkPBX("the PBX's Contact changed")
	}
	cseq := req.CSeq().SeqNo
	if sub.repeated(cseq) {
		// The PBX did not get our answer in time.
		sub.trouble(now)
		return sipmsg.StatusOK, "OK", nil, cseq
	}
	if sub.arrived == nil {
		sub.arrived = make(map[uint32]bool)
	}
	if sub.arrived[cseq] {
		// A retransmission of one in hand: the PBX is waiting for our
		// answer.
		sub.trouble(now)
	}
	sub.arrived[cseq] = true
	sub.waitTurn(cseq)
	defer sub.tookTurn(callID, cseq)
	if sub.callID != callID {
		// Replaced while waiting; the new dialog knows nothing of it.
		return sipmsg.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist", nil, 0
	}
	late := sub.notified && cseq <= sub.notifyCSeq
	now = sub.eventTime(now, cseq)
	ev := req.GetHeader("Event")
	if ev == nil || eventName(ev.Value()) != sub.event {
		return statusBadEvent, "Bad Event", nil, 0
	}
	ssh := req.GetHeader("Subscription-State")
	if ssh == nil {
		return sipmsg.StatusBadRequest, "Missing Subscription-State", nil, 0
	}
	ss := parseSubState(ssh.Value())

	code, reason, evs := sub.body(doc, cseq, now, ss, late)
	if code != sipmsg.StatusOK {
		return code, reason, nil, 0
	}
	sub.notified = true
	sub.lastHeard = now
	sub.answeredOK(cseq)
	switch ss.state {
	case "terminated":
		sub.term = &termination{reason: ss.reason, retryAfter: ss.retryAfter}
		sub.active = false
		sub.signal()
		sub.s.checkPBX("the PBX terminated a subscription")
	case "active", "pending":
		if ss.expires >= 0 && !late {
			d := seconds(ss.expires)
			sub.granted, sub.expiresAt = min(max(sub.granted, d), sub.s.expiry()), now.Add(d)
			sub.signal()
		}
	}
	return sipmsg.StatusOK, "OK", evs, cseq
}

// sameTarget reports whether a NOTIFY's Contact is the remote target
// already known.
func sameTarget(a, b sipmsg.Uri) bool {
	return a.Host == b.Host && a.Port == b.Port && a.User == b.User
}

// body takes a NOTIFY's parsed body, in its turn (late: after a later
// NOTIFY of the dialog was applied), and returns the events it implies:
// one per dialog whose state changed, none for the dialogs the PBX only
// repeats. Called with mu held; it does no I/O.
func (sub *subscription) body(doc parsedBody, cseq uint32, now time.Time, ss subState, late bool) (int, string, []callstate.Event) {
	if sub.event == eventPresence {
		switch {
		case errors.Is(doc.err, sip.ErrEmptyBody) || late:
			return sipmsg.StatusOK, "OK", nil
		case doc.err != nil:
			sub.log().Info("sip: NOTIFY body rejected", "err", doc.err)
			return sipmsg.StatusBadRequest, "Bad PIDF Body", nil
		}
		sub.s.states.setPresence(sub.ext, doc.presence.Status(), doc.presence.Note)
		return sipmsg.StatusOK, "OK", nil
	}

	di, err := doc.dialogs, doc.err
	switch {
	case errors.Is(err, sip.ErrEmptyBody) && !sub.notified && !late && ss.state == "active":
		// The first NOTIFY of a fresh subscription carries the full
		// state (RFC 6665 section 4.2.2); an empty one is what a PBX
		// that has nothing to tell sends: Kamailio after a restart,
		// before any call. No dialogs, then.
		di = sip.DialogInfo{State: sip.DocFull}
	case errors.Is(err, sip.ErrEmptyBody):
		return sipmsg.StatusOK, "OK", nil
	case err != nil:
		sub.log().Info("sip: NOTIFY body rejected", "err", err)
		if errors.Is(err, sip.ErrLimit) {
			return statusTooLarge, "Dialog-Info Body Over Limits", nil
		}
		return sipmsg.StatusBadRequest, "Bad Dialog-Info Body", nil
	}
	partial := di.State == sip.DocPartial
	switch {
	case late:
		// It came after NOTIFYs the PBX sent later. What it says still
		// happened, and the documents applied since may not have said it
		// (a quick answer before a hang-up), so it is applied too, and
		// full state asked for to settle the rest.
		sub.log().Debug("sip: applying a NOTIFY that came after later ones; asking for full state", "version", di.Version, "have", sub.version)
		sub.wantFull = true
		sub.signal()
	case di.HasVersion && sub.hasVersion && di.Version <= sub.version:
		// In its turn, but not newer than the document applied: what it
		// says counts as a late document's does, no more.
		sub.log().Debug("sip: dialog-info version not newer than the one applied", "version", di.Version, "have", sub.version)
		late = true
	case di.HasVersion && sub.hasVersion && partial && di.Version > sub.version+1:
		sub.log().Info("sip: dialog-info versions skipped; asking for full state", "version", di.Version, "have", sub.version)
		sub.wantFull = true
		sub.signal()
	case partial && !sub.hasVersion:
		sub.wantFull = true
		sub.signal()
	}
	var changes []dialogChange
	cause := callstate.CauseVanished
	switch {
	case late:
		changes = sub.tracker.late(di, now)
	default:
		if !partial && sub.afterRestart {
			cause = callstate.CausePBXRestart
		}
		changes = sub.tracker.apply(di, now, cause)
	}
	var evs []callstate.Event
	if len(changes) > 0 {
		// Each dialog's element as received; of one listed twice (see
		// collapse), the one in the later state.
		raw := make(map[string][]byte, len(doc.raw))
		rank := make(map[string]int, len(doc.raw))
		for i, r := range doc.raw {
			d := di.Dialogs[i]
			if k := stateRank(d.State); raw[d.ID] == nil || k >= rank[d.ID] {
				raw[d.ID], rank[d.ID] = r, k
			}
		}
		evs = make([]callstate.Event, 0, len(changes))
		for _, c := range changes {
			ev := callstate.Event{
				Source:     callstate.SourceSIP,
				Type:       eventDialog,
				DedupKey:   fmt.Sprintf("%s|%s|%d|%s|%s", sub.ext, sub.callID, cseq, c.dialogID, c.update.State),
				ReceivedAt: now,
				// The journal keeps the dialog's own element as the PBX
				// sent it, not the whole document: a busy extension's
				// document lists dozens of dialogs, and only this one
				// changed.
				Payload: raw[c.dialogID],
				Update:  c.update,
			}
			if ev.Payload == nil {
				ev.Payload = []byte{} // an end the subscriber concludes, or a document in another encoding
			}
			if c.ended != "" {
				// An end the subscriber concludes itself: an event of its own,
				// named after why.
				ev.Type = eventDialog + "-" + c.ended
				ev.DedupKey += "|" + c.ended
			}
			if c.ended == callstate.CausePBXRestart {
				sub.log().Info("sip: call ended: the PBX restarted and no longer lists it", "call_key", c.update.Key)
			}
			evs = append(evs, ev)
		}
	}
	if !partial && !late {
		sub.afterRestart = false
	}
	if di.HasVersion && !late {
		sub.hasVersion, sub.version = true, di.Version
	}
	sub.notifyLamp(sub.tracker.lamp())
	return sipmsg.StatusOK, "OK", evs
}

// notifyLamp queues a MESSAGE when the lamp changed and one is configured.
// Called with mu held.
func (sub *subscription) notifyLamp(lamp string) {
	if sub.s.message == nil || sub.event != eventDialog || sub.lamp == lamp {
		return
	}
	sub.lamp = lamp
	sub.s.queueMessage(sub.ext, lamp)
}

// subState is a parsed Subscription-State header.
type subState struct {
	state      string // active, pending, terminated
	reason     string
	expires    int // -1 when absent
	retryAfter time.Duration
}

func parseSubState(v string) subState {
	parts := strings.Split(v, ";")
	ss := subState{state: strings.ToLower(strings.TrimSpace(parts[0])), expires: -1}
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		val = strings.Trim(strings.TrimSpace(val), `"`)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "reason":
			ss.reason = strings.ToLower(val)
		case "expires":
			if n, err := strconv.Atoi(val); err == nil && n >= 0 {
				ss.expires = min(n, maxExpires)
			}
		case "retry-after":
			if n, err := strconv.Atoi(val); err == nil && n > 0 {
				ss.retryAfter = min(seconds(n), time.Hour)
			}
		}
	}
	return ss
}

// eventName returns the package of an Event header value, without params.
func eventName(v string) string {
	name, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(name))
}
