package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// forgetBatch bounds the calls one statement of Forget deletes, so that no
// statement holds many locks or runs long.
const forgetBatch = 5000

// deleteCallsSQL deletes the calls that the subquery selects by ctid; the
// second %s adds statements that see the deleted calls as gone, and the
// final SELECT of the calls and journaled events deleted (or 0) and the
// deleted calls' journeys.
const deleteCallsSQL = `
WITH gone AS (
    DELETE FROM call_state c WHERE c.ctid IN (%s)
    RETURNING c.source, c.call_key, c.journey_id
)%s`

// keepJournalSQL counts no events: Forget leaves the journal to its
// partitions (DropJournalBefore).
const keepJournalSQL = `
SELECT (SELECT count(*) FROM gone), 0::bigint, ARRAY(SELECT DISTINCT journey_id FROM gone)`

// eraseJournalSQL deletes the deleted calls' journals, in every partition,
// with their dedup keys, and their events in the feed (their journeys'
// events go after the journeys' refresh, see deleteCalls), and journals for each call that it was erased and
// when, without the number or anything else of the call but the source's
// key. A call erased before keeps its first mark. Each erased call leaves
// a tombstone (call_tombstone), so that reconciliation with sipgate's
// history does not create it again.
const eraseJournalSQL = `, events AS (
    DELETE FROM call_event e USING gone g
    WHERE e.source = g.source AND e.call_key = g.call_key AND e.type <> 'erased'
    RETURNING e.source, e.dedup_key
), keys AS (
    DELETE FROM call_event_key k USING events e
    WHERE k.source = e.source AND k.dedup_key = e.dedup_key
), feed_calls AS (
    DELETE FROM call_feed f USING gone g
    WHERE f.journey_id <> '' AND f.journey_id = g.journey_id AND f.source = g.source AND f.call_key = g.call_key
), mark_keys AS (
    INSERT INTO call_event_key (source, dedup_key, received_at)
    SELECT g.source, 'erased:' || g.call_key, now() FROM gone g
    ON CONFLICT (source, dedup_key) DO NOTHING
    RETURNING source, dedup_key, received_at
), marks AS (
    INSERT INTO call_event (source, dedup_key, call_key, type, received_at, payload)
    SELECT k.source, k.dedup_key, substr(k.dedup_key, length('erased:') + 1), 'erased', k.received_at, '\x'::bytea
    FROM mark_keys k
), tombs AS (
    INSERT INTO call_tombstone (source, call_key)
    SELECT g.source, g.call_key FROM gone g
    ON CONFLICT (source, call_key) DO NOTHING
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM events), ARRAY(SELECT DISTINCT journey_id FROM gone)`

// Forget deletes the rows of the calls that ended before cutoff: personal
// data is kept no longer than it is needed. Their journals stay until
// their days' partitions are dropped (DropJournalBefore). It works in
// batches until none is left or ctx is done, and returns how many calls it
// deleted.
func (s *Store) Forget(ctx context.Context, cutoff time.Time) (calls int64, err error) {
	q := fmt.Sprintf(deleteCallsSQL, `
        SELECT ctid FROM call_state WHERE state = 'ended' AND ended_at < $1 LIMIT $2`, keepJournalSQL)
	calls, _, err = s.deleteCalls(ctx, q, cutoff, false)
	if err != nil {
		return calls, fmt.Errorf("store: forget calls ended before %s: %w", cutoff.Format(time.RFC3339), err)
	}
	return calls, nil
}

// deleteCalls runs q, a deleteCallsSQL, with arg and the batch size until
// a batch deletes fewer calls than the batch size, and announces the
// change. Each batch recomputes, in its transaction, the journeys its
// calls were legs of: a journey left without legs goes with them. With
// erase, the feed's events of those journeys (their legs' and their own)
// go too: deleted after the refresh has taken the journeys' locks, so
// that a refresh that was writing one of them meanwhile has committed and
// its events are seen.
func (s *Store) deleteCalls(ctx context.Context, q string, arg any, erase bool) (calls, events int64, err error) {
	for {
		var c, e int64
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var journeys []string
			if err := tx.QueryRow(ctx, q, arg, forgetBatch).Scan(&c, &e, &journeys); err != nil {
				return err
			}
			if err := refreshJourneys(ctx, tx, journeys, nil, nil); err != nil {
				return err
			}
			if erase && len(journeys) > 0 {
				if _, err := tx.Exec(ctx, `DELETE FROM call_feed WHERE journey_id <> '' AND journey_id = ANY ($1)`, journeys); err != nil {
					return err
				}
				// Their webhook messages' bodies too, sent or not.
				_, err := tx.Exec(ctx, `DELETE FROM webhook_delivery WHERE journey_id <> '' AND journey_id = ANY ($1)`, journeys)
				return err
			}
			return nil
		})
		if err != nil {
			return calls, events, readErr(err)
		}
		calls, events = calls+c, events+e
		if c < forgetBatch {
			break
		}
	}
	if calls > 0 {
		s.announce.changed()
	}
	return calls, events, nil
}

// ErrBadNumber is returned by ForgetNumber for a number it will not look for.
var ErrBadNumber = errors.New("bad number")

// ForgetNumber deletes every call in which number took part, as caller,
// callee, answering number or the number a call was diverted from, with their
// journals in every partition and their dedup keys, and returns how many
// calls and journaled events it deleted. Each deleted call leaves one journal entry of type "erased", with the
// call's key and the time and nothing else, so that it can be told that
// the call was erased, not lost. Calls still going on are deleted too.
// The phonebook forgets the number as well (a contact left without
// numbers is deleted). The number must be given as the source writes it (sipgate: 4930123456,
// no plus sign).
func (s *Store) ForgetNumber(ctx context.Context, number string) (calls, events int64, err error) {
	number = strings.TrimSpace(number)
	if number == "" || strings.ContainsAny(number, "%_\\") {
		return 0, 0, fmt.Errorf("store: forget %q: %w", number, ErrBadNumber)
	}
	q := fmt.Sprintf(deleteCallsSQL, `
        SELECT ctid FROM call_state
        WHERE $1 IN (from_party, to_party, answering_number, diversion) LIMIT $2`, eraseJournalSQL)
	calls, events, err = s.deleteCalls(ctx, q, number, true)
	if err != nil {
		return calls, events, fmt.Errorf("store: forget a number: %w", err)
	}
	// Reconciliation does not learn its earlier calls from sipgate's
	// history again: the number's digest is kept, not the number.
	if _, err := s.pool.Exec(ctx, `
INSERT INTO forgotten_number (digest) VALUES ($1)
ON CONFLICT (digest) DO UPDATE SET forgotten_at = now()`, callstate.NumberDigest(number)); err != nil {
		return calls, events, fmt.Errorf("store: forget a number for reconciliation: %w", readErr(err))
	}
	// The phonebook forgets it too: a contact loses the number, and one
	// that had no other goes.
	if _, err := s.pool.Exec(ctx, `
WITH gone AS (
    DELETE FROM contact WHERE numbers = ARRAY[$1::text]
)
UPDATE contact SET numbers = array_remove(numbers, $1::text), updated_at = now()
WHERE $1::text = ANY (numbers) AND numbers <> ARRAY[$1::text]`, number); err != nil {
		return calls, events, fmt.Errorf("store: forget a number in the phonebook: %w", readErr(err))
	}
	return calls, events, nil
}
