package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// leaseLock serialises lease claims of all instances.
const leaseLock = 0x63616c6c6c656173 // "calllease"

// ClaimExtensions is one heartbeat of instance: it records that instance
// is alive, keeps (renews for ttl) the enabled extensions it holds, takes
// free or expired ones, and gives back any beyond its fair share (the
// enabled extensions divided by the instances seen within ttl, rounded up),
// so that a joining instance gets its part. It returns the extensions
// instance now holds, sorted. Claims of all instances are serialised.
func (s *Store) ClaimExtensions(ctx context.Context, instance string, ttl time.Duration) ([]string, error) {
	var held []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(leaseLock)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
INSERT INTO callstate_instance (id) VALUES ($1)
ON CONFLICT (id) DO UPDATE SET seen_at = now()`, instance); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM callstate_instance WHERE seen_at < now() - $1::interval * 10`, ttl); err != nil {
			return err
		}
		var share int
		if err := tx.QueryRow(ctx, `
SELECT ceil((SELECT count(*) FROM sip_extension WHERE enabled)::numeric
            / greatest((SELECT count(*) FROM callstate_instance WHERE seen_at > now() - $1::interval), 1))::int`,
			ttl).Scan(&share); err != nil {
			return err
		}
		// Give back what is disabled, and what is over the share.
		if _, err := tx.Exec(ctx, `
UPDATE sip_extension SET owner = '', lease_until = NULL
WHERE owner = $1 AND (NOT enabled OR extension NOT IN (
    SELECT extension FROM sip_extension
    WHERE owner = $1 AND enabled AND lease_until > now()
    ORDER BY extension LIMIT $2))`, instance, share); err != nil {
			return err
		}
		// Renew what is kept, then take free or expired ones up to the share.
		if _, err := tx.Exec(ctx, `
UPDATE sip_extension SET lease_until = now() + $2::interval WHERE owner = $1`, instance, ttl); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
UPDATE sip_extension SET owner = $1, lease_until = now() + $2::interval
WHERE extension IN (
    SELECT extension FROM sip_extension
    WHERE enabled AND owner <> $1 AND (owner = '' OR lease_until IS NULL OR lease_until < now())
    ORDER BY extension
    LIMIT greatest($3 - (SELECT count(*) FROM sip_extension WHERE owner = $1), 0))`,
			instance, ttl, share); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT extension FROM sip_extension WHERE owner = $1 ORDER BY extension`, instance)
		var err error
		held, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim extensions instance=%s: %w", instance, readErr(err))
	}
	return held, nil
}

// ReleaseExtensions gives back every extension instance holds and forgets
// the instance, so that others take over at once; for a clean shutdown.
func (s *Store) ReleaseExtensions(ctx context.Context, instance string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE sip_extension SET owner = '', lease_until = NULL WHERE owner = $1`, instance); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM callstate_instance WHERE id = $1`, instance)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: release extensions instance=%s: %w", instance, readErr(err))
	}
	return nil
}
