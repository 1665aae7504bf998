package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// ClaimReconcile takes or renews, for ttl, the lease named name for owner
// and reports whether owner holds it: one instance reconciles with sipgate
// at a time. A lease not renewed within its ttl goes to the next instance
// that asks.
func (s *Store) ClaimReconcile(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	var holder string
	err := s.pool.QueryRow(ctx, `
INSERT INTO reconcile_lease AS l (name, owner, lease_until) VALUES ($1, $2, now() + $3::interval)
ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until
    WHERE l.owner = EXCLUDED.owner OR l.lease_until < now()
RETURNING owner`, name, owner, ttl).Scan(&holder)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("store: claim reconcile lease %s: %w", name, readErr(err))
	}
	return holder == owner, nil
}

// ReleaseReconcile gives the lease named name back if owner holds it, so
// that another instance takes over at once.
func (s *Store) ReleaseReconcile(ctx context.Context, name, owner string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM reconcile_lease WHERE name = $1 AND owner = $2`, name, owner); err != nil {
		return fmt.Errorf("store: release reconcile lease %s: %w", name, readErr(err))
	}
	return nil
}

// ReconcileCursor returns where the walk named name has come and when it
// last advanced (on any instance); ok is false before its first step.
func (s *Store) ReconcileCursor(ctx context.Context, name string) (at, advanced time.Time, ok bool, err error) {
	err = s.pool.QueryRow(ctx, `SELECT position, updated_at FROM reconcile_cursor WHERE name = $1`, name).Scan(&at, &advanced)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return time.Time{}, time.Time{}, false, nil
	case err != nil:
		return time.Time{}, time.Time{}, false, fmt.Errorf("store: reconcile cursor %s: %w", name, readErr(err))
	}
	return at, advanced, true, nil
}

// AdvanceReconcileCursor moves the walk named name to at; it never moves
// back.
func (s *Store) AdvanceReconcileCursor(ctx context.Context, name string, at time.Time) error {
	if _, err := s.pool.Exec(ctx, `
INSERT INTO reconcile_cursor AS r (name, position) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET position = GREATEST(r.position, EXCLUDED.position), updated_at = now()`, name, at); err != nil {
		return fmt.Errorf("store: advance reconcile cursor %s: %w", name, readErr(err))
	}
	return nil
}

// CallsByKey returns the calls of source with the given keys, by key;
// keys without a call are left out.
func (s *Store) CallsByKey(ctx context.Context, source callstate.Source, keys []string) (map[string]callstate.Call, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+callColumns+` FROM call_state WHERE source = $1 AND call_key = ANY ($2)`, string(source), keys)
	calls, err := collectCalls(rows)
	if err != nil {
		return nil, fmt.Errorf("store: calls by key source=%s: %w", source, err)
	}
	out := make(map[string]callstate.Call, len(calls))
	for _, c := range calls {
		out[c.Key] = c
	}
	return out, nil
}

// LiveCalls returns, oldest first and at most limit of them, the calls of
// source still ringing or answered.
func (s *Store) LiveCalls(ctx context.Context, source callstate.Source, limit int) ([]callstate.Call, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+callColumns+` FROM call_state
		WHERE state IN ('ringing', 'answered') AND source = $1 ORDER BY id LIMIT $2`, string(source), limit)
	calls, err := collectCalls(rows)
	if err != nil {
		return nil, fmt.Errorf("store: active calls source=%s: %w", source, err)
	}
	return calls, nil
}

// Erased returns which of keys of source were erased ("callstate forget"):
// reconciliation must not create them again.
func (s *Store) Erased(ctx context.Context, source callstate.Source, keys []string) (map[string]bool, error) {
	rows, _ := s.pool.Query(ctx, `SELECT call_key FROM call_tombstone WHERE source = $1 AND call_key = ANY ($2)`, string(source), keys)
	ks, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: erased calls source=%s: %w", source, readErr(err))
	}
	out := make(map[string]bool, len(ks))
	for _, k := range ks {
		out[k] = true
	}
	return out, nil
}

// ForgottenNumbers returns, of the given number digests
// (callstate.NumberDigest), those of numbers erased by "callstate forget",
// with when.
func (s *Store) ForgottenNumbers(ctx context.Context, digests []string) (map[string]time.Time, error) {
	rows, _ := s.pool.Query(ctx, `SELECT digest, forgotten_at FROM forgotten_number WHERE digest = ANY ($1)`, digests)
	out := map[string]time.Time{}
	var (
		d  string
		at time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&d, &at}, func() error { out[d] = at; return nil }); err != nil {
		return nil, fmt.Errorf("store: forgotten numbers: %w", readErr(err))
	}
	return out, nil
}

// SetRingingStale makes d the time after which a ringing sipgate call with
// no news is no longer counted as waiting (callstate_setting
// ringing_stale_seconds; 0: never), see callstate.Call.NoNews and
// TeamDay.
func (s *Store) SetRingingStale(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("store: set ringing stale: %s is negative", d)
	}
	if _, err := s.pool.Exec(ctx, `
INSERT INTO callstate_setting (name, value) VALUES ('ringing_stale_seconds', $1)
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`, strconv.FormatFloat(d.Seconds(), 'f', -1, 64)); err != nil {
		return fmt.Errorf("store: set ringing stale: %w", readErr(err))
	}
	return nil
}
