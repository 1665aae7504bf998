package sip

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
// of each ends the calls it no longer lists with CausePBXRestart.
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
