package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The journal (call_event) has one partition a day of received_at, in UTC,
// named call_event_YYYYMMDD (migration 014). They are made ahead of time
// (JournalAheadDays), and on demand for an event of a day that has none (a
// spool's backlog older than the partitions kept); retention drops whole
// days (DropJournalBefore).

// JournalAheadDays is how many days after today EnsureJournalPartitions
// makes the journal's partitions for.
const JournalAheadDays = 7

// journalPartitionPrefix begins the name of each of the journal's partitions.
const journalPartitionPrefix = "call_event_"

// keyBatch bounds the dedup keys one statement of DropJournalBefore deletes.
const keyBatch = 10000

// dropLockTimeout bounds how long dropping a partition waits for the
// journal's readers and writers; they wait for the drop meanwhile.
const dropLockTimeout = 2 * time.Second

// utcDay returns the start of t's day in UTC.
func utcDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// EnsureJournalPartitions makes the journal's partitions from the day
// before now's to JournalAheadDays after it (UTC), those that are missing,
// and returns how many it made.
func (s *Store) EnsureJournalPartitions(ctx context.Context, now time.Time) (int, error) {
	today := utcDay(now)
	days := make([]time.Time, 0, JournalAheadDays+2)
	for i := -1; i <= JournalAheadDays; i++ {
		days = append(days, today.AddDate(0, 0, i))
	}
	n, err := s.ensurePartitions(ctx, days)
	if err != nil {
		return n, fmt.Errorf("store: make the journal's partitions: %w", readErr(err))
	}
	return n, nil
}

// ensurePartitions makes the journal's partitions of days (any time of
// each), those that are missing, and returns how many it made.
func (s *Store) ensurePartitions(ctx context.Context, days []time.Time) (int, error) {
	names := make([]string, len(days))
	for i, d := range days {
		names[i] = d.UTC().Format(time.DateOnly)
	}
	var n int
	err := s.pool.QueryRow(ctx, `
SELECT count(*) FILTER (WHERE callstate_journal_partition(d::date))
FROM unnest($1::text[]) d`, names).Scan(&n)
	return n, err
}

// isNoPartition reports whether err is PostgreSQL's for a row of a day
// the journal has no partition for.
func isNoPartition(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23514" && strings.HasPrefix(pgErr.Message, "no partition of relation")
}

// eventDays returns the receive times of batch's events.
func eventDays(batch []*applyReq) []time.Time {
	days := make([]time.Time, len(batch))
	for i, r := range batch {
		days[i] = r.ev.ReceivedAt
	}
	return days
}

// JournalPartition is one of the journal's partitions: the day (UTC) its
// events were received.
type JournalPartition struct {
	Name string
	Day  time.Time // midnight UTC
}

// JournalPartitions returns the journal's daily partitions, oldest first.
func (s *Store) JournalPartitions(ctx context.Context) ([]JournalPartition, error) {
	rows, _ := s.pool.Query(ctx, `
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'call_event'::regclass ORDER BY c.relname`)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: list the journal's partitions: %w", readErr(err))
	}
	ps := make([]JournalPartition, 0, len(names))
	for _, name := range names {
		day, err := time.Parse("20060102", strings.TrimPrefix(name, journalPartitionPrefix))
		if err != nil || !strings.HasPrefix(name, journalPartitionPrefix) {
			continue // not one of ours: left alone
		}
		ps = append(ps, JournalPartition{Name: name, Day: day})
	}
	return ps, nil
}

// DropJournalBefore forgets the journaled events of every day (UTC) that
// ended by cutoff: it drops those days' partitions, each a table of its
// own, and then deletes their events' dedup keys in batches, so that a
// repeat of such an event is journaled again. The days' events no longer
// count for Journal, Recompute or ForgetNumber; the calls' rows stay
// (Forget deletes those). It returns how many partitions it dropped and
// keys it deleted. A partition that cannot be dropped within a few
// seconds, because long queries read the journal, is left for the next
// run, with an error.
func (s *Store) DropJournalBefore(ctx context.Context, cutoff time.Time) (partitions int, keys int64, err error) {
	limit := utcDay(cutoff)
	ps, err := s.JournalPartitions(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range ps {
		if p.Day.AddDate(0, 0, 1).After(limit) {
			break
		}
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, dropLockTimeout.Milliseconds())); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DROP TABLE `+pgx.Identifier{p.Name}.Sanitize())
			return err
		})
		if err != nil {
			return partitions, keys, fmt.Errorf("store: drop the journal of %s (%s): %w", p.Day.Format(time.DateOnly), p.Name, readErr(err))
		}
		partitions++
	}
	// The keys of every day before limit: with their partitions gone, none
	// of them has a journal row (an event is journaled in its key's day).
	for {
		tag, err := s.pool.Exec(ctx, `
DELETE FROM call_event_key WHERE ctid IN (
    SELECT ctid FROM call_event_key WHERE received_at < $1 LIMIT $2)`, limit, keyBatch)
		if err != nil {
			return partitions, keys, fmt.Errorf("store: delete the dedup keys of before %s: %w", limit.Format(time.DateOnly), readErr(err))
		}
		keys += tag.RowsAffected()
		if tag.RowsAffected() < keyBatch {
			break
		}
	}
	return partitions, keys, nil
}
