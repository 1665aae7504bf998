package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// maxBatch bounds the events written in one transaction.
const maxBatch = 64

// writeTimeout bounds one transaction of the writers.
const writeTimeout = 10 * time.Second

type applyReq struct {
	live bool // from Apply, not ApplyBacklog
	ctx  context.Context
	ev   callstate.Event
	// after: how long after the live event before it this one came to
	// Apply or Keep (live events only).
	after time.Duration
	done  chan applyResult // buffered: a writer never waits for the caller
}

type applyResult struct {
	applied bool
	err     error
}

// startWriters starts n writers. Each takes what Apply queued meanwhile, up
// to maxBatch events, writes them in one transaction and answers each
// caller after the commit: many events share one commit and one round
// trip, which is what PostgreSQL spends most of its time on for small
// writes. Close stops them.
//
// Live events (Apply) are taken by one writer at a time, the one holding
// s.gather. It waits for more events before it lets go and writes (group
// commit), up to Options.BatchWait after the first, as long as they keep
// coming less than a fifth of BatchWait apart or another writer is
// writing live events (a spool's backlog does not count, so that live
// events are not held longer while it drains). At 1,000 events a second
// a transaction then carries several events instead of one or two, and
// PostgreSQL spends a quarter less CPU per event (docs/benchmarks.md).
// Once no event came for a fifth of BatchWait and no other writer is
// writing, it writes: an event that comes alone is written at once, and
// callers that wait for their answers before they send more (whose next
// events come only after a commit) are held for a fifth of the wait at
// most. Meanwhile the next writer takes the next live events, so that
// commits overlap.
//
// Live events go before a backlog's (ApplyBacklog): the writers that are
// not gathering live events take the backlog, and a batch of live events
// takes only a few of the backlog's, so that a spool draining after an
// outage makes a live event wait for one batch at most, while the backlog
// keeps the batches full. The first writer takes live events only, so that
// one is free for them however big a backlog is.
func (s *Store) startWriters(n int) {
	ctx := s.wctx
	for i := range n {
		backlog := s.backlog
		if i == 0 && n > 1 {
			backlog = nil
		}
		s.stopped.Go(func() {
			for {
				var batch []*applyReq
				select {
				case <-ctx.Done():
					return
				case s.gather <- struct{}{}:
					var ok bool
					batch, ok = s.gatherLive(ctx, backlog)
					if ok && batch[0].live {
						// Counted before the next writer takes the
						// gate, so that it sees this one writing.
						s.writing.Add(1)
					}
					<-s.gather
					if !ok {
						return
					}
					if batch[0].live && backlog != nil {
						room := min(maxBatch, len(batch)+maxBacklogWithLive)
						batch = gather(batch, backlog, room)
					}
				case first := <-backlog:
					batch = gather([]*applyReq{first}, backlog, maxBatch)
				}
				s.write(batch)
				if batch[0].live && s.writing.Add(-1) == 0 {
					select {
					case s.idle <- struct{}{}:
					default:
					}
				}
			}
		})
	}
}

// gatherLive takes the next live event, waiting for it, and those that
// come with it (see startWriters). A writer that also takes the backlog
// (the only one, with a pool of one connection) gets a backlog's batch
// instead when one comes first. It reports false when ctx is done before
// the first.
func (s *Store) gatherLive(ctx context.Context, backlog <-chan *applyReq) ([]*applyReq, bool) {
	var first *applyReq
	select {
	case first = <-s.writes:
	default:
		select {
		case <-ctx.Done():
			return nil, false
		case first = <-s.writes:
		case r := <-backlog:
			return gather([]*applyReq{r}, backlog, maxBatch), true
		}
	}
	batch := gather([]*applyReq{first}, s.writes, maxBatch)
	if s.batchWait <= 0 {
		return batch, true
	}
	// It waits up to batchWait after the first, while events keep coming
	// less than a fifth of it apart or another writer is writing. An
	// event that came over a fifth of it after the one before, with no
	// other writer writing, is alone: written at once.
	gap := s.batchWait / 5
	quiet := len(batch) == 1 && first.after >= gap
	if quiet && s.writing.Load() == 0 {
		return batch, true // alone
	}
	end := time.NewTimer(s.batchWait)
	defer end.Stop()
	lull := time.NewTimer(gap)
	defer lull.Stop()
	for len(batch) < maxBatch {
		select {
		case r := <-s.writes:
			batch = append(batch, r)
			quiet = false
			lull.Reset(gap)
			continue
		case <-lull.C:
			quiet = true
		case <-s.idle: // writing fell to 0 (or did before: looked at again)
		case <-end.C:
			return batch, true
		case <-ctx.Done():
			return batch, true
		}
		if quiet && s.writing.Load() == 0 {
			break
		}
	}
	return batch, true
}

// maxBacklogWithLive bounds a backlog's events in a batch with live ones.
const maxBacklogWithLive = 8

// gather adds to batch what waits on ch, up to max, without waiting.
func gather(batch []*applyReq, ch <-chan *applyReq, max int) []*applyReq {
	for len(batch) < max {
		select {
		case r := <-ch:
			batch = append(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// WriteStats counts the event writers' work since Open.
type WriteStats struct {
	Transactions uint64 // committed
	Events       uint64 // in those transactions, repeats included
}

// WriteStats returns what the event writers committed since Open: events
// over transactions is how many events share a commit.
func (s *Store) WriteStats() WriteStats {
	return WriteStats{Transactions: s.committed.Load(), Events: s.committedEvents.Load()}
}

// write applies batch, answering every request, and announces the change.
func (s *Store) write(batch []*applyReq) {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- applyResult{err: fmt.Errorf("store: apply %s: %w", r.ev.DedupKey, err)}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	if err := s.writeWithPartitions(live); err != nil {
		if len(live) == 1 {
			live[0].done <- applyResult{err: applyErr(live[0].ev, err)}
		} else {
			// One event spoiled the transaction (or the database failed):
			// write each on its own, so that only the bad one fails.
			s.log.Debug("batch write failed; writing one by one", "events", len(live), "err", err)
			for _, r := range live {
				if err := s.writeWithPartitions([]*applyReq{r}); err != nil {
					r.done <- applyResult{err: applyErr(r.ev, err)}
				}
			}
		}
	}
	s.announce.changed()
}

// writeWithPartitions is writeBatch, made again after the journal's
// partitions of its events' days when one was missing (an event older or
// newer than the partitions made ahead, such as a spool's old backlog).
func (s *Store) writeWithPartitions(batch []*applyReq) error {
	err := s.writeBatch(batch)
	if !isNoPartition(err) {
		return err
	}
	n, perr := s.ensurePartitions(s.wctx, eventDays(batch))
	if perr != nil {
		s.log.Warn("making the journal's partition for an event failed", "err", perr)
		return err
	}
	s.log.Info("made the journal's partitions for events of other days", "partitions", n)
	return s.writeBatch(batch)
}

// writeBatch applies batch in one transaction, with the sipgate users it
// names that sipgate_user may lack (userCache), and answers each request
// after the commit. It answers none and returns the error if any statement
// or the commit fails. Events are written in the order of their calls'
// keys, so that two transactions never wait for each other's rows in a
// cycle; events of one call keep their order.
//
// The statements go out in one pipeline with a single Sync and no BEGIN or
// COMMIT: PostgreSQL runs the statements up to a Sync as one implicit
// transaction, commits it at the Sync and rolls all of it back if one
// fails. One round trip a batch instead of three keeps the transaction
// short even when this process waits for a CPU.
func (s *Store) writeBatch(batch []*applyReq) error {
	slices.SortStableFunc(batch, func(a, b *applyReq) int {
		return cmp.Or(cmp.Compare(a.ev.Source, b.ev.Source), cmp.Compare(a.ev.Update.Key, b.ev.Update.Key))
	})
	applied := make([]bool, len(batch))
	ctx, cancel := context.WithTimeout(s.wctx, writeTimeout)
	defer cancel()
	b := &pgx.Batch{}
	for _, r := range batch {
		b.Queue(applySQL, applyArgs(r.ev)...)
	}
	now := time.Now()
	userIDs, userNames := s.users.pending(batch, now)
	queueUsers(b, userIDs, userNames)
	sources, keys := pendingKeys(batch)
	b.Queue(pendingSQL, sources, keys)
	br := s.wpool.SendBatch(ctx, b)
	for i := range batch {
		var id int64
		err := br.QueryRow().Scan(&id)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			br.Close()
			return err
		default:
			applied[i] = true
		}
	}
	// Close reads the users' and the pending journeys' statements'
	// results and up to the Sync's ReadyForQuery: the commit's outcome.
	if err := br.Close(); err != nil {
		return err
	}
	s.committed.Add(1)
	s.committedEvents.Add(uint64(len(batch)))
	s.users.remember(userIDs, userNames, now)
	s.journeys.wakeUp()
	s.lampsChanged()
	for i, r := range batch {
		r.done <- applyResult{applied: applied[i]}
	}
	return nil
}
