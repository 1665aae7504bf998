package watch

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

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
	probes       uint8           // refreshes made since troubleAt, see troubleProbes
	tracker      *tracker
	lamp         string
	state        string // last state queued for SetSubscriptions

	epoch        uint64    // the Subscriber's restart count when this dialog was opened
	lost         string    // why the PBX lost the subscription; maintain gives it up
	resubAt      time.Time // when to subscribe again: after a back-off, or when the PBX lost it
	afterRestart bool      // the next fresh full state ends unlisted calls with callstate.CausePBXRestart
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
	state      string        // callstate.SubscriptionRetrying or callstate.SubscriptionRefused when not ok
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
		sub.setState(callstate.SubscriptionPending, "")
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
			sub.setState(callstate.SubscriptionActive, "")
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
	sub.notifyLamp(callstate.LampUnavailable)
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
		probeAt := sub.probeDue()
		for t := time.Now(); !probeAt.IsZero() && !t.Before(probeAt); probeAt = sub.probeDue() {
			probe = true // one refresh for the probes due, however many
			sub.probes++
		}
		sub.mu.Unlock()
		if lost != "" {
			return time.Time{}, outcome{state: callstate.SubscriptionRetrying, reason: lost, lost: true}
		}
		if term != nil {
			return time.Time{}, sub.terminated(term)
		}
		if !active {
			return time.Time{}, outcome{state: callstate.SubscriptionRetrying, reason: "subscription expired", now: true}
		}
		now := time.Now()
		if now.After(deadAt) {
			return time.Time{}, outcome{state: callstate.SubscriptionRetrying, reason: "no word from the PBX within the subscription's expiry", now: true}
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
		if !probeAt.IsZero() {
			next = earliest(next, probeAt)
		}
		if wantFull {
			next = earliest(next, sub.lastFull.Add(time.Second))
		}
		if every > 0 {
			next = earliest(next, sub.nextStuck)
		}
		return latest(next, now.Add(time.Millisecond)), outcome{}
	}
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

// troubleProbes are when, after a NOTIFY of a subscription went astray or
// unanswered, it is refreshed to ask whether the PBX still knows it. A PBX
// gives up a subscription whose NOTIFY transaction timed out (RFC 6665
// section 4.2.2), which it does after its own timer: 64*T1 (32 s) by RFC
// 3261, often set shorter (Kamailio's tm fr_timer; the test PBX's is 5 s).
// A late answer can leave the
// subscription given up with nothing to show it: the PBX sends no more
// NOTIFYs, and without these refreshes the next one would be due minutes
// later, every call of the extension unseen until then. With them, the
// PBX's 481 comes within about twice its timer, while ownLoss still tells
// the subscription's own loss from a restart.
var troubleProbes = [...]time.Duration{4 * time.Second, 8 * time.Second, 16 * time.Second, ownLossWindow - time.Second}

// trouble records that a NOTIFY of this dialog went astray or unanswered
// at now (see ownLoss and troubleProbes). Called with mu held.
func (sub *subscription) trouble(now time.Time) {
	sub.troubleAt, sub.probes = now, 0
	sub.signal()
}

// probeDue returns when the next refresh of troubleProbes is due, or the
// zero time when none is. Called with mu held.
func (sub *subscription) probeDue() time.Time {
	if sub.troubleAt.IsZero() || int(sub.probes) >= len(troubleProbes) {
		return time.Time{}
	}
	return sub.troubleAt.Add(troubleProbes[sub.probes])
}
