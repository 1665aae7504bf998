package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// The feed (call_feed, migration 020) is written by triggers in the
// transactions that make its transitions visible; callstate.FeedEvent says
// why each is written once. Its rows get their ids after they commit, from
// callstate_feed_assign: the announcer numbers them just before it tells
// the listeners (so that a NOTIFY finds them numbered), and the feed loop
// every feedEvery, for rows a crashed instance left unnumbered.

// feedAssignBatch bounds the rows one numbering statement takes.
const feedAssignBatch = 10000

// feedEvery is how often the feed loop numbers what is left and compares
// the lamps, whatever was written.
const feedEvery = time.Second

// assignFeed numbers the committed feed rows that have no id yet, and
// returns how many it numbered.
func (s *Store) assignFeed(ctx context.Context) (int, error) {
	total := 0
	for {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT callstate_feed_assign($1)`, feedAssignBatch).Scan(&n); err != nil {
			return total, fmt.Errorf("store: number the feed: %w", readErr(err))
		}
		total += n
		if n < feedAssignBatch {
			return total, nil
		}
	}
}

// FeedLamps writes lamp.changed (and lamp.updated) for the lamps that
// changed since the feed last told them, and returns how many events it
// wrote. The store runs it after its writes and every second;
// call it after a change the store does not see (a PBX extension's row).
func (s *Store) FeedLamps(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT callstate_feed_lamps()`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: feed lamps: %w", readErr(err))
	}
	if n > 0 {
		s.announce.changed()
	}
	return n, nil
}

// FeedWindow returns the ids of the feed that are kept: a reader that read
// up to an id the window covers can read on without missing an event.
func (s *Store) FeedWindow(ctx context.Context) (callstate.FeedWindow, error) {
	var w callstate.FeedWindow
	if err := s.pool.QueryRow(ctx, `SELECT floor, head FROM call_feed_head`).Scan(&w.Floor, &w.Head); err != nil {
		return w, fmt.Errorf("store: feed window: %w", readErr(err))
	}
	return w, nil
}

// feedRow is a call_feed row as pgx scans it by name.
type feedRow struct {
	ID        int64     `db:"id"`
	Type      string    `db:"type"`
	At        time.Time `db:"at"`
	JourneyID string    `db:"journey_id"`
	Data      []byte    `db:"data"`
	Rule      string    `db:"routed_rule"` // of a journey event: the rule of its leg routed first, as the legs say now
}

// feedData is call_feed.data: what the triggers write.
type feedData struct {
	Call     *callRow    `json:"call"`
	Journey  *journeyRow `json:"journey"`
	Press    string      `json:"press"`
	Lamp     *lampRow    `json:"lamp"`
	Previous string      `json:"previous"`
}

// callSeq reads change_seq from a call's data, which callRow leaves out.
type callSeq struct {
	Call struct {
		Seq int64 `json:"change_seq"`
	} `json:"call"`
}

// Feed returns at most limit events of the feed after id after, by id.
func (s *Store) Feed(ctx context.Context, after int64, limit int) ([]callstate.FeedEvent, error) {
	return s.readFeed(ctx, s.pool, after, limit)
}

// FeedOf returns at most limit events of the given types (none: every
// type) with ids after after and up to upto, by id.
func (s *Store) FeedOf(ctx context.Context, after, upto int64, limit int, types []string) ([]callstate.FeedEvent, error) {
	return s.readFeedOf(ctx, s.pool, after, upto, limit, types)
}

// querier is a pool, a connection or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Store) readFeed(ctx context.Context, q querier, after int64, limit int) ([]callstate.FeedEvent, error) {
	return s.readFeedOf(ctx, q, after, math.MaxInt64, limit, nil)
}

func (s *Store) readFeedOf(ctx context.Context, q querier, after, upto int64, limit int, types []string) ([]callstate.FeedEvent, error) {
	rows, _ := q.Query(ctx, `
SELECT id, type, at, journey_id, data,
       CASE WHEN data ? 'journey' THEN coalesce((
           SELECT l.routed_rule FROM call_state l
           WHERE l.journey_id = call_feed_event.journey_id AND l.routed_rule <> ''
           ORDER BY l.routed_at, l.routed_rule COLLATE "C" DESC LIMIT 1), '') ELSE '' END AS routed_rule
FROM call_feed_event
WHERE id > $1 AND id <= $3 AND (coalesce(cardinality($4::text[]), 0) = 0 OR type = ANY ($4))
ORDER BY id LIMIT $2`, after, limit, upto, types)
	return s.feedEvents(rows, after)
}

// feedEvents collects and decodes the rows of a read of the feed after id
// after; an event that cannot be decoded is logged and left out.
func (s *Store) feedEvents(rows pgx.Rows, after int64) ([]callstate.FeedEvent, error) {
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[feedRow])
	if err != nil {
		return nil, fmt.Errorf("store: feed after %d: %w", after, readErr(err))
	}
	evs := make([]callstate.FeedEvent, 0, len(rs))
	for _, r := range rs {
		ev, err := r.event()
		if err != nil {
			s.log.Warn("feed: skipping an event that cannot be read", "id", r.ID, "type", r.Type, "err", err)
			continue
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// event decodes r.
func (r feedRow) event() (callstate.FeedEvent, error) {
	ev := callstate.FeedEvent{ID: r.ID, Type: r.Type, At: r.At.UTC(), JourneyID: r.JourneyID}
	var d feedData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return ev, fmt.Errorf("store: feed event %d: %w", r.ID, err)
	}
	if d.Call != nil {
		c, err := d.Call.call()
		if err != nil {
			return ev, fmt.Errorf("store: feed event %d: %w", r.ID, err)
		}
		var cs callSeq
		_ = json.Unmarshal(r.Data, &cs) // decoded above already
		ev.Call, ev.Seq = &c, cs.Call.Seq
	}
	if d.Journey != nil {
		j := d.Journey.journey()
		j.Rule = r.Rule
		ev.Journey = &j
	}
	if d.Press != "" {
		p, err := callstate.ParsePress(d.Press)
		if err != nil {
			return ev, fmt.Errorf("store: feed event %d: %w", r.ID, err)
		}
		ev.Press = &p
	}
	if d.Lamp != nil {
		l := d.Lamp.status()
		ev.Lamp, ev.Previous = &l, d.Previous
	}
	return ev, nil
}

// ForgetFeed deletes the feed's events written before cutoff, in batches,
// and moves the feed's floor past them. It returns how many it deleted.
func (s *Store) ForgetFeed(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		var n, events int64
		// Ids follow the rows' creation but for a few milliseconds (a
		// late commit), so the feed is cut at the highest id of a row
		// written before cutoff: the floor says everything up to it may
		// be gone.
		err := s.pool.QueryRow(ctx, `
WITH upto AS (
    SELECT max(i.id) AS id FROM call_feed f JOIN call_feed_id i ON i.seq = f.seq WHERE f.created_at < $1
), gone AS (
    DELETE FROM call_feed_id WHERE id IN (
        SELECT id FROM call_feed_id WHERE id <= (SELECT id FROM upto) ORDER BY id LIMIT $2)
    RETURNING id, seq
), rows AS (
    DELETE FROM call_feed f USING gone g WHERE f.seq = g.seq RETURNING 1
), floor AS (
    UPDATE call_feed_head SET floor = GREATEST(floor, (SELECT max(id) FROM gone))
    WHERE EXISTS (SELECT 1 FROM gone)
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM rows)`, cutoff, forgetBatch).Scan(&n, &events)
		if err != nil {
			return total, fmt.Errorf("store: forget the feed before %s: %w", cutoff.Format(time.RFC3339), readErr(err))
		}
		total += events
		if n < forgetBatch {
			return total, nil
		}
	}
}

// lampsEvery is the least time between two comparisons of the lamps: the
// lamp view reads every active call, and under load writes come every few
// milliseconds.
const lampsEvery = 50 * time.Millisecond

// feedLoop numbers what is left of the feed and compares the lamps every
// feedEvery, and compares the lamps after writes (lampWake, at most every
// lampsEvery), until the Store is closed.
func (s *Store) feedLoop() {
	select {
	case <-s.closed:
		return
	case <-s.ready:
	}
	t := time.NewTicker(feedEvery)
	defer t.Stop()
	var warned time.Time
	for {
		periodic := false
		select {
		case <-s.closed:
			return
		case <-t.C:
			periodic = true
		case <-s.lampWake:
		}
		ctx, cancel := context.WithTimeout(s.wctx, writeTimeout)
		_, err := s.FeedLamps(ctx)
		if err == nil && periodic {
			var n int
			n, err = s.assignFeed(ctx)
			if n > 0 {
				s.announce.changed()
			}
		}
		cancel()
		if err != nil && s.wctx.Err() == nil && time.Since(warned) > time.Minute {
			warned = time.Now()
			s.log.Warn("feed: lamps or numbering failed; trying again", "err", err)
		}
		select {
		case <-s.closed:
			return
		case <-time.After(lampsEvery):
		}
	}
}

// lampsChanged asks the feed loop to compare the lamps; it never blocks.
func (s *Store) lampsChanged() {
	select {
	case s.lampWake <- struct{}{}:
	default:
	}
}

// SyncFeed returns once every event of what was written before it was
// called is in the feed with its id: the journeys of the calls written are
// computed, the lamps compared and the rows numbered. It returns ctx's
// error, or the database's.
func (s *Store) SyncFeed(ctx context.Context) error {
	if err := s.SyncJourneys(ctx); err != nil {
		return err
	}
	if _, err := s.FeedLamps(ctx); err != nil {
		return err
	}
	if _, err := s.assignFeed(ctx); err != nil {
		return err
	}
	return nil
}
