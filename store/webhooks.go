package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// Webhooks out: migration 024 describes the tables and how deliveries are
// made, taken and kept in order.

const endpointColumns = `id, url, description, secrets, previous_until, types, format, enabled,
    disabled_reason, from_config, created_at, updated_at`

type endpointRow struct {
	ID             int64      `db:"id"`
	URL            string     `db:"url"`
	Description    string     `db:"description"`
	Secrets        []string   `db:"secrets"`
	PreviousUntil  *time.Time `db:"previous_until"`
	Types          []string   `db:"types"`
	Format         string     `db:"format"`
	Enabled        bool       `db:"enabled"`
	DisabledReason string     `db:"disabled_reason"`
	FromConfig     bool       `db:"from_config"`
	CreatedAt      time.Time  `db:"created_at"`
	UpdatedAt      time.Time  `db:"updated_at"`
}

func (r endpointRow) endpoint() callstate.WebhookEndpoint {
	e := callstate.WebhookEndpoint{ID: r.ID, URL: r.URL, Description: r.Description, Secrets: r.Secrets,
		PreviousUntil: deref(r.PreviousUntil), Types: r.Types, Format: r.Format, Enabled: r.Enabled,
		DisabledReason: r.DisabledReason, FromConfig: r.FromConfig, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if !e.PreviousUntil.IsZero() && time.Now().After(e.PreviousUntil) && len(e.Secrets) > 1 {
		e.Secrets = e.Secrets[:1] // the rotated-out secret signs no more
	}
	return e
}

func (s *Store) endpoints(ctx context.Context, what, where string, args ...any) ([]callstate.WebhookEndpoint, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoint `+where, args...)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[endpointRow])
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, readErr(err))
	}
	out := make([]callstate.WebhookEndpoint, len(rs))
	for i, r := range rs {
		out[i] = r.endpoint()
	}
	return out, nil
}

func (s *Store) endpoint(ctx context.Context, what, sql string, args ...any) (callstate.WebhookEndpoint, error) {
	rows, _ := s.pool.Query(ctx, sql, args...)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[endpointRow])
	if errors.Is(err, pgx.ErrNoRows) {
		return callstate.WebhookEndpoint{}, fmt.Errorf("store: %s: %w", what, ErrNotFound)
	}
	if err != nil {
		return callstate.WebhookEndpoint{}, fmt.Errorf("store: %s: %w", what, readErr(err))
	}
	return r.endpoint(), nil
}

// Webhooks returns every endpoint, by id.
func (s *Store) Webhooks(ctx context.Context) ([]callstate.WebhookEndpoint, error) {
	return s.endpoints(ctx, "webhooks", `ORDER BY id`)
}

// Webhook returns endpoint id, or an error wrapping ErrNotFound.
func (s *Store) Webhook(ctx context.Context, id int64) (callstate.WebhookEndpoint, error) {
	return s.endpoint(ctx, fmt.Sprintf("webhook %d", id), `SELECT `+endpointColumns+` FROM webhook_endpoint WHERE id = $1`, id)
}

// CreateWebhook adds an endpoint (its ID, times and FromConfig are set
// here) and returns it. It receives the events that come after.
func (s *Store) CreateWebhook(ctx context.Context, e callstate.WebhookEndpoint) (callstate.WebhookEndpoint, error) {
	return s.endpoint(ctx, "create webhook", `
INSERT INTO webhook_endpoint (url, description, secrets, types, format, enabled, cursor)
VALUES ($1, $2, $3, $4, $5, $6, (SELECT head FROM call_feed_head))
RETURNING `+endpointColumns, e.URL, e.Description, e.Secrets, nonNil(e.Types), e.Format, e.Enabled)
}

// UpdateWebhook sets an endpoint's URL, description, types, format and
// whether it is enabled (enabling it clears why it was disabled), and
// returns it; an error wrapping ErrNotFound when there is none.
func (s *Store) UpdateWebhook(ctx context.Context, e callstate.WebhookEndpoint) (callstate.WebhookEndpoint, error) {
	return s.endpoint(ctx, fmt.Sprintf("update webhook %d", e.ID), `
UPDATE webhook_endpoint SET url = $2, description = $3, types = $4, format = $5, enabled = $6,
    disabled_reason = CASE WHEN $6 THEN '' ELSE disabled_reason END, updated_at = now()
WHERE id = $1
RETURNING `+endpointColumns, e.ID, e.URL, e.Description, nonNil(e.Types), e.Format, e.Enabled)
}

// DeleteWebhook deletes an endpoint with its deliveries; an error wrapping
// ErrNotFound when there is none.
func (s *Store) DeleteWebhook(ctx context.Context, id int64) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_endpoint WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: delete webhook %d: %w", id, readErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: delete webhook %d: %w", id, ErrNotFound)
	}
	return nil
}

// RotateWebhookSecret makes secret the endpoint's secret; the one before
// keeps signing too (a second signature) for keepOld.
func (s *Store) RotateWebhookSecret(ctx context.Context, id int64, secret string, keepOld time.Duration) (callstate.WebhookEndpoint, error) {
	return s.endpoint(ctx, fmt.Sprintf("rotate webhook %d", id), `
UPDATE webhook_endpoint SET secrets = ARRAY[$2::text, secrets[1]], previous_until = now() + $3::interval, updated_at = now()
WHERE id = $1
RETURNING `+endpointColumns, id, secret, keepOld)
}

// ConfigWebhook makes the endpoint of the configuration (EVENTS_WEBHOOK_*)
// be e, enabled, and returns it with why it was disabled before ("" when
// it was not). With e.URL empty it deletes that endpoint instead.
func (s *Store) ConfigWebhook(ctx context.Context, e callstate.WebhookEndpoint) (callstate.WebhookEndpoint, string, error) {
	if e.URL == "" {
		if _, err := s.pool.Exec(ctx, `DELETE FROM webhook_endpoint WHERE from_config`); err != nil {
			return e, "", fmt.Errorf("store: config webhook: %w", readErr(err))
		}
		return e, "", nil
	}
	var was string
	err := s.pool.QueryRow(ctx, `SELECT coalesce((SELECT disabled_reason FROM webhook_endpoint WHERE from_config AND NOT enabled), '')`).Scan(&was)
	if err != nil {
		return e, "", fmt.Errorf("store: config webhook: %w", readErr(err))
	}
	ep, err := s.endpoint(ctx, "config webhook", `
INSERT INTO webhook_endpoint (url, description, secrets, types, format, enabled, from_config, cursor)
VALUES ($1, 'EVENTS_WEBHOOK_URL', $2, $3, $4, true, true, (SELECT head FROM call_feed_head))
ON CONFLICT (from_config) WHERE from_config DO UPDATE SET
    url = EXCLUDED.url, types = EXCLUDED.types, format = EXCLUDED.format, enabled = true, disabled_reason = '',
    secrets = CASE WHEN webhook_endpoint.secrets[1] = EXCLUDED.secrets[1] THEN webhook_endpoint.secrets ELSE EXCLUDED.secrets END,
    updated_at = now()
RETURNING `+endpointColumns, e.URL, e.Secrets, nonNil(e.Types), e.Format)
	return ep, was, err
}

// deliveryBatch bounds the feed events one transaction turns into
// deliveries for an endpoint.
const deliveryBatch = 500

// MakeDeliveries turns the feed's events after each enabled endpoint's
// cursor into its deliveries, with render (false: the endpoint gets
// nothing for that event), and moves the cursor; an endpoint another
// instance is doing meanwhile is left to it. It returns how many
// deliveries it made.
func (s *Store) MakeDeliveries(ctx context.Context, render func(callstate.WebhookEndpoint, callstate.FeedEvent) (callstate.WebhookDelivery, bool)) (int, error) {
	var ids []int64
	rows, _ := s.pool.Query(ctx, `
SELECT e.id FROM webhook_endpoint e
WHERE e.enabled AND (e.cursor < (SELECT head FROM call_feed_head) OR e.backfill_upto IS NOT NULL)`)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("store: make deliveries: %w", readErr(err))
	}
	total := 0
	for _, id := range ids {
		for {
			n, more, err := s.makeDeliveries(ctx, id, render)
			total += n
			if err != nil {
				return total, fmt.Errorf("store: make deliveries for webhook %d: %w", id, readErr(err))
			}
			if !more {
				break
			}
		}
	}
	return total, nil
}

func (s *Store) makeDeliveries(ctx context.Context, id int64, render func(callstate.WebhookEndpoint, callstate.FeedEvent) (callstate.WebhookDelivery, bool)) (n int, more bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+endpointColumns+`, cursor, backfill_since, backfill_after, backfill_upto
FROM webhook_endpoint WHERE id = $1 AND enabled FOR UPDATE SKIP LOCKED`, id)
		type row struct {
			endpointRow
			Cursor        int64      `db:"cursor"`
			BackfillSince *time.Time `db:"backfill_since"`
			BackfillAfter *int64     `db:"backfill_after"`
			BackfillUpto  *int64     `db:"backfill_upto"`
		}
		r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[row])
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // another instance is at it, or it was disabled
		}
		if err != nil {
			return err
		}
		ep := r.endpoint()
		if r.BackfillUpto != nil {
			n, err = s.backfill(ctx, tx, ep, r.BackfillSince, *r.BackfillAfter, *r.BackfillUpto, render)
			more = true // then the new events, in the next transaction
			return err
		}
		evs, err := s.readFeed(ctx, tx, r.Cursor, deliveryBatch)
		if err != nil || len(evs) == 0 {
			return err
		}
		var ds [][]any
		for _, ev := range evs {
			d, ok := render(ep, ev)
			if !ok {
				continue
			}
			ds = append(ds, []any{id, ev.ID, d.MsgID, d.JourneyID, d.OrderKey, d.Type, d.Body, d.ContentType})
		}
		if len(ds) > 0 {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"webhook_delivery"},
				[]string{"endpoint_id", "feed_id", "msg_id", "journey_id", "order_key", "type", "body", "content_type"},
				pgx.CopyFromRows(ds)); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE webhook_endpoint SET cursor = $2 WHERE id = $1`, id, evs[len(evs)-1].ID); err != nil {
			return err
		}
		n, more = len(ds), len(evs) == deliveryBatch
		return nil
	})
	return n, more, err
}

// backfill makes, in tx, the deliveries of one chunk of the endpoint's
// backfill (ids after after up to upto, written since since) that the
// endpoint never had, in feed order, and moves the backfill on or ends it.
func (s *Store) backfill(ctx context.Context, tx pgx.Tx, ep callstate.WebhookEndpoint, since *time.Time, after, upto int64,
	render func(callstate.WebhookEndpoint, callstate.FeedEvent) (callstate.WebhookDelivery, bool)) (int, error) {
	// The first event written since since, by the feed's order: ids follow
	// the writes but for a late commit's few milliseconds.
	if after == 0 && since != nil {
		var first *int64
		if err := tx.QueryRow(ctx, `
SELECT min(i.id) FROM call_feed f JOIN call_feed_id i ON i.seq = f.seq
WHERE f.created_at >= $1 AND i.id <= $2`, *since, upto).Scan(&first); err != nil {
			return 0, err
		}
		if first == nil {
			after = upto
		} else {
			after = *first - 1
		}
	}
	var evs []callstate.FeedEvent
	if after < upto {
		var err error
		if evs, err = s.readFeedOf(ctx, tx, after, upto, deliveryBatch, nil); err != nil {
			return 0, err
		}
	}
	var ds [][]any
	if len(evs) > 0 {
		rows, _ := tx.Query(ctx, `SELECT feed_id FROM webhook_delivery WHERE endpoint_id = $1 AND feed_id > $2 AND feed_id <= $3`,
			ep.ID, after, evs[len(evs)-1].ID)
		had, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return 0, err
		}
		have := make(map[int64]bool, len(had))
		for _, id := range had {
			have[id] = true
		}
		for _, ev := range evs {
			if have[ev.ID] {
				continue
			}
			d, ok := render(ep, ev)
			if !ok {
				continue
			}
			ds = append(ds, []any{ep.ID, ev.ID, d.MsgID, d.JourneyID, d.OrderKey, d.Type, d.Body, d.ContentType})
		}
		if len(ds) > 0 {
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"webhook_delivery"},
				[]string{"endpoint_id", "feed_id", "msg_id", "journey_id", "order_key", "type", "body", "content_type"},
				pgx.CopyFromRows(ds)); err != nil {
				return 0, err
			}
		}
	}
	if len(evs) < deliveryBatch {
		_, err := tx.Exec(ctx, `UPDATE webhook_endpoint SET backfill_since = NULL, backfill_after = NULL, backfill_upto = NULL WHERE id = $1`, ep.ID)
		return len(ds), err
	}
	_, err := tx.Exec(ctx, `UPDATE webhook_endpoint SET backfill_after = $2 WHERE id = $1`, ep.ID, evs[len(evs)-1].ID)
	return len(ds), err
}

const deliveryColumns = `d.id, d.endpoint_id, d.feed_id, d.msg_id, d.journey_id, d.order_key, d.type, d.body, d.content_type,
    d.status, d.attempts, d.next_at, d.last_status, d.last_error, d.delivered_at, d.created_at`

type deliveryRow struct {
	ID          int64      `db:"id"`
	EndpointID  int64      `db:"endpoint_id"`
	FeedID      int64      `db:"feed_id"`
	MsgID       string     `db:"msg_id"`
	JourneyID   string     `db:"journey_id"`
	OrderKey    string     `db:"order_key"`
	Type        string     `db:"type"`
	Body        []byte     `db:"body"`
	ContentType string     `db:"content_type"`
	Status      string     `db:"status"`
	Attempts    int        `db:"attempts"`
	NextAt      time.Time  `db:"next_at"`
	LastStatus  int        `db:"last_status"`
	LastError   string     `db:"last_error"`
	DeliveredAt *time.Time `db:"delivered_at"`
	CreatedAt   time.Time  `db:"created_at"`
}

func (r deliveryRow) delivery() callstate.WebhookDelivery {
	return callstate.WebhookDelivery{ID: r.ID, EndpointID: r.EndpointID, FeedID: r.FeedID, MsgID: r.MsgID,
		JourneyID: r.JourneyID, OrderKey: r.OrderKey, Type: r.Type, Body: r.Body, ContentType: r.ContentType,
		Status: r.Status, Attempts: r.Attempts, NextAt: r.NextAt, LastStatus: r.LastStatus, LastError: r.LastError,
		DeliveredAt: deref(r.DeliveredAt), CreatedAt: r.CreatedAt}
}

// claimWindow bounds the due deliveries one claim looks at.
const claimWindow = 1024

// dueWindowSQL is the first $1 due deliveries in webhook_delivery_due_idx's
// order (due), each with its call's first waiting delivery (first): the
// first row of webhook_delivery_order_idx for its endpoint and order key,
// one probe whatever the planner's statistics say. Migration 032: the due
// index's predicate names attempts, so that the probe cannot use it; with
// statistics from a quiet moment the planner read every waiting delivery
// for each due one, 104 s for a claim with 15,000 waiting
// (TestClaimWithStaleStatistics).
const dueWindowSQL = `
WITH due AS MATERIALIZED (
    SELECT d.id, d.endpoint_id, d.order_key, d.next_at, e.enabled FROM webhook_delivery d
    JOIN webhook_endpoint e ON e.id = d.endpoint_id
    WHERE d.status = 'pending' AND d.attempts >= 0 AND d.next_at <= now()
    ORDER BY d.next_at, d.id
    LIMIT $1
), first AS MATERIALIZED (
    SELECT due.id, due.next_at, due.enabled, f.id AS first_id, f.next_at AS first_at, f.failed AS first_failed
    FROM due CROSS JOIN LATERAL (
        SELECT p.id, p.next_at, p.last_status <> 0 OR p.last_error <> '' AS failed FROM webhook_delivery p
        WHERE p.endpoint_id = due.endpoint_id AND p.order_key = due.order_key AND p.status = 'pending'
        ORDER BY p.id LIMIT 1) f
)`

// moveBehindSQL moves the due deliveries of the window whose call's first
// waiting delivery comes later, having failed (waiting to be tried again,
// or being tried again) or being tried for over a second, behind it: their
// next_at becomes that one's. They could not be sent before it anyway;
// FinishDeliveries brings them forward when it is done. Behind a first try
// of less than a second (its lease, $2, began less than a second ago)
// nothing is moved: most are over in milliseconds, and moving what waits
// behind them and back would cost two writes each.
// Those of a disabled endpoint are looked at again in an hour; enabling
// it brings them forward (migration 033).
//
// The first one is locked with it, and both must be as the window saw
// them: a first one that was delivered meanwhile (and brought forward
// what waited behind it then) leaves the row where it is.
const moveBehindSQL = dueWindowSQL + `, behind AS (
    SELECT w.id, CASE WHEN f.enabled THEN f.first_at ELSE now() + interval '1 hour' END AS next_at
    FROM first f
    JOIN webhook_delivery w ON w.id = f.id
    JOIN webhook_delivery h ON h.id = f.first_id
    WHERE (NOT f.enabled OR (f.first_id <> f.id AND f.first_at > f.next_at
                             AND (f.first_failed OR f.first_at < now() + $2::interval - interval '1 second')))
      AND w.status = 'pending' AND w.next_at = f.next_at
      AND h.status = 'pending' AND h.next_at = f.first_at
    FOR UPDATE OF w SKIP LOCKED
    FOR SHARE OF h SKIP LOCKED
)
UPDATE webhook_delivery w SET next_at = b.next_at FROM behind b WHERE w.id = b.id`

// moveEvery is how often a Store moves the due deliveries that wait behind
// their call's first one (moveBehindSQL) when the last time found few.
const moveEvery = time.Second

// moveBehindState is when ClaimDeliveries last moved deliveries, and
// whether that filled its windows (then it moves again at the next claim).
type moveBehindState struct {
	sync.Mutex
	at   time.Time
	more bool
}

// due says whether a claim should move deliveries first, and if so notes
// that it does.
func (m *moveBehindState) due(now time.Time) bool {
	m.Lock()
	defer m.Unlock()
	if !m.more && now.Sub(m.at) < moveEvery {
		return false
	}
	m.at, m.more = now, false
	return true
}

// ClaimDeliveries takes up to limit due deliveries of enabled endpoints
// that no other instance holds and whose call has no earlier delivery
// waiting, and leases them for lease: until then nobody else takes them.
// Their Attempts counts this try.
//
// It first moves the due deliveries that wait behind their call's first
// one out of the way (moveBehindSQL), a window at a time, up to 16, and
// then takes the first ones of the next window: so an endpoint that is
// down costs a claim a few windows, not its whole backlog, and the
// deliveries of other calls behind a failing one are still sent
// (TestClaimBehindAFailingOne). Moving is done once a second, or at every
// claim while it fills its windows: with endpoints that answer, there is
// mostly nothing to move, and looking costs as much as the claim.
func (s *Store) ClaimDeliveries(ctx context.Context, limit int, lease time.Duration) ([]callstate.ClaimedDelivery, error) {
	if s.moves.due(time.Now()) {
		for i := range 16 {
			tag, err := s.pool.Exec(ctx, moveBehindSQL, claimWindow, lease)
			if err != nil {
				s.moves.Lock()
				s.moves.at = time.Time{} // try again at the next claim
				s.moves.Unlock()
				return nil, fmt.Errorf("store: claim deliveries: %w", readErr(err))
			}
			if tag.RowsAffected() < claimWindow/2 {
				break
			}
			if i == 15 {
				s.moves.Lock()
				s.moves.more = true
				s.moves.Unlock()
			}
		}
	}
	rows, _ := s.pool.Query(ctx, dueWindowSQL+`, c AS (
    SELECT w.id FROM webhook_delivery w
    JOIN first f ON f.id = w.id AND f.first_id = w.id
    JOIN webhook_endpoint e ON e.id = w.endpoint_id AND e.enabled
    WHERE w.status = 'pending' AND w.next_at <= now()
    ORDER BY w.next_at, w.id
    LIMIT $2
    FOR UPDATE OF w SKIP LOCKED
), d AS (
    UPDATE webhook_delivery d SET next_at = now() + $3::interval, attempts = d.attempts + 1
    FROM c WHERE d.id = c.id
    RETURNING d.*
)
SELECT `+deliveryColumns+`, `+prefixed("e.", endpointColumns)+`
FROM d JOIN webhook_endpoint e ON e.id = d.endpoint_id
ORDER BY d.id`, claimWindow, limit, lease)
	var out []callstate.ClaimedDelivery
	var dr deliveryRow
	var er endpointRow
	_, err := pgx.ForEachRow(rows, []any{&dr.ID, &dr.EndpointID, &dr.FeedID, &dr.MsgID, &dr.JourneyID, &dr.OrderKey,
		&dr.Type, &dr.Body, &dr.ContentType, &dr.Status, &dr.Attempts, &dr.NextAt, &dr.LastStatus, &dr.LastError,
		&dr.DeliveredAt, &dr.CreatedAt,
		&er.ID, &er.URL, &er.Description, &er.Secrets, &er.PreviousUntil, &er.Types, &er.Format, &er.Enabled,
		&er.DisabledReason, &er.FromConfig, &er.CreatedAt, &er.UpdatedAt}, func() error {
		out = append(out, callstate.ClaimedDelivery{Delivery: dr.delivery(), Endpoint: er.endpoint()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim deliveries: %w", readErr(err))
	}
	return out, nil
}

// prefixed puts p before each of a column list's names.
func prefixed(p, cols string) string {
	var out []byte
	start := true
	for i := 0; i < len(cols); i++ {
		c := cols[i]
		if start && c != ' ' && c != '\n' && c != ',' {
			out = append(out, p...)
			start = false
		}
		if c == ',' {
			start = true
		}
		out = append(out, c)
	}
	return string(out)
}

// bringForwardSQL makes the deliveries a claim moved behind a call's first
// waiting one due again, once that one is done: it reads the call's few
// deliveries in webhook_delivery_order_idx and writes only those moved. It
// does not name attempts, so that it cannot use webhook_delivery_due_idx
// (migration 032).
const bringForwardSQL = `
UPDATE webhook_delivery SET next_at = now()
WHERE endpoint_id = $1 AND order_key = $2 AND status = 'pending' AND next_at > now()`

// FinishDeliveries records the tries of claimed deliveries, in one
// transaction: each try, and what became of its delivery (delivered, to
// be tried again at NextAt, failed), and disables endpoints whose result
// says so.
func (s *Store) FinishDeliveries(ctx context.Context, ds []callstate.WebhookDelivery, rs []callstate.WebhookResult) error {
	b := &pgx.Batch{}
	for i, d := range ds {
		r := rs[i]
		a := r.Attempt
		b.Queue(`INSERT INTO webhook_attempt (delivery_id, at, status, error, duration_ms) VALUES ($1, $2, $3, $4, $5)`,
			d.ID, a.At, a.Status, a.Error, a.Duration.Milliseconds())
		switch {
		case r.Delivered:
			b.Queue(`UPDATE webhook_delivery SET status = 'delivered', delivered_at = $2, last_status = $3, last_error = '' WHERE id = $1`,
				d.ID, a.At, a.Status)
			b.Queue(bringForwardSQL, d.EndpointID, d.OrderKey)
		case r.NextAt.IsZero():
			b.Queue(`UPDATE webhook_delivery SET status = 'failed', last_status = $2, last_error = $3 WHERE id = $1`,
				d.ID, a.Status, a.Error)
			b.Queue(bringForwardSQL, d.EndpointID, d.OrderKey)
		default:
			b.Queue(`UPDATE webhook_delivery SET next_at = $2, last_status = $3, last_error = $4 WHERE id = $1`,
				d.ID, r.NextAt, a.Status, a.Error)
		}
		if r.Disable != "" {
			b.Queue(`UPDATE webhook_endpoint SET enabled = false, disabled_reason = $2, updated_at = now() WHERE id = $1 AND enabled`,
				d.EndpointID, r.Disable)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("store: finish deliveries: %w", readErr(err))
	}
	return nil
}

// WebhookDeliveries returns an endpoint's last deliveries, newest first, at
// most limit; status "" for any.
func (s *Store) WebhookDeliveries(ctx context.Context, endpointID int64, status string, limit int) ([]callstate.WebhookDelivery, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+deliveryColumns+` FROM webhook_delivery d
WHERE d.endpoint_id = $1 AND ($2 = '' OR d.status = $2) ORDER BY d.id DESC LIMIT $3`, endpointID, status, limit)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[deliveryRow])
	if err != nil {
		return nil, fmt.Errorf("store: webhook %d deliveries: %w", endpointID, readErr(err))
	}
	out := make([]callstate.WebhookDelivery, len(rs))
	for i, r := range rs {
		out[i] = r.delivery()
	}
	return out, nil
}

// WebhookAttempts returns a delivery's tries, oldest first.
func (s *Store) WebhookAttempts(ctx context.Context, deliveryID int64) ([]callstate.WebhookAttempt, error) {
	rows, _ := s.pool.Query(ctx, `SELECT delivery_id, at, status, error, duration_ms FROM webhook_attempt
WHERE delivery_id = $1 ORDER BY at`, deliveryID)
	var out []callstate.WebhookAttempt
	var a callstate.WebhookAttempt
	var ms int64
	_, err := pgx.ForEachRow(rows, []any{&a.DeliveryID, &a.At, &a.Status, &a.Error, &ms}, func() error {
		a.Duration = time.Duration(ms) * time.Millisecond
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: delivery %d attempts: %w", deliveryID, readErr(err))
	}
	return out, nil
}

// ReplayWebhook sends again the endpoint's deliveries made since since
// that failed (every try of the schedule) or wait, from now, with their
// ids and bodies, and returns how many. It also asks for a backfill: the
// feed's events written since since that the endpoint never had a
// delivery of (those from before it existed, or from while it was
// disabled), as far back as the feed keeps them, become deliveries, in
// feed order, made by any instance's sender (MakeDeliveries) after this
// returns. An error wraps ErrNotFound when there is no such endpoint.
func (s *Store) ReplayWebhook(ctx context.Context, endpointID int64, since time.Time) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
UPDATE webhook_endpoint SET backfill_since = $2, backfill_after = 0, backfill_upto = cursor WHERE id = $1`, endpointID, since)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("webhook %d: %w", endpointID, ErrNotFound)
		}
		tag, err = tx.Exec(ctx, `
UPDATE webhook_delivery SET status = 'pending', next_at = now(), attempts = 0, last_error = ''
WHERE endpoint_id = $1 AND created_at >= $2 AND status <> 'delivered'`, endpointID, since)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: replay webhook %d: %w", endpointID, readErr(err))
	}
	return n, nil
}

// QueueWebhookMessage adds a delivery that no feed event made (a test
// message) and returns it.
func (s *Store) QueueWebhookMessage(ctx context.Context, d callstate.WebhookDelivery) (callstate.WebhookDelivery, error) {
	rows, _ := s.pool.Query(ctx, `
INSERT INTO webhook_delivery AS d (endpoint_id, feed_id, msg_id, journey_id, order_key, type, body, content_type)
VALUES ($1, 0, $2, '', $3, $4, $5, $6)
RETURNING `+deliveryColumns, d.EndpointID, d.MsgID, d.OrderKey, d.Type, d.Body, d.ContentType)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[deliveryRow])
	if err != nil {
		return d, fmt.Errorf("store: queue webhook message: %w", classify(readErr(err)))
	}
	return r.delivery(), nil
}

// ForgetWebhookDeliveries deletes deliveries made before cutoff, with their
// tries, and returns how many.
func (s *Store) ForgetWebhookDeliveries(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_delivery WHERE id IN (
    SELECT id FROM webhook_delivery WHERE created_at < $1 ORDER BY created_at LIMIT $2)`, cutoff, forgetBatch)
		if err != nil {
			return total, fmt.Errorf("store: forget webhook deliveries: %w", readErr(err))
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < forgetBatch {
			return total, nil
		}
	}
}
