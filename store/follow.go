package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// FeedFollow says what FollowFeed reads and where the events go.
type FeedFollow struct {
	// Types are the event types to read; none means every type.
	Types []string
	// Start returns the feed id to read on from, with the reader's state
	// made as of that id (a snapshot). FollowFeed calls it first, and
	// again when the reader fell behind the feed's kept window (events it
	// had not read were deleted by retention). Nil means: from the head,
	// the events written from now on.
	Start func(ctx context.Context) (int64, error)
	// Apply gets the events after the position, in id order, a chunk at a
	// time, each once. An error from it ends FollowFeed with that error.
	Apply func(ctx context.Context, evs []callstate.FeedEvent) error
	// Wake nudges the reader when the feed may have grown (the change
	// notifications); it also reads every Poll without one.
	Wake <-chan struct{}
	// Poll is the longest time between two reads; 0 means followPoll.
	Poll time.Duration
}

// followPoll is how often a follower reads the feed with no nudge: a lost
// notification costs at most this much latency.
const followPoll = time.Second

// followChunk bounds the events one read of a follower takes.
const followChunk = 1000

// errFellBehind says a follower's position is below the feed's floor.
var errFellBehind = errors.New("store: the feed's events after the position were deleted")

// FollowFeed reads the feed in id order from f.Start's position and gives
// every event of f.Types to f.Apply, once, until ctx is done; then it
// returns nil. Feed ids are in commit order (callstate_feed_assign), so a
// reader that goes on from the last id it read misses no event that
// committed late. A read that fails is logged and tried again after a
// short wait; an error from f.Start or f.Apply ends it.
func (s *Store) FollowFeed(ctx context.Context, f FeedFollow) error {
	if f.Poll <= 0 {
		f.Poll = followPoll
	}
	start := f.Start
	if start == nil {
		start = func(ctx context.Context) (int64, error) {
			w, err := s.FeedWindow(ctx)
			return w.Head, err
		}
	}
	pos := int64(-1) // no position yet
	failing := false
	for {
		var err error
		if pos < 0 {
			pos, err = start(ctx)
			if err != nil && ctx.Err() == nil {
				pos = -1
				if !isDBError(err) {
					return fmt.Errorf("store: follow the feed: start: %w", err)
				}
			}
		}
		if err == nil {
			pos, err = s.followOnce(ctx, f, pos)
		}
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case errors.Is(err, errFellBehind):
			s.log.Warn("feed reader fell behind the kept feed; starting again from a snapshot", "types", f.Types)
			pos = -1
			continue
		case err != nil && !isDBError(err):
			return err
		case err != nil:
			if !failing {
				s.log.Warn("feed reader: cannot read the feed; trying again", "types", f.Types, "err", err)
			}
			failing = true
		default:
			if failing {
				s.log.Info("feed reader: reading the feed again", "types", f.Types)
			}
			failing = false
		}
		wait := f.Poll
		if failing {
			wait = min(f.Poll, time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-f.Wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// followOnce gives f.Apply the events after pos up to the feed's head,
// and returns the position reached. A database error comes back wrapped in
// dbError.
func (s *Store) followOnce(ctx context.Context, f FeedFollow, pos int64) (int64, error) {
	for {
		w, err := s.FeedWindow(ctx)
		if err != nil {
			return pos, dbError{err}
		}
		if pos < w.Floor {
			return pos, errFellBehind
		}
		if pos >= w.Head {
			return pos, nil
		}
		evs, err := s.FeedOf(ctx, pos, w.Head, followChunk, f.Types)
		if err != nil {
			return pos, dbError{err}
		}
		next := w.Head
		if len(evs) == followChunk {
			next = evs[len(evs)-1].ID
		}
		if len(evs) > 0 {
			if err := f.Apply(ctx, evs); err != nil {
				return pos, fmt.Errorf("store: follow the feed: %w", err)
			}
		}
		pos = next
	}
}

// dbError marks an error of the database, which a follower outlives.
type dbError struct{ err error }

func (e dbError) Error() string { return e.err.Error() }
func (e dbError) Unwrap() error { return e.err }

func isDBError(err error) bool {
	var d dbError
	return errors.As(err, &d)
}

// FeedLampSnapshot returns every lamp as the feed last told it (lamp.changed
// and lamp.updated), and the feed id whose events it includes: applying the
// lamp events after that id, in order, keeps the lamps as the feed tells
// them. Events after the id may already be in the snapshot; applying them
// again gives the same lamps.
func (s *Store) FeedLampSnapshot(ctx context.Context) ([]callstate.LampStatus, int64, error) {
	var (
		ls   []callstate.LampStatus
		head int64
	)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		// The head first: every numbered event is committed, so its lamp
		// is in the same snapshot's call_feed_lamp.
		if err := tx.QueryRow(ctx, `SELECT head FROM call_feed_head`).Scan(&head); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `
SELECT f.source, f.extension, f.name, f.lamp, f.active_calls, coalesce(l.updated_at, now()) AS updated_at
FROM call_feed_lamp f
LEFT JOIN lamp l ON l.source = f.source AND l.extension = f.extension
ORDER BY f.source, f.extension`)
		rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[lampRow])
		if err != nil {
			return err
		}
		ls = make([]callstate.LampStatus, len(rs))
		for i, r := range rs {
			ls[i] = r.status()
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("store: the feed's lamps: %w", readErr(err))
	}
	return ls, head, nil
}

// LampTypes are the feed's lamp events.
var LampTypes = []string{callstate.EventLampChanged, callstate.EventLampUpdated}

// FollowLamps keeps every lamp as the feed tells it, until ctx is done
// (then it returns nil): it calls fn with all the lamps once they are read
// (evs nil), and again after every chunk of lamp events with the lamps
// after them and the events (lamp.changed, lamp.updated; a removed lamp's
// is "removed" and it is no longer among the lamps). wake nudges it when
// the feed may have grown (the change notifications); it reads the feed
// every second without one. fn runs on FollowFeed's goroutine and must not
// keep lamps.
func (s *Store) FollowLamps(ctx context.Context, wake <-chan struct{}, fn func(lamps []callstate.LampStatus, evs []callstate.FeedEvent)) error {
	type key struct {
		source    callstate.Source
		extension string
	}
	var (
		cur  map[key]callstate.LampStatus
		list []callstate.LampStatus
	)
	all := func() []callstate.LampStatus {
		list = list[:0]
		for _, l := range cur {
			list = append(list, l)
		}
		return list
	}
	return s.FollowFeed(ctx, FeedFollow{
		Types: LampTypes,
		Wake:  wake,
		Start: func(ctx context.Context) (int64, error) {
			ls, head, err := s.FeedLampSnapshot(ctx)
			if err != nil {
				return 0, dbError{err}
			}
			cur = make(map[key]callstate.LampStatus, len(ls))
			for _, l := range ls {
				cur[key{l.Source, l.Extension}] = l
			}
			fn(all(), nil)
			return head, nil
		},
		Apply: func(_ context.Context, evs []callstate.FeedEvent) error {
			for _, ev := range evs {
				if ev.Lamp == nil {
					continue
				}
				k := key{ev.Lamp.Source, ev.Lamp.Extension}
				if ev.Lamp.Lamp == "removed" {
					delete(cur, k)
				} else {
					cur[k] = *ev.Lamp
				}
			}
			fn(all(), evs)
			return nil
		},
	})
}
