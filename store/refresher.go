package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// The journeys of the calls a batch wrote are computed again after the
// batch commits, many calls at once: computed in each batch's transaction
// they cost the writers three quarters of their rate (docs/benchmarks.md),
// most of it the refresh's fixed cost, which a refresh of hundreds of
// journeys pays once. A journey is a function of its legs, so computing it
// later, or twice, gives the same row.
//
// The work waits in PostgreSQL (journey_pending, migration 021), written
// in each batch's transaction: a committed leg always has its row there.
// Every instance's refresher takes rows (SKIP LOCKED), computes their
// journeys and deletes the rows in one transaction, right after its own
// writes and every refreshPoll for what others left: an instance that
// dies between a commit and its refresh leaves its rows to the next
// instance that looks, within about a second.

// refreshGather is how long the refresher waits, once woken, for more
// calls to refresh at once.
const refreshGather = 20 * time.Millisecond

// refreshPoll is how often the refresher looks for work it was not told
// of: rows another instance left.
const refreshPoll = time.Second

// refreshChunk bounds the queued rows one refresh takes.
const refreshChunk = 2000

type callKey struct{ source, key string }

// refreshSQL takes up to $1 due rows of journey_pending that no other
// transaction holds, computes the journeys of their calls and deletes the
// rows; it returns how many rows it took. The legs are read by the
// refresh function's own statements, after the rows and the journeys'
// locks: every leg whose row it took is committed and seen.
//
// A journey whose legs have all ended, none answered, while one of its
// calls taken was written less than journey_grace_seconds ago is held
// (migrations 029 and 031): an answer that committed after its hang-up may
// still be on its way, and the journey would end missed and turn answered.
// It is left as it is, and its calls are queued again, held, due once the
// grace has passed since that write. A sipgate leg that hung up
// normalClearing (a call that was talked on) with no answer yet is held
// five graces: its answer is known to be on its way. The hold is decided
// in the statement that computes the journey, from the same snapshot: a
// hang-up that commits meanwhile is either seen by both or by neither (and
// then looked at again through its own row).
const refreshSQL = `
WITH taken AS (
    DELETE FROM journey_pending WHERE id IN (
        SELECT id FROM journey_pending WHERE at <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
    RETURNING source, call_key, at, held
), calls AS (
    SELECT source, call_key, max(at) FILTER (WHERE NOT held) AS written
    FROM taken GROUP BY 1, 2
)
SELECT (SELECT count(*) FROM taken),
       callstate_refresh_taken(ARRAY(SELECT source FROM calls ORDER BY 1, call_key),
                               ARRAY(SELECT call_key FROM calls ORDER BY source, 1),
                               ARRAY(SELECT written FROM calls ORDER BY source, call_key))`

// journeyQueue wakes the refresher and counts its rounds.
type journeyQueue struct {
	wake   chan struct{}
	rounds atomic.Int64 // refresh rounds done, whatever they found
}

func newJourneyQueue() *journeyQueue {
	return &journeyQueue{wake: make(chan struct{}, 1)}
}

// wakeUp tells the refresher that there is work; it never blocks.
func (q *journeyQueue) wakeUp() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// SyncJourneys returns once the journeys of every call written before it
// was called are computed again (by this instance or another), or ctx is
// done (its error then).
func (s *Store) SyncJourneys(ctx context.Context) error {
	var last int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM journey_pending`).Scan(&last); err != nil {
		return fmt.Errorf("store: sync journeys: %w", readErr(err))
	}
	for {
		var waiting bool
		// Held rows too: their journeys wait for the grace.
		err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM journey_pending WHERE id <= $1 OR held)`, last).Scan(&waiting)
		if err != nil {
			return fmt.Errorf("store: sync journeys: %w", readErr(err))
		}
		if !waiting {
			return nil
		}
		s.journeys.wakeUp()
		select {
		case <-ctx.Done():
			return fmt.Errorf("store: sync journeys: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// refreshLoop refreshes pending journeys until the Store is closed, then
// once more for its own last writes (bounded by closeWait; what is left
// stays queued for the next instance).
func (s *Store) refreshLoop() {
	select {
	case <-s.closed:
		return
	case <-s.ready:
	}
	poll := time.NewTicker(refreshPoll)
	defer poll.Stop()
	var warned time.Time
	for {
		select {
		case <-s.closed:
			ctx, cancel := context.WithTimeout(context.Background(), closeWait)
			s.refreshPending(ctx) //nolint:errcheck // closing: left queued
			cancel()
			return
		case <-s.journeys.wake:
			// Let the calls written meanwhile join: the refresh's cost is
			// mostly fixed, whatever the number of calls it takes.
			select {
			case <-s.closed:
			case <-time.After(refreshGather):
			}
		case <-poll.C:
		}
		if err := s.refreshPending(s.wctx); err != nil {
			if s.wctx.Err() != nil {
				continue // closing: the case above drains
			}
			if time.Since(warned) > time.Minute {
				warned = time.Now()
				s.log.Warn("journeys not refreshed; trying again", "err", err)
			}
			select {
			case <-s.closed:
			case <-time.After(reconnectEvery):
			}
			s.journeys.wakeUp()
		}
	}
}

// refreshPending refreshes what journey_pending holds that no other
// instance holds, refreshChunk rows a transaction, until it is empty.
func (s *Store) refreshPending(ctx context.Context) error {
	defer s.journeys.rounds.Add(1)
	for {
		ctx, cancel := context.WithTimeout(ctx, writeTimeout)
		var taken int
		var changed int
		err := s.wpool.QueryRow(ctx, refreshSQL, refreshChunk).Scan(&taken, &changed)
		cancel()
		if err != nil {
			return fmt.Errorf("store: refresh journeys: %w", readErr(err))
		}
		if taken > 0 {
			s.announce.changed() // the journeys' events are in the feed
		}
		if taken < refreshChunk {
			return nil
		}
	}
}
