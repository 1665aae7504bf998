package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// ErrBadCursor is callstate.ErrBadCursor, returned wrapped by ListCalls for
// a cursor it did not make.
var ErrBadCursor = callstate.ErrBadCursor

// MaxListLimit bounds CallFilter.Limit; DefaultListLimit is used for 0.
const (
	MaxListLimit     = 1000
	DefaultListLimit = 100
)

// ListCalls returns a page of the calls that f selects (the zero filter
// selects every call; Since compares with updated_at; Limit is 1 to
// MaxListLimit, 0 meaning DefaultListLimit), newest first (by id),
// and the cursor of the next page, empty after the last. Paging is by key,
// so rows written meanwhile neither repeat nor shift a page. It returns an
// error wrapping ErrBadCursor for a cursor it did not make.
func (s *Store) ListCalls(ctx context.Context, f callstate.CallFilter) ([]callstate.Call, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Active {
		where = append(where, `state IN ('ringing', 'answered')`)
	}
	if !f.Since.IsZero() {
		where = append(where, `updated_at >= `+arg(f.Since))
	}
	if f.Extension != "" {
		where = append(where, `extension = `+arg(f.Extension))
	}
	if f.Source != "" {
		where = append(where, `source = `+arg(string(f.Source)))
	}
	if f.Cursor != "" {
		after, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("store: list calls: %w", readErr(err))
		}
		where = append(where, `id < `+arg(after))
	}
	q := `SELECT ` + callColumns + ` FROM call_state`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY id DESC LIMIT ` + arg(limit+1)
	rows, _ := s.pool.Query(ctx, q, args...)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[callRow])
	if err != nil {
		return nil, "", fmt.Errorf("store: list calls: %w", readErr(err))
	}
	next := ""
	if len(rs) > limit {
		rs = rs[:limit]
		next = encodeCursor(rs[limit-1].ID)
	}
	calls := make([]callstate.Call, 0, len(rs))
	for _, r := range rs {
		c, err := r.call()
		if err != nil {
			return nil, "", err
		}
		calls = append(calls, c)
	}
	return calls, next, nil
}

// cursorPrefix versions the cursor's format.
const cursorPrefix = "c1:"

func encodeCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(id, 10)))
}

func decodeCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || !strings.HasPrefix(string(b), cursorPrefix) {
		return 0, ErrBadCursor
	}
	id, err := strconv.ParseInt(strings.TrimPrefix(string(b), cursorPrefix), 10, 64)
	if err != nil || id < 0 {
		return 0, ErrBadCursor
	}
	return id, nil
}

// CallByID returns the call with the store's number id and its journal,
// oldest event first. It returns an error wrapping ErrNotFound when there is
// no such call.
func (s *Store) CallByID(ctx context.Context, id int64) (callstate.Call, []callstate.JournalEntry, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+callColumns+` FROM call_state WHERE id = $1`, id)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[callRow])
	if errors.Is(err, pgx.ErrNoRows) {
		return callstate.Call{}, nil, fmt.Errorf("store: call id=%d: %w", id, ErrNotFound)
	}
	if err != nil {
		return callstate.Call{}, nil, fmt.Errorf("store: call id=%d: %w", id, readErr(err))
	}
	c, err := r.call()
	if err != nil {
		return callstate.Call{}, nil, err
	}
	j, err := s.Journal(ctx, c.Source, c.Key)
	if err != nil {
		return callstate.Call{}, nil, err
	}
	return c, j, nil
}

type changedRow struct {
	callRow
	Seq int64 `db:"change_seq"`
}

func (s *Store) changedCalls(ctx context.Context, what, q string, args ...any) ([]callstate.ChangedCall, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+callColumns+`, change_seq FROM call_state `+q, args...)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[changedRow])
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, readErr(err))
	}
	out := make([]callstate.ChangedCall, 0, len(rs))
	for _, r := range rs {
		c, err := r.call()
		if err != nil {
			return nil, err
		}
		out = append(out, callstate.ChangedCall{Seq: r.Seq, Call: c})
	}
	return out, nil
}

// CallsByID returns the calls with the given ids as they are now, by
// change_seq. Ids without a call are left out.
func (s *Store) CallsByID(ctx context.Context, ids []int64) ([]callstate.ChangedCall, error) {
	return s.changedCalls(ctx, "calls by id", `WHERE id = ANY ($1) ORDER BY change_seq`, ids)
}

// CallsChangedAfter returns at most limit calls whose last write has a
// change_seq greater than seq, as they are now, by change_seq.
func (s *Store) CallsChangedAfter(ctx context.Context, seq int64, limit int) ([]callstate.ChangedCall, error) {
	return s.changedCalls(ctx, "calls changed", `WHERE change_seq > $1 ORDER BY change_seq LIMIT $2`, seq, limit)
}

// RecentCalls returns the active calls and the n calls changed last, as
// they are now, by change_seq: what a board shows when it starts.
func (s *Store) RecentCalls(ctx context.Context, n int) ([]callstate.ChangedCall, error) {
	return s.changedCalls(ctx, "recent calls", `
WHERE id IN (
    SELECT id FROM call_state WHERE state IN ('ringing', 'answered')
    UNION
    (SELECT id FROM call_state ORDER BY change_seq DESC LIMIT $1)
)
ORDER BY change_seq`, n)
}

// LastChange returns the highest change_seq written so far, 0 for none.
func (s *Store) LastChange(ctx context.Context) (int64, error) {
	var seq int64
	err := s.pool.QueryRow(ctx, `
SELECT GREATEST(
    (SELECT coalesce(max(change_seq), 0) FROM call_state),
    (SELECT coalesce(max(change_seq), 0) FROM sip_extension))`).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("store: last change: %w", readErr(err))
	}
	return seq, nil
}

// lampRow is one row of the lamp view as pgx scans it by name.
type lampRow struct {
	Source      string    `db:"source" json:"source"`
	Extension   string    `db:"extension" json:"extension"`
	Name        string    `db:"name" json:"name"`
	Lamp        string    `db:"lamp" json:"lamp"`
	ActiveCalls int64     `db:"active_calls" json:"active_calls"`
	UpdatedAt   time.Time `db:"updated_at" json:"updated_at"`
}

// LampStatuses returns the lamp view: every PBX extension and sipgate user,
// by source and extension.
func (s *Store) LampStatuses(ctx context.Context) ([]callstate.LampStatus, error) {
	rows, _ := s.pool.Query(ctx, `
SELECT source, extension, name, lamp, active_calls, updated_at
FROM lamp ORDER BY source, extension`)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[lampRow])
	if err != nil {
		return nil, fmt.Errorf("store: lamp statuses: %w", readErr(err))
	}
	ls := make([]callstate.LampStatus, len(rs))
	for i, r := range rs {
		ls[i] = r.status()
	}
	return ls, nil
}

func (r lampRow) status() callstate.LampStatus {
	return callstate.LampStatus{Source: callstate.Source(r.Source), Extension: r.Extension, Name: r.Name,
		Lamp: r.Lamp, ActiveCalls: r.ActiveCalls, UpdatedAt: r.UpdatedAt}
}
