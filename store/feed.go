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

// feedRow is a numbered call_feed row as pgx scans it by name. The call
// or journey an event is about is read beside it (see feedEvents) rather
// than built as JSON in the query, as the call_feed_event view does
// for SQL readers: that cost PostgreSQL about 80 µs an event, for every
// reader on every instance (docs/benchmarks.md, "Reading the feed").
type feedRow struct {
	ID         int64      `db:"id"`
	Type       string     `db:"type"`
	At         time.Time  `db:"at"`
	JourneyID  string     `db:"journey_id"`
	Source     string     `db:"source"`
	CallKey    string     `db:"call_key"`
	Data       []byte     `db:"data"`    // a press, a lamp and its previous colour
	CallID     *int64     `db:"call_id"` // call.* events: the call, as the rest tells it then
	State      string     `db:"state"`
	OnHold     bool       `db:"on_hold"`
	AnsweredAt *time.Time `db:"answered_at"`
	EndedAt    *time.Time `db:"ended_at"` // also a journey's
	Cause      string     `db:"cause"`
	AnsweredBy string     `db:"answered_by"`
	Seq        int64      `db:"change_seq"`
	UpdatedAt  *time.Time `db:"updated_at"`
	Outcome    *string    `db:"outcome"` // journey events: the journey's outcome then
}

// feedData is call_feed.data: what the triggers write besides the columns.
type feedData struct {
	Press    string   `json:"press"`
	Lamp     *lampRow `json:"lamp"`
	Previous string   `json:"previous"`
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
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

func (s *Store) readFeed(ctx context.Context, q querier, after int64, limit int) ([]callstate.FeedEvent, error) {
	return s.readFeedOf(ctx, q, after, math.MaxInt64, limit, nil)
}

// feedColumns are what reads of the feed select, as feedRow scans them,
// from call_feed_id i JOIN call_feed f.
const feedColumns = `i.id, f.type, f.at, f.journey_id, f.source, f.call_key, f.data, f.call_id,
       coalesce(f.state, '') AS state, coalesce(f.on_hold, false) AS on_hold, f.answered_at, f.ended_at,
       coalesce(f.cause, '') AS cause, coalesce(f.answered_by, '') AS answered_by,
       coalesce(f.change_seq, 0) AS change_seq, f.updated_at, f.outcome`

// feedFrom selects the feed's events after $1, up to $3, of the types $4
// (none: all), by id, at most $2.
const feedFrom = `
FROM call_feed_id i JOIN call_feed f ON f.seq = i.seq
WHERE i.id > $1 AND i.id <= $3 AND (coalesce(cardinality($4::text[]), 0) = 0 OR f.type = ANY ($4))
ORDER BY i.id LIMIT $2`

func (s *Store) readFeedOf(ctx context.Context, q querier, after, upto int64, limit int, types []string) ([]callstate.FeedEvent, error) {
	return s.feedEvents(ctx, q, after, feedFrom, after, limit, upto, types)
}

// feedEvents reads the feed rows that from (the FROM, WHERE, ORDER BY and
// LIMIT of a query over call_feed_id i JOIN call_feed f, selecting ids
// after after) selects, the calls and the journeys they are about, in one
// round trip, and returns them as events. An event that cannot be decoded
// is logged and left out.
//
// The three statements see the feed at three moments, which gives the
// same rows: rows numbered meanwhile get higher ids than any before, so the
// first rows past after stay the first. Only rows that ForgetFeed deletes
// meanwhile could differ; such a row's call is then told with the row's
// columns alone, as for a call deleted since.
func (s *Store) feedEvents(ctx context.Context, q querier, after int64, from string, args ...any) ([]callstate.FeedEvent, error) {
	rowsSQL, callsSQL, journeysSQL := feedStatements(from)
	b := &pgx.Batch{}
	var rs []feedRow
	calls := map[int64]callRow{}
	journeys := map[string]journeyRow{}
	b.Queue(rowsSQL, args...).Query(func(rows pgx.Rows) error {
		var err error
		rs, err = pgx.CollectRows(rows, pgx.RowToStructByName[feedRow])
		return err
	})
	b.Queue(callsSQL, args...).Query(func(rows pgx.Rows) error {
		cs, err := pgx.CollectRows(rows, pgx.RowToStructByName[callRow])
		for _, c := range cs {
			calls[c.ID] = c
		}
		return err
	})
	b.Queue(journeysSQL, args...).Query(func(rows pgx.Rows) error {
		js, err := pgx.CollectRows(rows, pgx.RowToStructByName[journeyRow])
		for _, j := range js {
			journeys[j.ID] = j
		}
		return err
	})
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("store: feed after %d: %w", after, readErr(err))
	}
	evs := make([]callstate.FeedEvent, 0, len(rs))
	for _, r := range rs {
		ev, err := r.event(calls, journeys)
		if err != nil {
			s.log.Warn("feed: skipping an event that cannot be read", "id", r.ID, "type", r.Type, "err", err)
			continue
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// feedStatements returns feedEvents' three statements for from: the rows,
// their calls, their journeys.
func feedStatements(from string) (rows, calls, journeys string) {
	return `SELECT ` + feedColumns + from,
		`SELECT ` + callColumns + ` FROM call_state WHERE id IN (SELECT f.call_id ` + from + `)`,
		`SELECT ` + journeyColumns + ` FROM journey WHERE journey_id IN (SELECT CASE WHEN f.outcome IS NOT NULL THEN f.journey_id END ` + from + `)`
}

// event makes r an event, with its call or journey from calls or journeys
// as they are now, and what r tells of them at its transition on top
// (as the call_feed_event view does). A call or journey deleted since
// (callstate forget) is told with r's columns alone.
func (r feedRow) event(calls map[int64]callRow, journeys map[string]journeyRow) (callstate.FeedEvent, error) {
	ev := callstate.FeedEvent{ID: r.ID, Type: r.Type, At: r.At.UTC(), JourneyID: r.JourneyID}
	var d feedData
	if len(r.Data) > 0 {
		if err := json.Unmarshal(r.Data, &d); err != nil {
			return ev, fmt.Errorf("store: feed event %d: %w", r.ID, err)
		}
	}
	switch {
	case r.CallID != nil:
		cr, ok := calls[*r.CallID]
		if !ok {
			cr = callRow{ID: *r.CallID, Source: r.Source, CallKey: r.CallKey, JourneyID: r.JourneyID}
		}
		cr.State, cr.OnHold, cr.AnsweredAt, cr.EndedAt = r.State, r.OnHold, r.AnsweredAt, r.EndedAt
		cr.HangupCause, cr.AnsweredBy = r.Cause, r.AnsweredBy
		if r.UpdatedAt != nil {
			cr.UpdatedAt = *r.UpdatedAt
		}
		c, err := cr.call()
		if err != nil {
			return ev, fmt.Errorf("store: feed event %d: %w", r.ID, err)
		}
		ev.Call, ev.Seq = &c, r.Seq
	case r.Outcome != nil:
		jr, ok := journeys[r.JourneyID]
		if !ok {
			jr = journeyRow{ID: r.JourneyID, Source: r.Source}
		}
		jr.Outcome, jr.EndedAt = *r.Outcome, r.EndedAt
		j := jr.journey()
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
