package store

import (
	"context"
	"time"
)

// announceDelay is how long the announcer gathers writes before one NOTIFY
// tells every listener about all of them.
const announceDelay = 5 * time.Millisecond

// announceSpacing is the least time from one announcement to the next.
// Each one numbers the feed (a round that costs PostgreSQL about the same
// for one row as for fifty) and wakes every listener, which reads what
// changed: under load, rounds 20 ms apart instead of every few
// milliseconds take about a tenth off PostgreSQL's CPU per event at 1,000
// events/s (docs/benchmarks.md, "Fewer numbering rounds"), for at most
// 15 ms more before a listener hears of a write. A write after a quiet
// spell is announced after announceDelay, as before.
const announceSpacing = 20 * time.Millisecond

// CallsChanged is the payload of the NOTIFY that announces writes to
// call_state, once the feed's rows they wrote are numbered: listeners read
// the feed on.
const CallsChanged = "calls"

// announcer sends one NOTIFY on NotifyChannel after writes to call_state
// have committed, for as many writes as came in meanwhile. Sending it from
// the writing transaction instead would serialise every commit on
// PostgreSQL's notification queue lock.
type announcer struct {
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *Store) startAnnouncer() {
	ctx, cancel := context.WithCancel(context.Background())
	a := &announcer{wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	s.announce = a
	go func() {
		defer close(a.done)
		var last time.Time // when the last announcement started
		for {
			select {
			case <-ctx.Done():
				select { // announce what is pending before the pool closes
				case <-a.wake:
					s.notifyCalls(ctx, 200*time.Millisecond)
				default:
				}
				return
			case <-a.wake:
			}
			// Gather the writes of the next few milliseconds, and of the
			// rest of the spacing since the last announcement.
			wait := max(announceDelay, time.Until(last.Add(announceSpacing)))
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			last = time.Now()
			s.notifyCalls(ctx, 2*time.Second)
		}
	}()
}

// notifyCalls sends the NOTIFY. A lost one costs only latency: listeners
// also read what changed when they reconnect and at their next wake-up.
func (s *Store) notifyCalls(ctx context.Context, timeout time.Duration) {
	if ctx.Err() != nil { // the last one, on the way out: short
		ctx, timeout = context.WithoutCancel(ctx), min(timeout, 200*time.Millisecond)
	}
	nctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The feed's rows written meanwhile get their ids first, so that the
	// listeners find them.
	if _, err := s.assignFeed(nctx); err != nil && ctx.Err() == nil {
		s.log.Warn("numbering the feed failed; the feed loop tries again", "err", err)
	}
	if _, err := s.pool.Exec(nctx, `SELECT pg_notify($1, $2)`, NotifyChannel, CallsChanged); err != nil {
		s.log.Warn("announcing changed calls failed", "err", err)
	}
}

// changed asks for an announcement; it never blocks.
func (a *announcer) changed() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// stop sends what is pending and ends the announcer.
func (a *announcer) stop() {
	a.cancel()
	<-a.done
}
