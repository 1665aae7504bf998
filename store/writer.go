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
	done chan applyResult // buffered: a writer never waits for the caller
}

type applyResult struct {
	applied bool
	err     error
}

// startWriters starts n writers. Each takes what Apply queued meanwhile, up
// to maxBatch events, writes them in one transaction and answers each
// caller after the commit: under load many events share one commit and
// one round trip, which is what PostgreSQL spends most of its time on for
// small writes; alone, an event is written at once. Close stops them.
//
// Live events (Apply) go before a backlog's (ApplyBacklog): a writer takes
// what live events wait first and fills the rest of its batch from the
// backlog, so that a spool draining after an outage makes a live event wait
// for one batch at most, while the backlog keeps the batches full.
func (s *Store) startWriters(n int) {
	ctx := s.wctx
	for i := range n {
		// The first writer takes live events only, so that one is free for
		// them however big a backlog is.
		backlog := s.backlog
		if i == 0 && n > 1 {
			backlog = nil
		}
		s.stopped.Go(func() {
			for {
				var first *applyReq
				select {
				case first = <-s.writes:
				default:
					select {
					case <-ctx.Done():
						return
					case first = <-s.writes:
					case first = <-backlog:
					}
				}
				batch := gather([]*applyReq{first}, s.writes, maxBatch)
				// A batch that carries live events takes few of the
				// backlog's, so that it commits soon.
				room := maxBatch
				if batch[0].live {
					room = min(maxBatch, len(batch)+maxBacklogWithLive)
				}
				if backlog != nil {
					batch = gather(batch, backlog, room)
				}
				s.write(batch)
			}
		})
	}
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
	s.users.remember(userIDs, userNames, now)
	s.journeys.wakeUp()
	s.lampsChanged()
	for i, r := range batch {
		r.done <- applyResult{applied: applied[i]}
	}
	return nil
}
