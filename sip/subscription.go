package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"github.com/callstate/callstate"
)

// The event packages the subscriber speaks.
const (
	eventDialog   = "dialog"
	eventPresence = "presence"
)

// subscription is one extension's subscription to one event package. It
// outlives the SIP subscription dialogs it opens one after the other: sipgo
// has no SUBSCRIBE dialogs, so Call-ID, tags, CSeq, remote target and route
// set are kept here.
type subscription struct {
	s     *Subscriber
	ext   string
	event string
	slot  slot // its place in the Subscriber's scheduler

	// Only step uses these; the scheduler runs one step at a time.
	phase     int
	begun     bool      // the first step has run
	failures  int       // attempts in a row that failed
	lastFull  time.Time // when full state was last asked for
	nextStuck time.Time // when to look for dialogs that seem stuck

	mu           sync.Mutex
	callID       string // of the current dialog; empty between dialogs
	localTag     string
	remoteTag    string // empty until the 2xx or the first NOTIFY
	cseq         uint32
	target       sipmsg.Uri   // remote target: the Request-URI of in-dialog requests
	routes       []sipmsg.Uri // route set, from Record-Route
	active       bool         // granted and not ended
	granted      time.Duration
	refreshPoint float64 // where between 80 % and 90 % of granted to refresh, see refreshLead
	expiresAt    time.Time
	lastHeard    time.Time
	hasVersion   bool
	version      uint64
	lastAt       time.Time // time given to the last NOTIFY applied, see eventTime
	term         *termination
	wantFull     bool
	notifyCSeq   uint32               // highest NOTIFY CSeq answered in this dialog; 0 before the first
	turn         chan struct{}        // closed when notifyCSeq moves; made by the first NOTIFY to wait for it
	answered     [answeredKept]uint32 // CSeqs of the NOTIFYs of this dialog last answered 200, see repeated
	nAnswered    int
	outOfTurn    int             // earlier CSeqs waited for in vain
	vainFor      uint32          // the last of them
	arrived      map[uint32]bool // NOTIFYs of this dialog in hand, not answered yet, by CSeq
	times        []notifyTime    // times given to the NOTIFYs answered lately, oldest first
	notified     bool            // a NOTIFY of this dialog has been applied
	troubleAt    time.Time       // when a NOTIFY of this dialog last went astray or unanswered, see ownLoss
	tracker      *tracker
	lamp         string
	state        string // last state queued for SetSubscriptions

	epoch        uint64    // the Subscriber's restart count when this dialog was opened
	lost         string    // why the PBX lost the subscription; maintain gives it up
	resubAt      time.Time // when to subscribe again: after a back-off, or when the PBX lost it
	afterRestart bool      // the next fresh full state ends unlisted calls with CausePBXRestart
	probe        bool      // refresh at once: does the PBX still know the subscription?
}

// termination is what a NOTIFY with Subscription-State: terminated said.
type termination struct {
	reason     string
	retryAfter time.Duration
}

// outcome is how an attempt to subscribe or refresh ended.
type outcome struct {
	ok         bool
	state      string        // SubRetrying or SubRefused when not ok
	reason     string        // for logs and sip_extension.reason
	retryAfter time.Duration // >0: the PBX said when; else back off
	now        bool          // try again at once (the PBX lost the subscription)
	final      bool          // do not try again (RFC 6665 rejected, noresource, invariant)
	lost       bool          // the PBX restarted or is unreachable; the Subscriber says when to try again
	verdict    bool          // the PBX is asked whether it restarted; resubAt says until when to wait
}

func (s *Subscriber) newSubscription(ext, event string) *subscription {
	return &subscription{
		s: s, ext: ext, event: event,
		slot:    slot{index: -1},
		tracker: newTracker(ext),
	}
}

// log returns the Subscriber's logger with the subscription's extension
// and event package. It is built when something is logged, not kept: with
// tens of thousands of subscriptions a logger each costs megabytes.
func (sub *subscription) log() *slog.Logger {
	return sub.s.log.With("extension", sub.ext, "event", sub.event)
}

func (sub *subscription) isActive() bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.active
}

// signal has the subscription stepped again soon, because something
// changed what it should do. Callers may hold mu.
func (sub *subscription) signal() { sub.s.sched.wake(sub) }

// Phases of a subscription between steps.
const (
	phaseDown  = iota // no subscription dialog: subscribe at resubAt, or at once
	phaseUp           // subscribed: refresh it in time, notice when it ends
	phaseFinal        // refused for good: nothing until the extension is re-enabled
)

// step does what the subscription needs done now (subscribe, refresh, give
// a lost subscription up and plan the next attempt) and returns when it
// wants to be stepped next; zero means only when woken (signal). The
// scheduler runs one step of a subscription at a time, so the fields step
// alone uses (phase, failures, lastFull, nextStuck) need no lock. A step
// that ctx ends returns at once; stop un-subscribes afterwards.
func (sub *subscription) step(ctx context.Context) time.Time {
	if !sub.begun {
		sub.begun = true
		sub.setState(SubPending, "")
	}
	for ctx.Err() == nil {
		switch sub.phase {
		case phaseFinal:
			return time.Time{}
		case phaseDown:
			if sub.s.pbxDown() {
				// pbxAnswers wakes it when the PBX answers again.
				return time.Time{}
			}
			sub.mu.Lock()
			if at := sub.resubAt; at.After(time.Now()) {
				sub.mu.Unlock()
				return at
			}
			sub.lost, sub.resubAt = "", time.Time{}
			sub.mu.Unlock()
			out := sub.subscribe(ctx)
			if ctx.Err() != nil {
				return time.Time{}
			}
			if !out.ok {
				sub.fail(out)
				continue
			}
			sub.failures = 0
			sub.log().Info("sip: subscription up", "expires", sub.grantedExpiry())
			sub.setState(SubActive, "")
			sub.phase, sub.lastFull = phaseUp, time.Time{}
			if every := sub.stuckEvery(); every > 0 {
				sub.nextStuck = time.Now().Add(every)
			}
		case phaseUp:
			next, out := sub.maintain(ctx)
			if ctx.Err() != nil {
				return time.Time{}
			}
			if !next.IsZero() {
				return next
			}
			sub.fail(out)
		}
	}
	return time.Time{}
}

// fail records that the subscription is down for out's reason and plans
// the next attempt: at once or after a back-off or the wait the PBX asked
// for, never after a final refusal, and at the time the Subscriber gave
// (resubAt) when the PBX restarted or is unreachable.
func (sub *subscription) fail(out outcome) {
	sub.down(out)
	sub.phase = phaseDown
	delay := out.retryAfter
	switch {
	case delay > 0:
		delay = retryJitter(delay)
	case out.now && sub.failures == 0:
		delay = 0
	default:
		delay = backoff(sub.s.cfg.RetryMin, sub.s.cfg.RetryMax, sub.failures)
	}
	sub.mu.Lock()
	out.lost = out.lost || sub.lost != ""
	switch {
	case out.verdict && !out.lost:
		delay = max(time.Until(sub.resubAt), 0)
	case !out.lost && !out.final:
		sub.resubAt = time.Now().Add(delay)
	}
	sub.mu.Unlock()
	switch {
	case out.final:
		sub.phase = phaseFinal
		sub.log().Warn("sip: subscription refused; not retrying until the extension is re-enabled", "reason", out.reason)
	case out.lost:
		// The PBX restarted or is unreachable: the Subscriber has spread
		// the new SUBSCRIBEs (resubAt), and none goes out while the PBX
		// does not answer (pbxDown).
		sub.log().Warn("sip: subscription lost with the PBX", "reason", out.reason)
	default:
		sub.failures++
		sub.log().Warn("sip: subscription "+out.state, "reason", out.reason, "retry_in", delay.Round(time.Millisecond))
	}
}

// stuckEvery is how often an established dialog subscription checks for
// dialogs that seem stuck; zero when it does not.
func (sub *subscription) stuckEvery() time.Duration {
	if d := sub.s.cfg.StuckDialogTimeout; d > 0 && sub.event == eventDialog {
		return max(d/4, 100*time.Millisecond)
	}
	return 0
}

// down records that the subscription is not up, so the lamps show
// unavailable, and forgets the dialog.
func (sub *subscription) down(out outcome) {
	sub.mu.Lock()
	callID := sub.callID
	sub.callID, sub.active = "", false
	sub.notifyLamp(LampUnavailable)
	sub.mu.Unlock()
	// Not under mu: the Subscriber's lock is never taken under a
	// subscription's (sync holds it while it sets up new ones).
	if callID != "" {
		sub.s.unregister(callID)
	}
	sub.setState(out.state, out.reason)
}

// backoff returns the delay before attempt n+1: doubling from lo up to hi,
// with jitter over its upper half.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for range min(n, 30) {
		d *= 2
		if d >= hi {
			d = hi
			break
		}
	}
	return d/2 + rand.N(d/2+1)
}

func (sub *subscription) grantedExpiry() time.Duration {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.granted
}

// setState queues the dialog subscription's state for the store when it
// changed; the state writer writes it, and again until it lands. Presence
// subscriptions only log.
func (sub *subscription) setState(state, reason string) {
	if sub.event != eventDialog {
		return
	}
	sub.mu.Lock()
	same := sub.state == state+"\x00"+reason
	sub.state = state + "\x00" + reason
	sub.mu.Unlock()
	if same {
		return
	}
	sub.s.states.setSubscription(sub.ext, state, reason)
}

// subscribe opens a new subscription dialog with an out-of-dialog SUBSCRIBE.
// For dialog events it first reads the extension's active calls from the
// store, so that the first full document ends the calls that ended while
// nobody watched; no NOTIFY ever waits for the store.
func (sub *subscription) subscribe(ctx context.Context) outcome {
	if sub.event == eventDialog {
		sctx, cancel := context.WithTimeout(ctx, sub.s.cfg.StoreTimeout)
		calls, err := sub.s.cfg.Store.ActiveCalls(sctx, callstate.SourceSIP, sub.ext)
		cancel()
		if err != nil {
			return outcome{state: SubRetrying, reason: "reading the extension's active calls failed: " + err.Error()}
		}
		sub.mu.Lock()
		sub.tracker.load(calls, time.Now())
		sub.mu.Unlock()
	}
	sub.mu.Lock()
	sub.callID = uuid.NewString()
	sub.localTag = sipmsg.GenerateTagN(16)
	sub.remoteTag = ""
	sub.cseq = 0
	sub.notifyCSeq, sub.outOfTurn, sub.vainFor, sub.notified = 0, 0, 0, false
	sub.nAnswered = 0
	clear(sub.arrived)
	sub.times = sub.times[:0]
	sub.epoch, sub.probe = sub.s.restartEpoch(), false
	sub.target = sipmsg.Uri{Scheme: "sip", User: sub.ext, Host: sub.s.domain}
	if sub.s.transport == "TLS" {
		sub.target.Scheme = "sips"
	}
	sub.routes = nil
	sub.active, sub.hasVersion, sub.term, sub.wantFull = false, false, nil, false
	sub.troubleAt = time.Time{}
	callID := sub.callID
	req := sub.request(sub.s.expiry())
	sub.mu.Unlock()

	sub.s.register(callID, sub)
	sub.s.opened.Add(1)
	res, err := sub.s.do(ctx, req)
	sub.syncCSeq(req)
	if err != nil {
		sub.s.checkPBX("SUBSCRIBE got no answer")
		return outcome{state: SubRetrying, reason: "no answer from the PBX: " + err.Error()}
	}
	if res.StatusCode/100 == 2 {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		if sub.callID != callID {
			return outcome{state: SubRetrying, reason: "subscription replaced"}
		}
		if sub.remoteTag == "" {
			sub.remoteTag, _ = res.To().Params.Get("tag")
			sub.learnTarget(res.Contact(), res.GetHeaders("Record-Route"))
		}
		sub.grant(res, time.Now())
		if sub.term != nil {
			// A NOTIFY ended it before the 2xx arrived.
			sub.active = false
		}
		return outcome{ok: true}
	}
	return sub.refused(res, "SUBSCRIBE")
}

// refused turns a final non-2xx response into an outcome.
func (sub *subscription) refused(res *sipmsg.Response, what string) outcome {
	reason := fmt.Sprintf("%s answered %d %s", what, res.StatusCode, res.Reason)
	out := outcome{state: SubRetrying, reason: reason, retryAfter: retryAfter(res)}
	switch res.StatusCode {
	case statusBadEvent:
		out.state, out.reason = SubRefused, "PBX does not support "+sub.event+" events ("+reason+")"
		out.retryAfter = max(out.retryAfter, sub.s.cfg.RetryMax)
	case sipmsg.StatusUnauthorized, sipmsg.StatusProxyAuthRequired, sipmsg.StatusForbidden:
		out.state, out.reason = SubRefused, reason+": check SIP_USERNAME, SIP_PASSWORD, SIP_AUTH_USERNAME and SIP_REALM"
		out.retryAfter = max(out.retryAfter, sub.s.cfg.RetryMax)
	case sipmsg.StatusNotFound, sipmsg.StatusGlobalDecline:
		out.state = SubRefused
		out.retryAfter = max(out.retryAfter, sub.s.cfg.RetryMax)
	case sipmsg.StatusCallTransactionDoesNotExists:
		out.now = true
	case 423: // Interval Too Brief
		if h := res.GetHeader("Min-Expires"); h != nil {
			if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n > 0 && n <= 86400 {
				sub.s.raiseExpires(seconds(n))
				out.now = true
			}
		}
	}
	return out
}

// retryAfter returns a response's Retry-After in seconds, capped at an hour,
// or 0.
func retryAfter(res *sipmsg.Response) time.Duration {
	h := res.GetHeader("Retry-After")
	if h == nil {
		return 0
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	v, _, _ = strings.Cut(strings.TrimSpace(v), " ")
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0
	}
	return min(seconds(n), time.Hour)
}

// grant takes the subscription's lifetime from the 2xx's Expires (capped
// at what was asked for). Called with mu held.
func (sub *subscription) grant(res *sipmsg.Response, now time.Time) {
	d := sub.s.expiry()
	if h := res.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(strings.TrimSpace(h.Value())); err == nil && n >= 0 {
			d = min(d, seconds(n))
		}
	}
	sub.granted, sub.expiresAt, sub.lastHeard = d, now.Add(d), now
	sub.active = d > 0
	sub.refreshPoint = rand.Float64()
}

// refreshLead returns how long before expiry a subscription of lifetime d
// is refreshed: between one and two times a base lead, r (in [0, 1)) says
// where. The base is a tenth of d, so from 200 s on the refresh comes
// between 80 % and 90 % of d; for shorter lifetimes it is a quarter of d up
// to 20 s, so that a refresh the PBX is slow to answer (a busy PBX, a
// retransmission) still arrives before the PBX ends the subscription. Each
// grant draws a new r, so that subscriptions granted together drift apart
// and the refreshes of many are spread instead of coming in one burst.
func refreshLead(d time.Duration, r float64) time.Duration {
	base := max(d/10, min(d/4, 20*time.Second))
	return base + time.Duration(float64(base)*min(max(r, 0), 1))
}

// startWindow is how long the first SUBSCRIBEs of n extensions are spread
// over: rate a second (cfg.SubscribeRate), but at most a quarter of the
// expiry asked for, so that all are up well within one lifetime.
func startWindow(n, rate int, expires time.Duration) time.Duration {
	return min(time.Duration(n)*time.Second/time.Duration(max(rate, 1)), expires/4)
}

// retryJitter adds up to a tenth to a delay the PBX asked for (Retry-After,
// retry-after), never less: many subscriptions told the same wait do not
// all come back in the same second.
func retryJitter(d time.Duration) time.Duration {
	return d + rand.N(d/10+1)
}

// maintain keeps an established subscription alive: it refreshes it when
// its refresh is due or full state is needed, and returns when it wants to
// be stepped next, or a zero time and why the subscription is lost.
func (sub *subscription) maintain(ctx context.Context) (time.Time, outcome) {
	cfg := sub.s.cfg
	for {
		sub.mu.Lock()
		term, wantFull, active, lost, probe := sub.term, sub.wantFull, sub.active, sub.lost, sub.probe
		refreshAt := sub.expiresAt.Add(-refreshLead(sub.granted, sub.refreshPoint))
		deadAt := sub.lastHeard.Add(sub.granted + 5*time.Second)
		sub.probe = false
		sub.mu.Unlock()
		if lost != "" {
			return time.Time{}, outcome{state: SubRetrying, reason: lost, lost: true}
		}
		if term != nil {
			return time.Time{}, sub.terminated(term)
		}
		if !active {
			return time.Time{}, outcome{state: SubRetrying, reason: "subscription expired", now: true}
		}
		now := time.Now()
		if now.After(deadAt) {
			return time.Time{}, outcome{state: SubRetrying, reason: "no word from the PBX within the subscription's expiry", now: true}
		}
		every := sub.stuckEvery()
		if every > 0 && !now.Before(sub.nextStuck) {
			sub.nextStuck = now.Add(every)
			sub.mu.Lock()
			if sub.tracker.stuck(now, cfg.StuckDialogTimeout) {
				sub.log().Info("sip: a dialog did not change for SIP_STUCK_DIALOG_TIMEOUT; asking for full state")
				sub.wantFull, wantFull = true, true
			}
			sub.mu.Unlock()
		}
		refresh := !now.Before(refreshAt) || probe
		if wantFull && now.Sub(sub.lastFull) >= time.Second {
			refresh = true
		}
		if refresh {
			if wantFull {
				sub.lastFull = now
				sub.log().Debug("sip: asking for full state")
			}
			if out := sub.refresh(ctx, sub.s.expiry()); !out.ok {
				return time.Time{}, out
			}
			continue
		}
		next := earliest(refreshAt, deadAt)
		if wantFull {
			next = earliest(next, sub.lastFull.Add(time.Second))
		}
		if every > 0 {
			next = earliest(next, sub.nextStuck)
		}
		return latest(next, now.Add(time.Millisecond)), outcome{}
	}
}

// terminated turns a Subscription-State: terminated into an outcome, with
// the reasons of RFC 6665 section 4.1.3 respected.
func (sub *subscription) terminated(t *termination) outcome {
	out := outcome{state: SubRetrying, reason: "PBX terminated the subscription", retryAfter: t.retryAfter}
	if t.reason != "" {
		out.reason += " (" + t.reason + ")"
	}
	switch t.reason {
	case "deactivated", "timeout":
		out.now = true
	case "rejected", "noresource", "invariant":
		out.state, out.final = SubRefused, true
	}
	return out
}

// ownLossWindow is how long after a NOTIFY went astray a 481 to a refresh
// is taken for the PBX giving up this one subscription: a notifier ends a
// subscription whose NOTIFY transaction failed (RFC 6665 section 4.2.2),
// after at most 64*T1 (32 s) of retransmissions.
const ownLossWindow = 64 * 500 * time.Millisecond

// ownLoss reports whether a NOTIFY of this subscription dialog went astray
// or unanswered within ownLossWindow before now: the PBX retransmitted one
// (our answer was lost or late), one never arrived (its turn was waited
// for in vain), or one was answered 500. Then a 481 to a refresh is this
// subscription's own loss, not a sign that the PBX restarted: the busy
// extension is subscribed again, and the others are left alone.
func (sub *subscription) ownLoss(now time.Time) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return !sub.troubleAt.IsZero() && now.Sub(sub.troubleAt) < ownLossWindow
}

// refresh sends SUBSCRIBE within the dialog; expires 0 un-subscribes.
func (sub *subscription) refresh(ctx context.Context, expires time.Duration) outcome {
	sub.mu.Lock()
	if sub.callID == "" {
		sub.mu.Unlock()
		return outcome{state: SubRetrying, reason: "no subscription", now: true}
	}
	callID := sub.callID
	sub.wantFull = false
	req := sub.request(expires)
	sub.mu.Unlock()
	res, err := sub.s.do(ctx, req)
	sub.syncCSeq(req)
	if err != nil {
		if expires > 0 {
			sub.s.checkPBX("refresh SUBSCRIBE got no answer")
		}
		return outcome{state: SubRetrying, reason: "refresh got no answer: " + err.Error(), now: true}
	}
	sub.mu.Lock()
	if sub.callID != callID {
		sub.mu.Unlock()
		return outcome{state: SubRetrying, reason: "subscription replaced", now: true}
	}
	if res.StatusCode/100 == 2 {
		if expires > 0 {
			sub.grant(res, time.Now())
		}
		sub.mu.Unlock()
		if expires > 0 {
			sub.s.refreshKnown(sub)
		}
		return outcome{ok: true}
	}
	epoch := sub.epoch
	sub.mu.Unlock()
	out := sub.refused(res, "refresh SUBSCRIBE")
	switch res.StatusCode {
	case sipmsg.StatusCallTransactionDoesNotExists:
		// The PBX no longer knows a subscription it granted: it restarted
		// and lost everyone's, or lost only this one (refreshUnknown
		// tells which, unless this one's NOTIFYs went astray lately).
		out.now = true
		switch {
		case expires == 0:
		case sub.ownLoss(time.Now()):
			out.reason += "; NOTIFYs of this subscription went astray or unanswered lately, so the PBX gave it up"
			sub.log().Warn("sip: the PBX gave up this subscription after NOTIFYs went astray or unanswered; subscribing again")
		default:
			out.verdict = sub.s.refreshUnknown(sub, epoch)
		}
	case sipmsg.StatusRequestTimeout:
		out.now = true
	}
	return out
}

// stop un-subscribes (Expires: 0) if a subscription is up, within the
// request timeout, and records that nobody watches the extension.
func (sub *subscription) stop() {
	sub.mu.Lock()
	up := sub.callID != "" && sub.remoteTag != ""
	callID := sub.callID
	sub.mu.Unlock()
	if up {
		ctx, cancel := context.WithTimeout(context.Background(), min(sub.s.cfg.RequestTimeout, 5*time.Second))
		if out := sub.refresh(ctx, 0); !out.ok {
			sub.log().Debug("sip: un-subscribe failed", "reason", out.reason)
		} else {
			sub.log().Info("sip: un-subscribed")
		}
		cancel()
	}
	if callID != "" {
		sub.s.unregister(callID)
	}
	sub.mu.Lock()
	sub.callID, sub.active = "", false
	sub.mu.Unlock()
	sub.setState(SubTerminated, "not watched: callstate stopped or the extension was disabled")
}

// request builds a SUBSCRIBE in the current dialog, CSeq incremented.
// Called with mu held.
func (sub *subscription) request(expires time.Duration) *sipmsg.Request {
	s := sub.s
	req := sipmsg.NewRequest(sipmsg.SUBSCRIBE, sub.target)
	req.SetDestination(s.cfg.PBXAddr)
	req.SetTransport(s.transport)
	from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: sub.target.Scheme, User: s.cfg.Username, Host: s.domain}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sub.localTag)
	to := &sipmsg.ToHeader{Address: sipmsg.Uri{Scheme: sub.target.Scheme, User: sub.ext, Host: s.domain}, Params: sipmsg.NewParams()}
	if sub.remoteTag != "" {
		to.Params.Add("tag", sub.remoteTag)
	}
	sub.cseq++
	callID := sipmsg.CallIDHeader(sub.callID)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: sub.cseq, MethodName: sipmsg.SUBSCRIBE})
	for _, r := range sub.routes {
		req.AppendHeader(&sipmsg.RouteHeader{Address: r})
	}
	req.AppendHeader(&sipmsg.ContactHeader{Address: s.contact})
	req.AppendHeader(sipmsg.NewHeader("Event", sub.event))
	if sub.event == eventDialog {
		req.AppendHeader(sipmsg.NewHeader("Accept", "application/dialog-info+xml"))
	} else {
		req.AppendHeader(sipmsg.NewHeader("Accept", "application/pidf+xml"))
	}
	exp := sipmsg.ExpiresHeader(uint32(expires / time.Second))
	req.AppendHeader(&exp)
	req.AppendHeader(sipmsg.NewHeader("User-Agent", s.cfg.UserAgent))
	return req
}

// syncCSeq keeps the dialog's CSeq at least that of req, which digest
// authentication may have increased.
func (sub *subscription) syncCSeq(req *sipmsg.Request) {
	if h := req.CSeq(); h != nil {
		sub.mu.Lock()
		sub.cseq = max(sub.cseq, h.SeqNo)
		sub.mu.Unlock()
	}
}

// learnTarget takes the remote target and route set from a 2xx or the first
// NOTIFY. Called with mu held.
func (sub *subscription) learnTarget(contact *sipmsg.ContactHeader, rr []sipmsg.Header) {
	if contact != nil && (contact.Address.Scheme == "sip" || contact.Address.Scheme == "sips") && contact.Address.Host != "" {
		sub.target = *contact.Address.Clone()
	}
	sub.routes = sub.routes[:0]
	for _, h := range rr {
		if r, ok := h.(*sipmsg.RecordRouteHeader); ok {
			sub.routes = append(sub.routes, *r.Address.Clone())
		}
	}
}

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

// onNotify handles a NOTIFY of this subscription and returns the status to
// answer with. A 200 means what the NOTIFY changed is kept (Store.Keep):
// the body is parsed before the subscription's lock is taken, the dialogs
// it changed are worked out under it (in the PBX's CSeq order, in memory
// only), and the events are kept after it is released. Nothing the
// subscription's lock guards ever waits for the network, the disk or the
// database, so a burst of NOTIFYs is answered as fast as it is parsed.
func (sub *subscription) onNotify(req *sipmsg.Request) (int, string) {
	doc := sub.parse(req.Body())
	code, reason, evs, cseq := sub.take(req, doc)
	if code != sipmsg.StatusOK || len(evs) == 0 {
		return code, reason
	}
	ctx, cancel := sub.s.storeContext()
	defer cancel()
	if err := sub.s.cfg.Store.Keep(ctx, evs); err != nil {
		// What the tracker took for said was not kept: it says all of it
		// again with the full state asked for here.
		sub.mu.Lock()
		sub.troubleAt = time.Now() // answered 500 (see ownLoss)
		sub.forgetAnswer(cseq)
		sub.tracker.unsent()
		sub.wantFull = true
		sub.signal()
		sub.mu.Unlock()
		sub.log().Warn("sip: keeping dialog changes failed; asking for full state", "err", err, "events", len(evs))
		if errors.Is(err, callstate.ErrInvalidEvent) {
			return sipmsg.StatusBadRequest, "Unusable Dialog-Info Body"
		}
		return sipmsg.StatusInternalServerError, "Store Unavailable"
	}
	return sipmsg.StatusOK, "OK"
}

// parsedBody is a NOTIFY body as its package's parser read it.
type parsedBody struct {
	dialogs  DialogInfo
	raw      [][]byte // each dialog's element as received, see parseDialogInfo
	presence Presence
	err      error
}

// parse reads a NOTIFY body of the subscription's package. It runs before
// the subscription's lock is taken, so that the documents of a busy
// extension are parsed side by side, each in its own NOTIFY's goroutine.
func (sub *subscription) parse(body []byte) parsedBody {
	var p parsedBody
	if sub.event == eventPresence {
		p.presence, p.err = ParsePresence(body)
	} else {
		p.dialogs, p.raw, p.err = parseDialogInfo(body)
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
		// The PBX did not get our answer in time (see ownLoss).
		sub.troubleAt = now
		return sipmsg.StatusOK, "OK", nil, cseq
	}
	if sub.arrived == nil {
		sub.arrived = make(map[uint32]bool)
	}
	if sub.arrived[cseq] {
		// A retransmission of one in hand: the PBX is waiting for our
		// answer (see ownLoss).
		sub.troubleAt = now
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
	for sub.callID == callID && sub.aheadOfTurn(cseq) {
		now := time.Now()
		if sub.allArrived(cseq) {
			missingSince = time.Time{}
		} else if missingSince.IsZero() {
			missingSince = now
		}
		deadline := start.Add(maxReorderWait)
		if !missingSince.IsZero() {
			if sub.outOfTurn >= 3 {
				return
			}
			deadline = earliest(deadline, missingSince.Add(reorderWait))
		}
		if !now.Before(deadline) {
			sub.troubleAt = now // a NOTIFY went astray (see ownLoss)
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

// body takes a NOTIFY's parsed body, in its turn (late: after a later
// NOTIFY of the dialog was applied), and returns the events it implies:
// one per dialog whose state changed, none for the dialogs the PBX only
// repeats. Called with mu held; it does no I/O.
func (sub *subscription) body(doc parsedBody, cseq uint32, now time.Time, ss subState, late bool) (int, string, []callstate.Event) {
	if sub.event == eventPresence {
		switch {
		case errors.Is(doc.err, ErrEmptyBody) || late:
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
	case errors.Is(err, ErrEmptyBody) && !sub.notified && !late && ss.state == "active":
		// The first NOTIFY of a fresh subscription carries the full
		// state (RFC 6665 section 4.2.2); an empty one is what a PBX
		// that has nothing to tell sends: Kamailio after a restart,
		// before any call. No dialogs, then.
		di = DialogInfo{State: DocFull}
	case errors.Is(err, ErrEmptyBody):
		return sipmsg.StatusOK, "OK", nil
	case err != nil:
		sub.log().Info("sip: NOTIFY body rejected", "err", err)
		if errors.Is(err, ErrLimit) {
			return statusTooLarge, "Dialog-Info Body Over Limits", nil
		}
		return sipmsg.StatusBadRequest, "Bad Dialog-Info Body", nil
	}
	partial := di.State == DocPartial
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
	cause := CauseVanished
	switch {
	case late:
		changes = sub.tracker.late(di, now)
	default:
		if !partial && sub.afterRestart {
			cause = CausePBXRestart
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
			if c.ended == CausePBXRestart {
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

// maxExpires bounds any number of seconds a PBX sends (a day), so that a
// huge value cannot overflow a time.Duration.
const maxExpires = 86400

// seconds turns a count of seconds from a SIP header into a Duration,
// bounded to [0, maxExpires].
func seconds(n int) time.Duration {
	return time.Duration(max(min(n, maxExpires), 0)) * time.Second
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

func (s *Subscriber) storeContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
}

// raiseExpires adopts a 423's Min-Expires for later requests.
func (s *Subscriber) raiseExpires(d time.Duration) {
	for {
		old := s.expires.Load()
		if int64(d) <= old || s.expires.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// expiry returns the subscription (and registration) lifetime to ask
// for: cfg.Expires, or more after a 423 (raiseExpires).
func (s *Subscriber) expiry() time.Duration { return time.Duration(s.expires.Load()) }

// do sends req and answers a 401 or 407 with digest credentials.
func (s *Subscriber) do(ctx context.Context, req *sipmsg.Request) (*sipmsg.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if req.Method == sipmsg.SUBSCRIBE {
		s.subscribes.Add(1)
	}
	res, err := s.cli.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != sipmsg.StatusUnauthorized && res.StatusCode != sipmsg.StatusProxyAuthRequired {
		return res, nil
	}
	if s.cfg.Password == "" {
		return res, nil
	}
	if s.cfg.Realm != "" && !slices.Contains(challengeRealms(res), s.cfg.Realm) {
		s.log.Warn("sip: challenge from another realm; not answering", "want", s.cfg.Realm, "got", challengeRealms(res))
		return res, nil
	}
	return s.cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: s.cfg.AuthUsername, Password: s.cfg.Password})
}

// challengeRealms returns the realms of a 401's or 407's challenges.
func challengeRealms(res *sipmsg.Response) []string {
	var realms []string
	for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
		for _, h := range res.GetHeaders(name) {
			v := h.Value()
			i := strings.Index(strings.ToLower(v), "realm=")
			if i < 0 {
				continue
			}
			r := strings.TrimPrefix(v[i+len("realm="):], `"`)
			if j := strings.IndexAny(r, `",`); j >= 0 {
				r = r[:j]
			}
			realms = append(realms, r)
		}
	}
	return realms
}

// statusBadEvent is 489 Bad Event (RFC 6665): the notifier does not know
// the event package, or the NOTIFY is for another one.
const statusBadEvent = 489
