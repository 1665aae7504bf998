// Package store keeps callstate's call-state table and event journal in
// PostgreSQL.
//
// Every accepted event is written in one statement: the journal row and the
// merged call row commit together, so an event answered 2xx is durable and a
// repeated event (same source and dedup key) changes nothing. The merge rules
// are those of callstate.Call.Apply.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate"
)

// ErrNotFound is callstate.ErrNotFound, returned wrapped when a call or
// extension does not exist.
var ErrNotFound = callstate.ErrNotFound

// Options tune a Store. The zero value is usable.
type Options struct {
	MaxConns int32        // pool size; 0 means pgxpool's default. The writers of Apply keep up to two connections a core of their own besides, never more than MaxConns
	Logger   *slog.Logger // nil means slog.Default()
	// BatchWait is how long a live event that comes while others are
	// being written may wait for more to share its transaction (group
	// commit, see startWriters); 0 writes each batch at once.
	BatchWait time.Duration
}

// Store is the PostgreSQL-backed call-state table. It is safe for concurrent use.
type Store struct {
	pool            *pgxpool.Pool // reads, and writes other than Apply's
	wpool           *pgxpool.Pool // the writers' connections, see Open
	log             *slog.Logger
	announce        *announcer
	users           userCache
	journeys        *journeyQueue
	lampWake        chan struct{}  // the feed loop should compare the lamps
	host            string         // the database's host, for logs
	writes          chan *applyReq // live events, to the writer holding gather
	gather          chan struct{}  // held (a value in it) by the writer taking live events
	lastLive        atomic.Int64   // when the last live event came to Apply or Keep, Unix ns
	writing         atomic.Int32   // batches of live events being written
	idle            chan struct{}  // a value when writing fell to 0
	committed       atomic.Uint64  // the writers' transactions committed
	committedEvents atomic.Uint64  // events in them
	batchWait       time.Duration  // Options.BatchWait
	backlog         chan *applyReq // a spool's backlog, to the writers after live events
	closed          chan struct{}  // closed by Close
	ready           chan struct{}  // closed once connected and migrated
	lastErr         atomic.Pointer[connErr]
	moves           moveBehindState // when ClaimDeliveries last moved deliveries behind their first
	wctx            context.Context // the writers' and reconnect's; cancelled by Close
	stop            context.CancelFunc
	stopped         sync.WaitGroup
	once            sync.Once
}

// errClosed is returned by Apply after Close.
var errClosed = errors.New("store: closed")

// ErrUnavailable is callstate.ErrUnavailable, returned wrapped while the
// database cannot be reached: before the first connection, and when a
// query fails for want of a connection or an answer in time.
var ErrUnavailable = callstate.ErrUnavailable

// reconnectEvery is how often a Store that started without its database
// tries again.
const reconnectEvery = 500 * time.Millisecond

// firstConnectTimeout bounds Open's own try to reach the database.
const firstConnectTimeout = 5 * time.Second

// connectTimeout bounds a new connection when the URL sets none
// (connect_timeout).
const connectTimeout = 5 * time.Second

// closeWait bounds how long Close waits for the connections to close; a
// database that does not answer can hold them longer.
const closeWait = 500 * time.Millisecond

// Open returns a Store for the database at url; the caller must Close it.
// It connects and applies pending migrations before it returns when the
// database answers within a few seconds. When it does not, Open returns
// all the same, with the Store unavailable (Apply, reads and Ping return
// errors wrapping ErrUnavailable), and goes on trying in the background:
// Ready is closed once it is connected and migrated. Open returns an error
// for a bad URL and for what trying again cannot mend: a refused login,
// a database that does not exist, a failed migration.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: parse database url: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		// A server that accepts the connection and then says nothing (a
		// frozen one) must not hold a new connection, nor Close, forever.
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	// Two writers a core: enough transactions in flight to keep PostgreSQL's
	// cores busy, few enough that events share commits under load (measured
	// in docs/benchmarks.md: 1, 2 and 4 a core). A small pool size bounds
	// them too.
	writers := min(2*runtime.NumCPU(), int(max(cfg.MaxConns, 1)))
	// The writers run the same few statements all day, on connections of
	// their own that always use the statements' generic plans. Left to
	// choose, PostgreSQL decides per connection, from the costs of a
	// statement's first runs, whether to plan it anew at every run; the
	// upsert and the sipgate_user trigger planned anew cost PostgreSQL
	// eight times the CPU per event and halved the webhook rate
	// (docs/benchmarks.md). The other queries build their filters per
	// request and keep the default.
	wcfg := cfg.Copy()
	wcfg.MaxConns = int32(writers)
	wcfg.MinConns = 0
	wcfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	wpool, err := pgxpool.NewWithConfig(ctx, wcfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	s := &Store{pool: pool, wpool: wpool, log: log, host: cfg.ConnConfig.Host,
		writes: make(chan *applyReq), gather: make(chan struct{}, 1), idle: make(chan struct{}, 1), batchWait: max(opts.BatchWait, 0), backlog: make(chan *applyReq), closed: make(chan struct{}), ready: make(chan struct{}),
		journeys: newJourneyQueue(), lampWake: make(chan struct{}, 1)}
	s.lastErr.Store(&connErr{errors.New("not connected yet")})
	s.wctx, s.stop = context.WithCancel(context.Background())

	fctx, cancel := context.WithTimeout(ctx, firstConnectTimeout)
	err = s.connect(fctx, ctx)
	cancel()
	switch {
	case err == nil:
	case permanent(err):
		s.stop()
		wpool.Close()
		pool.Close()
		return nil, err
	default:
		log.Warn("database unreachable; starting without it, events wait in the spool until it answers", "host", s.host, "err", err)
	}
	s.startAnnouncer()
	s.startWriters(writers)
	s.stopped.Go(s.refreshLoop)
	s.stopped.Go(s.feedLoop)
	if err != nil {
		s.stopped.Go(s.reconnect)
	}
	return s, nil
}

// connErr holds the last reason the Store is unavailable.
type connErr struct{ err error }

// connect pings the database within pctx and migrates it within mctx, and
// marks the Store ready.
func (s *Store) connect(pctx, mctx context.Context) error {
	if err := s.pool.Ping(pctx); err != nil {
		err = fmt.Errorf("store: connect to %s: %w", s.host, readErr(err))
		s.lastErr.Store(&connErr{err})
		return err
	}
	if err := migrate(mctx, s.pool, s.log); err != nil {
		s.lastErr.Store(&connErr{err})
		return err
	}
	// Today's and the next days' partitions of the journal; a day without
	// is made by the write that needs it.
	if _, err := s.EnsureJournalPartitions(mctx, time.Now()); err != nil {
		s.log.Warn("making the journal's partitions ahead failed; writes make their own", "err", err)
	}
	close(s.ready)
	return nil
}

// reconnect tries to connect every reconnectEvery until it does or the
// Store is closed.
func (s *Store) reconnect() {
	t := time.NewTicker(reconnectEvery)
	defer t.Stop()
	for tries := 1; ; tries++ {
		select {
		case <-s.closed:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithCancel(context.Background())
		stop := context.AfterFunc(s.wctx, cancel)
		pctx, pcancel := context.WithTimeout(ctx, firstConnectTimeout)
		err := s.connect(pctx, ctx)
		pcancel()
		stop()
		cancel()
		if err == nil {
			s.log.Info("database connected and migrated", "host", s.host, "after_tries", tries)
			return
		}
		if permanent(err) || tries%20 == 0 {
			s.log.Warn("database still unreachable", "host", s.host, "err", err)
		}
	}
}

// permanent reports whether err is one that connecting again cannot mend:
// login refused (class 28), no such database (3D000), or a failed
// migration.
func permanent(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == "3D000" || errors.Is(err, errMigration)
	}
	return errors.Is(err, errMigration)
}

// Ready is closed once the Store is connected and migrated.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// available returns nil once the Store is connected, else an error
// wrapping ErrUnavailable with the reason.
func (s *Store) available() error {
	select {
	case <-s.ready:
		return nil
	default:
		return fmt.Errorf("%w: %w", ErrUnavailable, s.lastErr.Load().err)
	}
}

// Close closes all connections. Writes in progress are cancelled; they
// report an error, and the spool keeps their events. Close waits up to
// half a second for the connections to close: a database that does not answer
// (frozen) can keep one connecting or closing for longer, and it is left
// to close by itself then.
func (s *Store) Close() {
	s.once.Do(func() {
		close(s.closed)
		s.stop()
		s.stopped.Wait()
		s.announce.stop()
		done := make(chan struct{})
		go func() {
			s.wpool.Close()
			s.pool.Close()
			close(done)
		}()
		t := time.NewTimer(closeWait)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			s.log.Warn("database connections did not close in time; leaving them", "host", s.host)
		}
	})
}

// Ping checks that the database answers. It returns an error wrapping
// ErrUnavailable when it does not.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.available(); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// readErr wraps an error of a read with ErrUnavailable when it is one of
// connection or time: no answer in time, a connection refused or broken.
func readErr(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// stateColumns are the call_state columns a write sets, in the order of
// applySQL's and Recompute's values.
const stateColumns = `
    source, call_key, call_id, orig_call_id, extension, extension_pinned, direction,
    from_party, to_party, users, user_ids, full_user_ids,
    answered_by, answering_number, diversion, xcid,
    state, on_hold, hold_at, hangup_cause, cause_at, dtmf, dtmf_presses,
    started_at, answered_at, ended_at, updated_at, last_event_id,
    learned, end_rank, answer_rank, answer_at,
    routed_rule, routed_at
`

// applySQL journals one event and merges its update into the call's row, in
// one statement and so one transaction. A repeated event (same source and
// dedup key, in call_event_key whatever the journal's partition) inserts no
// key and so no journal row, and with nothing to select the upsert does
// nothing: RETURNING then yields no row.
//
// The merge is callstate.Call.Apply's, column by column: each is a join
// (GREATEST, LEAST, callstate_join, a union of presses, the earliest of
// the highest rank), so the row is the same whatever order events are
// applied in, by whichever instance. A learned event of a call erased by
// "callstate forget" (call_tombstone) is not applied: erased stays erased.
const applySQL = `
WITH k AS (
    INSERT INTO call_event_key (source, dedup_key, received_at)
    SELECT $1, $2, $5
    WHERE NOT ($26::boolean AND EXISTS (SELECT 1 FROM call_tombstone t WHERE t.source = $1 AND t.call_key = $3))
    ON CONFLICT (source, dedup_key) DO NOTHING
    RETURNING 1
), ev AS (
    INSERT INTO call_event (source, dedup_key, call_key, type, received_at, payload, call_update)
    SELECT $1, $2, $3, $4::text, $5, $6::bytea, $25::bytea FROM k
    RETURNING id
), u AS (
    SELECT $20::text::call_phase AS state, $30::smallint AS rank,
           coalesce($29::timestamptz, $5::timestamptz) AS end_at,
           $20 = 'answered' OR $28::timestamptz IS NOT NULL AS answers,
           coalesce($28::timestamptz, $5::timestamptz) AS answer_at
)
INSERT INTO call_state AS c (` + stateColumns + `)
SELECT $1, $3, $7, $8, $9, $24 AND $9 <> '', $10,
       $11, $12, $13, $14, $15,
       $16, $17, $18, $19,
       u.state, coalesce($21::boolean, false) AND u.state <> 'ended',
       CASE WHEN $21::boolean IS NOT NULL THEN $5::timestamptz END,
       $22, CASE WHEN $22 <> '' THEN u.end_at END,
       CASE WHEN cardinality($23::text[]) = 0 THEN '' ELSE callstate_dtmf($23::text[], $32::bigint) END, $23::text[],
       LEAST(coalesce($27::timestamptz, $5::timestamptz), $28::timestamptz, $29::timestamptz),
       CASE WHEN u.answers THEN LEAST(u.answer_at, CASE WHEN u.state = 'ended' THEN u.end_at END) END,
       CASE WHEN u.state = 'ended' THEN u.end_at END,
       $5, ev.id,
       $26, CASE WHEN u.state = 'ended' OR $22 <> '' THEN u.rank ELSE 0 END,
       CASE WHEN u.answers THEN u.rank ELSE 0 END, CASE WHEN u.answers THEN u.answer_at END,
       $31, CASE WHEN $31 <> '' THEN $5::timestamptz END
FROM ev, u
ON CONFLICT (source, call_key) DO UPDATE SET
    call_id          = callstate_join(c.call_id, EXCLUDED.call_id),
    orig_call_id     = callstate_join(c.orig_call_id, EXCLUDED.orig_call_id),
    extension        = CASE WHEN EXCLUDED.extension = '' THEN c.extension
                            WHEN EXCLUDED.extension_pinned AND NOT c.extension_pinned THEN EXCLUDED.extension
                            WHEN EXCLUDED.extension_pinned = c.extension_pinned THEN callstate_join(c.extension, EXCLUDED.extension)
                            ELSE c.extension END,
    extension_pinned = c.extension_pinned OR EXCLUDED.extension_pinned,
    direction        = callstate_join(c.direction, EXCLUDED.direction),
    from_party       = callstate_join(c.from_party, EXCLUDED.from_party),
    to_party         = callstate_join(c.to_party, EXCLUDED.to_party),
    users            = callstate_join(c.users, EXCLUDED.users),
    user_ids         = callstate_join(c.user_ids, EXCLUDED.user_ids),
    full_user_ids    = callstate_join(c.full_user_ids, EXCLUDED.full_user_ids),
    answered_by      = callstate_join(c.answered_by, EXCLUDED.answered_by),
    answering_number = callstate_join(c.answering_number, EXCLUDED.answering_number),
    diversion        = callstate_join(c.diversion, EXCLUDED.diversion),
    xcid             = callstate_join(c.xcid, EXCLUDED.xcid),
    state            = GREATEST(c.state, EXCLUDED.state),
    on_hold          = CASE WHEN $21::boolean IS NULL THEN c.on_hold
                            WHEN c.hold_at IS NULL OR EXCLUDED.hold_at > c.hold_at THEN $21::boolean
                            WHEN EXCLUDED.hold_at = c.hold_at THEN c.on_hold OR $21::boolean
                            ELSE c.on_hold END
                       AND GREATEST(c.state, EXCLUDED.state) <> 'ended',
    hold_at          = GREATEST(c.hold_at, EXCLUDED.hold_at),
    -- The end: from the updates of the highest rank that state one.
    hangup_cause     = CASE WHEN EXCLUDED.end_rank > c.end_rank THEN EXCLUDED.hangup_cause
                            WHEN EXCLUDED.end_rank < c.end_rank THEN c.hangup_cause
                            WHEN EXCLUDED.cause_at IS NULL THEN c.hangup_cause
                            WHEN c.cause_at IS NULL OR EXCLUDED.cause_at < c.cause_at THEN EXCLUDED.hangup_cause
                            WHEN EXCLUDED.cause_at = c.cause_at THEN callstate_join(c.hangup_cause, EXCLUDED.hangup_cause)
                            ELSE c.hangup_cause END,
    cause_at         = callstate_ranked(c.end_rank, c.cause_at, EXCLUDED.end_rank, EXCLUDED.cause_at, 0::smallint),
    dtmf_presses     = CASE WHEN cardinality(EXCLUDED.dtmf_presses) = 0 THEN c.dtmf_presses
                            ELSE callstate_presses(c.dtmf_presses, EXCLUDED.dtmf_presses) END,
    dtmf             = CASE WHEN cardinality(EXCLUDED.dtmf_presses) = 0 THEN c.dtmf
                            ELSE callstate_dtmf(callstate_presses(c.dtmf_presses, EXCLUDED.dtmf_presses), $32::bigint) END,
    started_at       = LEAST(c.started_at, EXCLUDED.started_at),
    -- The answer: from the updates of the highest rank that state one and
    -- rank no lower than the end's; never after the end.
    answered_at      = callstate_capped(
                           callstate_ranked(c.answer_rank, c.answer_at, EXCLUDED.answer_rank, EXCLUDED.answer_at,
                                            GREATEST(c.end_rank, EXCLUDED.end_rank)),
                           callstate_ranked(c.end_rank, c.ended_at, EXCLUDED.end_rank, EXCLUDED.ended_at, 0::smallint)),
    ended_at         = callstate_ranked(c.end_rank, c.ended_at, EXCLUDED.end_rank, EXCLUDED.ended_at, 0::smallint),
    updated_at       = GREATEST(c.updated_at, EXCLUDED.updated_at),
    last_event_id    = GREATEST(c.last_event_id, EXCLUDED.last_event_id),
    learned          = c.learned AND EXCLUDED.learned,
    end_rank         = GREATEST(c.end_rank, EXCLUDED.end_rank),
    answer_rank      = CASE WHEN GREATEST(c.answer_rank, EXCLUDED.answer_rank) >= GREATEST(c.end_rank, EXCLUDED.end_rank)
                            THEN GREATEST(c.answer_rank, EXCLUDED.answer_rank) ELSE 0 END,
    answer_at        = callstate_ranked(c.answer_rank, c.answer_at, EXCLUDED.answer_rank, EXCLUDED.answer_at,
                                        GREATEST(c.end_rank, EXCLUDED.end_rank)),
    -- The rule that routed the call: the earliest event's that names one.
    routed_rule      = CASE WHEN EXCLUDED.routed_at IS NULL THEN c.routed_rule
                            WHEN c.routed_at IS NULL OR EXCLUDED.routed_at < c.routed_at THEN EXCLUDED.routed_rule
                            WHEN EXCLUDED.routed_at = c.routed_at THEN callstate_join(c.routed_rule, EXCLUDED.routed_rule)
                            ELSE c.routed_rule END,
    routed_at        = LEAST(c.routed_at, EXCLUDED.routed_at),
    change_seq       = EXCLUDED.change_seq -- a fresh nextval, from the column default
RETURNING c.id`

// Apply journals ev and merges its update into the call's row, atomically,
// and returns once that is committed. It reports applied=false, with no
// error, when the same event (same source and dedup key) was applied
// before: the call is left as it was. It returns an error wrapping
// callstate.ErrInvalidEvent for an incomplete event or data the database
// refuses, and a wrapped database error when the write fails; nothing is
// stored then. If ctx ends first, Apply returns its error, and the event
// may or may not have been stored.
//
// Concurrent calls share transactions (see writer), so that many events
// cost one commit.
func (s *Store) Apply(ctx context.Context, ev callstate.Event) (applied bool, err error) {
	return s.apply(ctx, ev, s.writes)
}

// Keep applies evs and returns once every one of them is committed (or
// was a repeat): it keeps them in the database itself. They go to the
// writers together, so that they share transactions. It returns the
// first error Apply would return for one of them; some of the others may
// have been stored then, and keeping them again is harmless.
func (s *Store) Keep(ctx context.Context, evs []callstate.Event) error {
	for _, ev := range evs {
		if err := ev.Validate(); err != nil {
			return fmt.Errorf("store: keep: %w", err)
		}
	}
	reqs := make([]*applyReq, 0, len(evs))
	for _, ev := range evs {
		r, err := s.enqueue(ctx, ev, s.writes)
		if err != nil {
			return err
		}
		reqs = append(reqs, r)
	}
	for _, r := range reqs {
		if _, err := s.wait(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// ApplyBacklog is Apply for an event that waited (in a spool): live
// events go before it into the writers' transactions.
func (s *Store) ApplyBacklog(ctx context.Context, ev callstate.Event) (applied bool, err error) {
	return s.apply(ctx, ev, s.backlog)
}

func (s *Store) apply(ctx context.Context, ev callstate.Event, to chan<- *applyReq) (applied bool, err error) {
	if err := ev.Validate(); err != nil {
		return false, fmt.Errorf("store: apply: %w", err)
	}
	req, err := s.enqueue(ctx, ev, to)
	if err != nil {
		return false, err
	}
	return s.wait(ctx, req)
}

// enqueue hands ev to the writers through to (live or backlog).
func (s *Store) enqueue(ctx context.Context, ev callstate.Event, to chan<- *applyReq) (*applyReq, error) {
	if err := s.available(); err != nil {
		return nil, fmt.Errorf("store: apply %s: %w", ev.DedupKey, err)
	}
	req := &applyReq{live: to == s.writes, ctx: ctx, ev: ev, done: make(chan applyResult, 1)}
	if req.live && s.batchWait > 0 {
		now := time.Now().UnixNano()
		req.after = time.Duration(now - s.lastLive.Swap(now))
	}
	select {
	case to <- req:
		return req, nil
	case <-s.closed:
		return nil, errClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("store: apply %s: %w", ev.DedupKey, ctx.Err())
	}
}

// wait returns what the writers made of req, once it is committed.
func (s *Store) wait(ctx context.Context, req *applyReq) (applied bool, err error) {
	select {
	case r := <-req.done:
		return r.applied, r.err
	case <-ctx.Done():
		return false, fmt.Errorf("store: apply %s: %w", req.ev.DedupKey, ctx.Err())
	}
}

// applyArgs are applySQL's parameters for ev.
func applyArgs(ev callstate.Event) []any {
	u := ev.Update
	return []any{
		string(ev.Source), ev.DedupKey, u.Key, ev.Type, ev.ReceivedAt, ev.Payload,
		u.CallID, u.OrigCallID, u.Extension, string(u.Direction),
		u.From, u.To, nonNil(u.Users), nonNil(u.UserIDs), nonNil(u.FullUserIDs),
		u.AnsweredBy, u.Answering, u.Diversion, u.XCID,
		u.State.String(), u.OnHold, u.Cause, presses(ev), u.PinExtension,
		updateJSON(u),
		u.Learned, timeOrNil(u.StartedAt), timeOrNil(u.AnsweredAt), timeOrNil(u.EndedAt), int16(u.Rank()),
		u.Rule, callstate.ReplayWindow.Microseconds(),
	}
}

// applyErr wraps a failed write of ev.
func applyErr(ev callstate.Event, err error) error {
	return fmt.Errorf("store: apply %s %s source=%s call=%s: %w", ev.Type, ev.DedupKey, ev.Source, ev.Update.Key, classify(err))
}

// classify marks errors caused by the event's data (PostgreSQL classes 22,
// data exception, and 23, integrity violation) as callstate.ErrInvalidEvent:
// trying the same event again cannot succeed. Anything else may pass, and
// so may a missing partition of the journal (23514 too), which the next
// try makes.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !isNoPartition(err) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23")) {
		return fmt.Errorf("%w: %w", callstate.ErrInvalidEvent, err)
	}
	return err
}

// updateJSON is u as the journal keeps it. An Update is plain data, so
// encoding cannot fail.
func updateJSON(u callstate.Update) []byte {
	b, err := json.Marshal(u)
	if err != nil {
		panic(fmt.Sprintf("store: encode update: %v", err))
	}
	return b
}

// presses is ev's DTMF press as the store keeps it (callstate.Press.Key):
// none, or one.
func presses(ev callstate.Event) []string {
	if ev.Update.DTMF == "" {
		return []string{}
	}
	p := callstate.Press{At: callstate.EventTime(ev.ReceivedAt), Digest: ev.Update.DTMFDigest, Digits: ev.Update.DTMF}
	return []string{p.Key()}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const callColumns = `
    id, source, call_key, call_id, orig_call_id, extension, direction,
    from_party, to_party, users, user_ids, full_user_ids,
    answered_by, answering_number, diversion, xcid,
    state::text AS state, on_hold, hangup_cause, dtmf,
    started_at, answered_at, ended_at, updated_at,
    extension_pinned, hold_at, cause_at, dtmf_presses,
    learned, end_rank, answer_rank, answer_at,
    routed_rule, routed_at, journey_id`

// callRow is a call_state row as pgx scans it by name.
type callRow struct {
	ID              int64      `db:"id" json:"id"`
	Source          string     `db:"source" json:"source"`
	CallKey         string     `db:"call_key" json:"call_key"`
	CallID          string     `db:"call_id" json:"call_id"`
	OrigCallID      string     `db:"orig_call_id" json:"orig_call_id"`
	Extension       string     `db:"extension" json:"extension"`
	Direction       string     `db:"direction" json:"direction"`
	FromParty       string     `db:"from_party" json:"from_party"`
	ToParty         string     `db:"to_party" json:"to_party"`
	Users           []string   `db:"users" json:"users"`
	UserIDs         []string   `db:"user_ids" json:"user_ids"`
	FullUserIDs     []string   `db:"full_user_ids" json:"full_user_ids"`
	AnsweredBy      string     `db:"answered_by" json:"answered_by"`
	AnsweringNumber string     `db:"answering_number" json:"answering_number"`
	Diversion       string     `db:"diversion" json:"diversion"`
	XCID            string     `db:"xcid" json:"xcid"`
	State           string     `db:"state" json:"state"`
	OnHold          bool       `db:"on_hold" json:"on_hold"`
	HangupCause     string     `db:"hangup_cause" json:"hangup_cause"`
	DTMF            string     `db:"dtmf" json:"dtmf"`
	StartedAt       *time.Time `db:"started_at" json:"started_at"`
	AnsweredAt      *time.Time `db:"answered_at" json:"answered_at"`
	EndedAt         *time.Time `db:"ended_at" json:"ended_at"`
	UpdatedAt       time.Time  `db:"updated_at" json:"updated_at"`
	ExtensionPinned bool       `db:"extension_pinned" json:"extension_pinned"`
	HoldAt          *time.Time `db:"hold_at" json:"hold_at"`
	CauseAt         *time.Time `db:"cause_at" json:"cause_at"`
	RoutedRule      string     `db:"routed_rule" json:"routed_rule"`
	RoutedAt        *time.Time `db:"routed_at" json:"routed_at"`
	DTMFPresses     []string   `db:"dtmf_presses" json:"dtmf_presses"`
	Learned         bool       `db:"learned" json:"learned"`
	EndRank         int16      `db:"end_rank" json:"end_rank"`
	AnswerRank      int16      `db:"answer_rank" json:"answer_rank"`
	AnswerAt        *time.Time `db:"answer_at" json:"answer_at"`
	JourneyID       string     `db:"journey_id" json:"journey_id"`
}

func (r callRow) call() (callstate.Call, error) {
	st, err := callstate.ParseState(r.State)
	if err != nil {
		return callstate.Call{}, fmt.Errorf("store: call %d: %w", r.ID, err)
	}
	var ps []callstate.Press
	for _, k := range r.DTMFPresses {
		p, err := callstate.ParsePress(k)
		if err != nil {
			return callstate.Call{}, fmt.Errorf("store: call %d: %w", r.ID, err)
		}
		ps = append(ps, p)
	}
	return callstate.Call{
		ID: r.ID, Source: callstate.Source(r.Source), Key: r.CallKey, JourneyID: r.JourneyID,
		CallID: r.CallID, OrigCallID: r.OrigCallID, Extension: r.Extension,
		Direction: callstate.Direction(r.Direction), From: r.FromParty, To: r.ToParty,
		Users: r.Users, UserIDs: r.UserIDs, FullUserIDs: r.FullUserIDs,
		AnsweredBy: r.AnsweredBy, Answering: r.AnsweringNumber,
		Diversion: r.Diversion, XCID: r.XCID,
		State: st, OnHold: r.OnHold, Cause: r.HangupCause, DTMF: r.DTMF,
		StartedAt: deref(r.StartedAt), AnsweredAt: deref(r.AnsweredAt), EndedAt: deref(r.EndedAt),
		UpdatedAt:       r.UpdatedAt,
		ExtensionPinned: r.ExtensionPinned, HoldAt: deref(r.HoldAt), CauseAt: deref(r.CauseAt),
		Rule: r.RoutedRule, RuleAt: deref(r.RoutedAt),
		Presses: ps,
		Learned: r.Learned, EndRank: callstate.Rank(r.EndRank), AnswerRank: callstate.Rank(r.AnswerRank),
		AnswerAt: deref(r.AnswerAt),
	}, nil
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}

// Call returns the call with the given source and key. It returns an error
// wrapping ErrNotFound when there is none.
func (s *Store) Call(ctx context.Context, source callstate.Source, key string) (callstate.Call, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+callColumns+` FROM call_state WHERE source = $1 AND call_key = $2`, string(source), key)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[callRow])
	if errors.Is(err, pgx.ErrNoRows) {
		return callstate.Call{}, fmt.Errorf("store: call source=%s key=%s: %w", source, key, ErrNotFound)
	}
	if err != nil {
		return callstate.Call{}, fmt.Errorf("store: call source=%s key=%s: %w", source, key, readErr(err))
	}
	return r.call()
}

// journalRow is a call_event row as pgx scans it by name.
type journalRow struct {
	ID         int64     `db:"id"`
	Source     string    `db:"source"`
	DedupKey   string    `db:"dedup_key"`
	CallKey    string    `db:"call_key"`
	Type       string    `db:"type"`
	ReceivedAt time.Time `db:"received_at"`
	Payload    []byte    `db:"payload"`
	Update     []byte    `db:"call_update"`
}

// Journal returns the journaled events of one call, oldest first.
func (s *Store) Journal(ctx context.Context, source callstate.Source, key string) ([]callstate.JournalEntry, error) {
	rows, _ := s.pool.Query(ctx, `
		SELECT id, source, dedup_key, call_key, type, received_at, payload, call_update
		FROM call_event WHERE source = $1 AND call_key = $2 ORDER BY id`, string(source), key)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[journalRow])
	if err != nil {
		return nil, fmt.Errorf("store: journal source=%s key=%s: %w", source, key, readErr(err))
	}
	es := make([]callstate.JournalEntry, len(rs))
	for i, r := range rs {
		es[i] = callstate.JournalEntry{ID: r.ID, Source: callstate.Source(r.Source), DedupKey: r.DedupKey,
			CallKey: r.CallKey, Type: r.Type, ReceivedAt: r.ReceivedAt, Payload: r.Payload}
		var u callstate.Update
		if r.Update != nil && json.Unmarshal(r.Update, &u) == nil {
			es[i].Event = callstate.TypedEvent(u)
		}
	}
	return es, nil
}
