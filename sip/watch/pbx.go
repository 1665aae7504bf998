package watch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
)

// pbxState is what the subscriber knows of the PBX as a whole: whether it
// answers, and how many times it was found to have restarted (or to have
// been unreachable), which tells a signal about subscriptions opened before
// the last restart, already handled, from a new one.
type pbxState struct {
	down  bool // the keepalive found the PBX not answering
	epoch uint64

	// A refresh answered 481 is checked with a second subscription's
	// (see refreshUnknown): unknown is the first, since unknownAt,
	// second the one asked.
	unknown, second *subscription
	unknownAt       time.Time
}

// restartEpoch returns how many restarts of the PBX have been handled.
func (s *Subscriber) restartEpoch() uint64 {
	s.pbxMu.Lock()
	defer s.pbxMu.Unlock()
	return s.pbx.epoch
}

// pbxDown reports whether the keepalive finds the PBX not answering: no
// SUBSCRIBE goes out then.
func (s *Subscriber) pbxDown() bool {
	s.pbxMu.Lock()
	defer s.pbxMu.Unlock()
	return s.pbx.down
}

// checkPBX asks the keepalive to check the PBX now, because something
// suggests it went away or restarted: why says what. It never blocks.
func (s *Subscriber) checkPBX(why string) {
	if s.cfg.Keepalive <= 0 {
		return
	}
	select {
	case s.check <- why:
	default:
	}
}

// goPBXRestarted is pbxRestarted for callers that hold a subscription's
// lock.
func (s *Subscriber) goPBXRestarted(why string, epoch uint64) {
	go s.pbxRestarted(why, epoch)
}

// pbxRestarted handles a sign that the PBX restarted and lost its
// subscriptions, seen by a subscription opened at restart count epoch: if
// no restart was handled since, every subscription is given up and opened
// again, at a random moment within spreadWindow, and the first full state
// of each ends the calls it no longer lists with callstate.CausePBXRestart.
func (s *Subscriber) pbxRestarted(why string, epoch uint64) {
	s.pbxMu.Lock()
	if s.pbx.down || s.pbx.epoch != epoch {
		s.pbxMu.Unlock()
		return
	}
	s.pbx.epoch++
	s.pbxMu.Unlock()
	s.registerAgain()
	subs := s.subscriptions()
	window := spreadWindow(len(subs))
	s.log.Warn("sip: the PBX restarted; subscribing every extension again", "why", why,
		"subscriptions", len(subs), "within", window)
	now := time.Now()
	for _, sub := range subs {
		sub.lose("the PBX restarted ("+why+")", now.Add(rand.N(window)))
	}
}

// refreshUnknown handles a refresh of sub (opened at restart count epoch)
// that the PBX answered 481: it no longer knows the subscription. Either
// the PBX restarted and lost them all, or it lost only this one (a NOTIFY
// of it that timed out, a subscription it let expire). So another active
// subscription is asked to refresh at once; when the PBX does not know
// that one either (or there is no other) it has restarted (pbxRestarted),
// else sub alone subscribes again. One subscription lost costs one
// SUBSCRIBE, not one per extension. It reports whether sub waits for that
// answer (up to the request timeout) before it subscribes again, so that
// after a restart its first full state ends the calls that were up with
// callstate.CausePBXRestart, as everyone's.
func (s *Subscriber) refreshUnknown(sub *subscription, epoch uint64) (wait bool) {
	now := time.Now()
	s.pbxMu.Lock()
	if s.pbx.down || s.pbx.epoch != epoch {
		s.pbxMu.Unlock()
		return false
	}
	if first := s.pbx.unknown; first != nil && first != sub && now.Sub(s.pbx.unknownAt) < 2*s.cfg.RequestTimeout {
		s.pbx.unknown, s.pbx.second = nil, nil
		s.pbxMu.Unlock()
		s.pbxRestarted("refresh SUBSCRIBEs of two subscriptions were answered 481", epoch)
		return false
	}
	s.pbx.unknown, s.pbx.unknownAt, s.pbx.second = sub, now, nil
	s.pbxMu.Unlock()
	sub.mu.Lock()
	sub.resubAt = now.Add(s.cfg.RequestTimeout)
	sub.mu.Unlock()
	other := s.probeAnother(sub)
	if other == nil {
		s.pbxRestarted("a refresh SUBSCRIBE was answered 481", epoch)
		return false
	}
	s.pbxMu.Lock()
	if s.pbx.unknown == sub {
		s.pbx.second = other
	}
	s.pbxMu.Unlock()
	s.log.Info("sip: the PBX answered a refresh 481; asking whether it knows another subscription",
		"extension", sub.ext, "other", other.ext)
	return true
}

// refreshKnown records that the PBX granted a refresh of sub: when sub is
// the one refreshUnknown asked, the PBX has not restarted.
func (s *Subscriber) refreshKnown(sub *subscription) {
	s.pbxMu.Lock()
	defer s.pbxMu.Unlock()
	if s.pbx.second != sub {
		return
	}
	first := s.pbx.unknown
	s.pbx.unknown, s.pbx.second = nil, nil
	s.log.Info("sip: the PBX knows the other subscription; it lost only one", "extension", first.ext)
	first.mu.Lock()
	first.resubAt = time.Time{}
	first.signal()
	first.mu.Unlock()
}

// probeAnother asks an active dialog subscription other than sub, picked
// at random, to refresh at once, and returns it; nil when there is none.
func (s *Subscriber) probeAnother(sub *subscription) *subscription {
	subs := s.subscriptions()
	if len(subs) == 0 {
		return nil
	}
	start := rand.N(len(subs))
	for i := range subs {
		o := subs[(start+i)%len(subs)]
		if o == sub || o.event != eventDialog {
			continue
		}
		o.mu.Lock()
		up := o.active && o.remoteTag != ""
		if up {
			o.probe = true
			o.signal()
		}
		o.mu.Unlock()
		if up {
			return o
		}
	}
	return nil
}

// pbxUnreachable gives every subscription up while the PBX does not
// answer: the lamps show unavailable, and nothing is sent until the
// keepalive finds it answering again (pbxAnswers).
func (s *Subscriber) pbxUnreachable(err error) {
	s.pbxMu.Lock()
	if s.pbx.down {
		s.pbxMu.Unlock()
		return
	}
	s.pbx.down = true
	s.pbx.epoch++
	s.pbxMu.Unlock()
	subs := s.subscriptions()
	s.log.Warn("sip: the PBX does not answer OPTIONS; lamps unavailable until it does", "err", err, "subscriptions", len(subs))
	for _, sub := range subs {
		sub.lose("the PBX does not answer OPTIONS", time.Time{})
	}
}

// pbxAnswers ends what pbxUnreachable began: every subscription is opened
// again within spreadWindow.
func (s *Subscriber) pbxAnswers() {
	s.pbxMu.Lock()
	down := s.pbx.down
	s.pbxMu.Unlock()
	if !down {
		return
	}
	s.registerAgain()
	subs := s.subscriptions()
	window := spreadWindow(len(subs))
	now := time.Now()
	for _, sub := range subs {
		sub.lose("the PBX was unreachable", now.Add(rand.N(window)))
	}
	s.pbxMu.Lock()
	s.pbx.down = false
	s.pbxMu.Unlock()
	s.log.Info("sip: the PBX answers again; subscribing every extension again", "subscriptions", len(subs), "within", window)
	// Those stepped before down was cleared wait to be woken.
	for _, sub := range subs {
		sub.signal()
	}
}

// registerAgain has registerLoop send REGISTER at once, when it runs: a PBX
// that restarted has forgotten the registration, and may want it before
// the SUBSCRIBEs that follow.
func (s *Subscriber) registerAgain() {
	if !s.cfg.Register {
		return
	}
	select {
	case s.reregister <- struct{}{}:
	default:
	}
}

// spreadWindow is how long the SUBSCRIBEs of n subscriptions are spread
// over after a PBX restart: 1 ms each, at least 200 ms, at most 10 s.
func spreadWindow(n int) time.Duration {
	return min(max(time.Duration(n)*time.Millisecond, 200*time.Millisecond), 10*time.Second)
}

// lose gives the subscription up because the PBX lost it: its next step
// finds it lost, the lamp shows unavailable, and the next SUBSCRIBE goes
// out at at (at once when zero, or when the PBX answers again).
func (sub *subscription) lose(why string, at time.Time) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.lost, sub.resubAt = why, at
	sub.afterRestart = sub.event == eventDialog
	sub.signal()
}

// subscriptions returns every subscription, of every extension watched.
func (s *Subscriber) subscriptions() []*subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	var subs []*subscription
	for _, w := range s.watched {
		subs = append(subs, w.subs...)
	}
	return subs
}

// keepalive sends OPTIONS to the PBX every cfg.Keepalive, and at once when
// checkPBX asks. Two in a row without an answer make the PBX unreachable
// (pbxUnreachable) until one is answered; a PBX that has never answered
// OPTIONS (some drop them) is never taken for unreachable. While the PBX
// answers, each round also refreshes one dialog subscription, a different
// one each time: a PBX that restarted between two rounds answers it 481
// (see refresh).
func (s *Subscriber) keepalive(ctx context.Context) {
	t := time.NewTicker(s.cfg.Keepalive)
	defer t.Stop()
	misses, answered, warned := 0, false, false
	var lastProbe time.Time
	next := 0
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case why := <-s.check:
				s.log.Debug("sip: checking the PBX", "why", why)
			}
		}
		err := s.ping(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			misses++
			s.log.Debug("sip: OPTIONS to the PBX got no answer", "misses", misses, "err", err)
			switch {
			case !answered:
				// Some PBXes drop OPTIONS: without an answer ever, the
				// refreshes alone tell of a restart.
				if misses == 2 && !warned {
					warned = true
					s.log.Warn("sip: the PBX does not answer OPTIONS; it will not be taken for unreachable, a restart shows at the refresh of a subscription each round", "err", err)
				}
			case misses == 1:
				s.checkPBX("OPTIONS got no answer")
				continue
			case misses == 2:
				s.pbxUnreachable(err)
				continue
			default:
				continue
			}
		} else {
			answered = true
			if misses >= 2 {
				s.pbxAnswers()
			}
			misses = 0
		}
		if time.Since(lastProbe) >= min(time.Second, s.cfg.Keepalive) {
			lastProbe = time.Now()
			next = s.probeOne(next)
		}
	}
}

// pingTimeout bounds one OPTIONS of the keepalive.
func (s *Subscriber) pingTimeout() time.Duration {
	return min(max(s.cfg.Keepalive, 500*time.Millisecond), 2*time.Second, s.cfg.RequestTimeout)
}

// ping sends OPTIONS to the PBX. Any response means it is there.
func (s *Subscriber) ping(ctx context.Context) error {
	scheme := "sip"
	if s.transport == "TLS" {
		scheme = "sips"
	}
	uri := sipmsg.Uri{Scheme: scheme, Host: s.domain}
	req := sipmsg.NewRequest(sipmsg.OPTIONS, uri)
	req.SetDestination(s.cfg.PBXAddr)
	req.SetTransport(s.transport)
	from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: scheme, User: s.cfg.Username, Host: s.domain}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sipmsg.GenerateTagN(16))
	callID := sipmsg.CallIDHeader(uuid.NewString())
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: uri, Params: sipmsg.NewParams()})
	req.AppendHeader(&callID)
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: 1, MethodName: sipmsg.OPTIONS})
	req.AppendHeader(&sipmsg.ContactHeader{Address: s.contact})
	req.AppendHeader(sipmsg.NewHeader("User-Agent", s.cfg.UserAgent))
	ctx, cancel := context.WithTimeout(ctx, s.pingTimeout())
	defer cancel()
	if _, err := s.cli.Do(ctx, req); err != nil {
		return fmt.Errorf("sip: OPTIONS %s: %w", s.cfg.PBXAddr, err)
	}
	return nil
}

// probeOne asks the next active dialog subscription after index next, in
// the order of the extensions, to refresh at once, and returns the index
// to start from the next time.
func (s *Subscriber) probeOne(next int) int {
	s.mu.Lock()
	exts := make([]string, 0, len(s.watched))
	for ext := range s.watched {
		exts = append(exts, ext)
	}
	slices.Sort(exts)
	var subs []*subscription
	for _, ext := range exts {
		subs = append(subs, s.watched[ext].subs[0])
	}
	s.mu.Unlock()
	for i := range subs {
		sub := subs[(next+i)%len(subs)]
		sub.mu.Lock()
		up := sub.active && sub.remoteTag != ""
		if up {
			sub.probe = true
			sub.signal()
		}
		sub.mu.Unlock()
		if up {
			return (next + i + 1) % len(subs)
		}
	}
	return next
}
