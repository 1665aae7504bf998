package watch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"github.com/callstate/callstate"
)

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
			return outcome{state: callstate.SubscriptionRetrying, reason: "reading the extension's active calls failed: " + err.Error()}
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
	sub.troubleAt, sub.probes = time.Time{}, 0
	callID := sub.callID
	req := sub.request(sub.s.expiry())
	sub.mu.Unlock()

	sub.s.register(callID, sub)
	sub.s.opened.Add(1)
	res, err := sub.s.do(ctx, req)
	sub.syncCSeq(req)
	if err != nil {
		sub.s.checkPBX("SUBSCRIBE got no answer")
		return outcome{state: callstate.SubscriptionRetrying, reason: "no answer from the PBX: " + err.Error()}
	}
	if res.StatusCode/100 == 2 {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		if sub.callID != callID {
			return outcome{state: callstate.SubscriptionRetrying, reason: "subscription replaced"}
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
	out := outcome{state: callstate.SubscriptionRetrying, reason: reason, retryAfter: retryAfter(res)}
	switch res.StatusCode {
	case statusBadEvent:
		out.state, out.reason = callstate.SubscriptionRefused, "PBX does not support "+sub.event+" events ("+reason+")"
		out.retryAfter = max(out.retryAfter, sub.s.cfg.RetryMax)
	case sipmsg.StatusUnauthorized, sipmsg.StatusProxyAuthRequired, sipmsg.StatusForbidden:
		out.state, out.reason = callstate.SubscriptionRefused, reason+": check SIP_USERNAME, SIP_PASSWORD, SIP_AUTH_USERNAME and SIP_REALM"
		out.retryAfter = max(out.retryAfter, sub.s.cfg.RetryMax)
	case sipmsg.StatusNotFound, sipmsg.StatusGlobalDecline:
		out.state = callstate.SubscriptionRefused
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

// terminated turns a Subscription-State: terminated into an outcome, with
// the reasons of RFC 6665 section 4.1.3 respected.
func (sub *subscription) terminated(t *termination) outcome {
	out := outcome{state: callstate.SubscriptionRetrying, reason: "PBX terminated the subscription", retryAfter: t.retryAfter}
	if t.reason != "" {
		out.reason += " (" + t.reason + ")"
	}
	switch t.reason {
	case "deactivated", "timeout":
		out.now = true
	case "rejected", "noresource", "invariant":
		out.state, out.final = callstate.SubscriptionRefused, true
	}
	return out
}

// refresh sends SUBSCRIBE within the dialog; expires 0 un-subscribes.
func (sub *subscription) refresh(ctx context.Context, expires time.Duration) outcome {
	sub.mu.Lock()
	if sub.callID == "" {
		sub.mu.Unlock()
		return outcome{state: callstate.SubscriptionRetrying, reason: "no subscription", now: true}
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
		return outcome{state: callstate.SubscriptionRetrying, reason: "refresh got no answer: " + err.Error(), now: true}
	}
	sub.mu.Lock()
	if sub.callID != callID {
		sub.mu.Unlock()
		return outcome{state: callstate.SubscriptionRetrying, reason: "subscription replaced", now: true}
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
	sub.setState(callstate.SubscriptionTerminated, "not watched: callstate stopped or the extension was disabled")
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

// maxExpires bounds any number of seconds a PBX sends (a day), so that a
// huge value cannot overflow a time.Duration.
const maxExpires = 86400

// seconds turns a count of seconds from a SIP header into a Duration,
// bounded to [0, maxExpires].
func seconds(n int) time.Duration {
	return time.Duration(max(min(n, maxExpires), 0)) * time.Second
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
