package watch

import (
	"time"

	"github.com/callstate/callstate"
)

// eventTime returns the time of the NOTIFY numbered cseq that arrived at
// now, in the order the PBX numbered its NOTIFYs (CSeq order): after the
// previous one's, so that the store's "latest event wins" rules (hold)
// follow the PBX's own order even when a NOTIFY overtook an earlier one.
// One that goes ahead of missing ones leaves a microsecond for each, and a
// NOTIFY that arrives after later ones were applied gets a time between
// theirs. Called with mu held.
func (sub *subscription) eventTime(now time.Time, cseq uint32) time.Time {
	now = callstate.EventTime(now)
	if sub.notified && cseq < sub.notifyCSeq {
		var lo, hi time.Time
		var loSeq, hiSeq uint32
		for _, nt := range sub.times {
			c, t := nt.cseq, nt.at
			if c < cseq && (lo.IsZero() || c > loSeq) {
				lo, loSeq = t, c
			}
			if c > cseq && (hi.IsZero() || c < hiSeq) {
				hi, hiSeq = t, c
			}
		}
		if !hi.IsZero() {
			t := hi.Add(-time.Microsecond)
			if slot := lo.Add(time.Duration(cseq-loSeq) * time.Microsecond); !lo.IsZero() && slot.Before(t) {
				t = slot
			}
			if !t.After(lo) {
				t = hi
			}
			sub.keepTime(cseq, t)
			return t
		}
	}
	step := time.Microsecond
	if sub.notified && cseq > sub.notifyCSeq {
		step = time.Duration(min(cseq-sub.notifyCSeq, keptTimes)) * time.Microsecond
	}
	if now.Before(sub.lastAt.Add(step)) {
		now = sub.lastAt.Add(step)
	}
	sub.lastAt = now
	sub.keepTime(cseq, now)
	return now
}

// keptTimes is how many NOTIFY times a subscription keeps for the ones
// that come late, for up to keptFor: a NOTIFY comes no later than its
// sender's retransmissions last (64*T1, 32 s), and a subscription that
// hears once per refresh then keeps one time, not 32.
const (
	keptTimes = 32
	keptFor   = time.Minute
)

// notifyTime is the time given to the NOTIFY numbered cseq.
type notifyTime struct {
	cseq uint32
	at   time.Time
}

// keepTime records the time given to NOTIFY cseq, forgetting the oldest
// beyond keptTimes and those older than keptFor. Called with mu held.
func (sub *subscription) keepTime(cseq uint32, t time.Time) {
	old := 0
	for old < len(sub.times) && t.Sub(sub.times[old].at) > keptFor {
		old++
	}
	if len(sub.times)-old == keptTimes {
		old++
	}
	switch {
	case old == len(sub.times):
		sub.times = nil // a new small slice, not the largest one ever grown
	case old > 0:
		sub.times = append(sub.times[:0], sub.times[old:]...)
	}
	sub.times = append(sub.times, notifyTime{cseq: cseq, at: t})
}

// reorderWait bounds how long a NOTIFY waits for an earlier one that has
// not arrived; maxReorderWait bounds its wait for earlier ones that have
// arrived and are being applied.
const (
	reorderWait    = 50 * time.Millisecond
	maxReorderWait = 2 * time.Second
)

// waitTurn holds a NOTIFY whose CSeq is beyond the next one expected until
// the NOTIFYs the PBX sent before it are answered, so that they are applied
// in the PBX's order: sipgo hands each request over in a goroutine of its
// own, so a burst arrives in any order. The wait lasts while the earlier
// ones are in hand (up to maxReorderWait); for one that has not arrived it
// lasts reorderWait. A NOTIFY that goes ahead then is applied as usual, and
// the missing one, should it still come, as a late one (see body). After
// three vain waits in one dialog the PBX is taken to number its NOTIFYs
// with gaps, and nothing waits for a missing one any more. Called with mu
// held; it may release it meanwhile.
func (sub *subscription) waitTurn(cseq uint32) {
	if sub.notifyCSeq == 0 || !sub.aheadOfTurn(cseq) {
		return
	}
	start := time.Now()
	missingSince := time.Time{}
	callID := sub.callID
	waitMissing, waitArrived := reorderWait, maxReorderWait
	if d := sub.s.cfg.holdFor; d > 0 {
		waitMissing, waitArrived = d, d
	}
	if h := sub.s.cfg.heldForTurn; h != nil {
		h(cseq)
	}
	for sub.callID == callID && sub.aheadOfTurn(cseq) {
		now := time.Now()
		if sub.allArrived(cseq) {
			missingSince = time.Time{}
		} else if missingSince.IsZero() {
			missingSince = now
		}
		deadline := start.Add(waitArrived)
		if !missingSince.IsZero() {
			if sub.outOfTurn >= 3 {
				return
			}
			deadline = earliest(deadline, missingSince.Add(waitMissing))
		}
		if !now.Before(deadline) {
			sub.trouble(now) // a NOTIFY went astray
			if sub.vainFor != sub.notifyCSeq+1 {
				sub.outOfTurn, sub.vainFor = sub.outOfTurn+1, sub.notifyCSeq+1
			}
			sub.log().Debug("sip: NOTIFY waited in vain for an earlier one", "cseq", cseq, "have", sub.notifyCSeq)
			return
		}
		if sub.turn == nil {
			sub.turn = make(chan struct{})
		}
		turn := sub.turn
		timer := time.NewTimer(min(deadline.Sub(now), reorderWait/5))
		sub.mu.Unlock()
		select {
		case <-turn:
		case <-timer.C:
		}
		timer.Stop()
		sub.mu.Lock()
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// allArrived reports whether every NOTIFY between the last answered and
// cseq is in hand. Called with mu held.
func (sub *subscription) allArrived(cseq uint32) bool {
	if uint64(cseq)-uint64(sub.notifyCSeq) > keptTimes {
		return false
	}
	for c := sub.notifyCSeq + 1; c < cseq; c++ {
		if !sub.arrived[c] {
			return false
		}
	}
	return true
}

// aheadOfTurn reports whether cseq is beyond the next NOTIFY expected.
// Called with mu held.
func (sub *subscription) aheadOfTurn(cseq uint32) bool {
	return uint64(cseq) > uint64(sub.notifyCSeq)+1 // no wrap at 2^32-1
}

// tookTurn records that the NOTIFY numbered cseq of dialog callID has been
// answered and wakes those waiting for it. Called with mu held.
func (sub *subscription) tookTurn(callID string, cseq uint32) {
	if sub.callID != callID {
		return
	}
	delete(sub.arrived, cseq)
	if cseq > sub.notifyCSeq {
		sub.notifyCSeq = cseq
	}
	if sub.turn != nil {
		close(sub.turn)
		sub.turn = nil
	}
}

// answeredKept is how many NOTIFYs answered 200 a subscription remembers,
// to answer their retransmissions.
const answeredKept = 8

// repeated reports whether the NOTIFY numbered cseq of the current dialog
// was answered 200 already: the PBX sends it again because our answer was
// lost or late. The subscriber ends each NOTIFY's server transaction as
// soon as it has answered (instead of holding it, request and response,
// for the 32 s of RFC 3261's Timer J), so such a repeat comes here and is
// answered 200 again without being applied again. Called with mu held.
func (sub *subscription) repeated(cseq uint32) bool {
	for _, c := range sub.answered[:min(sub.nAnswered, answeredKept)] {
		if c == cseq {
			return true
		}
	}
	return false
}

// answeredOK records that the NOTIFY numbered cseq was answered 200.
// Called with mu held.
func (sub *subscription) answeredOK(cseq uint32) {
	sub.answered[sub.nAnswered%answeredKept] = cseq
	sub.nAnswered++
}

// forgetAnswer takes back answeredOK(cseq): what the NOTIFY changed could
// not be kept, so a repeat of it is no repeat. Called with mu held.
func (sub *subscription) forgetAnswer(cseq uint32) {
	for i, c := range sub.answered[:min(sub.nAnswered, answeredKept)] {
		if c == cseq {
			sub.answered[i] = 0
		}
	}
}
