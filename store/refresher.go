package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// The journeys of the calls a batch wrote are computed again after the
// batch commits, by one refresher a Store, many calls at once: computed in
// each batch's transaction they cost the writers three quarters of their
// rate (docs/benchmarks.md), most of it the refresh's fixed cost, which a
// refresh of hundreds of journeys pays once. A journey is a function of
// its legs, so computing it later, or twice, gives the same row.
//
// What a crash loses (keys written but not yet refreshed) the next start
// finds again: it refreshes the journeys of the calls changed last
// (startupRefresh).

// refreshGather is how long the refresher waits, once woken, for more
// calls to refresh at once.
const refreshGather = 20 * time.Millisecond

// refreshChunk bounds the calls one refresh statement takes.
const refreshChunk = 500

// startupRefresh is how many of the last changed calls a start refreshes
// the journeys of.
const startupRefresh = 20000

type callKey struct{ source, key string }

// journeyQueue holds the calls whose journeys wait to be refreshed.
type journeyQueue struct {
	mu      sync.Mutex
	pending map[callKey]struct{}
	added   uint64        // generation: counts adds
	done    uint64        // every add up to this generation is refreshed
	settled chan struct{} // closed and replaced when done moves
	wake    chan struct{}
}

func newJourneyQueue() *journeyQueue {
	return &journeyQueue{pending: map[callKey]struct{}{}, settled: make(chan struct{}), wake: make(chan struct{}, 1)}
}

func (q *journeyQueue) add(keys []callKey) {
	if len(keys) == 0 {
		return
	}
	q.mu.Lock()
	for _, k := range keys {
		q.pending[k] = struct{}{}
	}
	q.added++
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// take returns every pending call and the generation they cover.
func (q *journeyQueue) take() ([]callKey, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	keys := make([]callKey, 0, len(q.pending))
	for k := range q.pending {
		keys = append(keys, k)
	}
	clear(q.pending)
	return keys, q.added
}

// putBack returns keys a failed refresh could not do.
func (q *journeyQueue) putBack(keys []callKey) {
	q.mu.Lock()
	for _, k := range keys {
		q.pending[k] = struct{}{}
	}
	q.mu.Unlock()
}

func (q *journeyQueue) markDone(gen uint64) {
	q.mu.Lock()
	if gen > q.done {
		q.done = gen
		close(q.settled)
		q.settled = make(chan struct{})
	}
	q.mu.Unlock()
}

// SyncJourneys returns once the journeys of every call written before it
// was called are computed again, or ctx is done (its error then).
func (s *Store) SyncJourneys(ctx context.Context) error {
	q := s.journeys
	q.mu.Lock()
	want := q.added
	q.mu.Unlock()
	for {
		q.mu.Lock()
		done, settled := q.done, q.settled
		q.mu.Unlock()
		if done >= want {
			return nil
		}
		select {
		case q.wake <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store: sync journeys: %w", ctx.Err())
		case <-settled:
		}
	}
}

// refreshLoop refreshes pending journeys until the Store is closed, then
// once more for what is left (bounded by closeWait).
func (s *Store) refreshLoop() {
	select {
	case <-s.closed:
		return
	case <-s.ready:
	}
	s.enqueueRecent()
	var warned time.Time
	for {
		select {
		case <-s.closed:
			ctx, cancel := context.WithTimeout(context.Background(), closeWait)
			keys, gen := s.journeys.take()
			if s.refreshKeys(ctx, keys) == nil {
				s.journeys.markDone(gen)
			}
			cancel()
			return
		case <-s.journeys.wake:
		}
		// Let the calls written meanwhile join: the refresh's cost is
		// mostly fixed, whatever the number of calls it takes.
		select {
		case <-s.closed:
		case <-time.After(refreshGather):
		}
		keys, gen := s.journeys.take()
		if err := s.refreshKeys(s.wctx, keys); err != nil {
			if s.wctx.Err() != nil {
				continue // closing: the case above drains
			}
			s.journeys.putBack(keys)
			if time.Since(warned) > time.Minute {
				warned = time.Now()
				s.log.Warn("journeys not refreshed; trying again", "calls", len(keys), "err", err)
			}
			select {
			case <-s.closed:
			case <-time.After(reconnectEvery):
			}
			select {
			case s.journeys.wake <- struct{}{}:
			default:
			}
			continue
		}
		s.journeys.markDone(gen)
		if len(keys) > 0 {
			// The journeys' events are in the feed; the lamps may have
			// changed too.
			s.announce.changed()
			s.lampsChanged()
		}
	}
}

// refreshKeys refreshes the journeys of keys, refreshChunk calls a
// transaction.
func (s *Store) refreshKeys(ctx context.Context, keys []callKey) error {
	for len(keys) > 0 {
		n := min(len(keys), refreshChunk)
		sources, ks := make([]string, n), make([]string, n)
		for i, k := range keys[:n] {
			sources[i], ks[i] = k.source, k.key
		}
		ctx, cancel := context.WithTimeout(ctx, writeTimeout)
		_, err := s.wpool.Exec(ctx, refreshCallsSQL, sources, ks)
		cancel()
		if err != nil {
			return readErr(err)
		}
		keys = keys[n:]
	}
	return nil
}

// enqueueRecent queues the calls changed last, whose journeys a crash may
// have left unrefreshed.
func (s *Store) enqueueRecent() {
	ctx, cancel := context.WithTimeout(s.wctx, 30*time.Second)
	defer cancel()
	warn := func(err error) {
		if s.wctx.Err() == nil { // closed meanwhile: nothing to warn of
			s.log.Warn("journeys of the last changed calls not refreshed at start", "err", err)
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT source, call_key FROM call_state ORDER BY change_seq DESC LIMIT $1`, startupRefresh)
	if err != nil {
		warn(err)
		return
	}
	var keys []callKey
	for rows.Next() {
		var k callKey
		if err := rows.Scan(&k.source, &k.key); err != nil {
			break
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		warn(err)
	}
	s.journeys.add(keys)
}
