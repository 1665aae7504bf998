package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// CommitTimes returns, for each of the journal's events with these
// dedup keys in the database at url, the moment the transaction that
// wrote it committed, as PostgreSQL recorded it (track_commit_timestamp,
// which the private cluster turns on). A benchmark measures latency from
// there: the moment a change became visible, whenever the goroutine that
// wrote it gets to run again. Journal rows are written once and never
// updated, so their xmin is the writing transaction. It fails tb when the
// server does not record commit times (an existing server given by
// TEST_DATABASE_URL without track_commit_timestamp = on).
func CommitTimes(tb testing.TB, url string, dedupKeys []string) map[string]time.Time {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("storetest: commit times: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
SELECT dedup_key, pg_xact_commit_timestamp(xmin) FROM call_event WHERE dedup_key = ANY($1)`, dedupKeys)
	if err != nil {
		tb.Fatalf("storetest: commit times (the server needs track_commit_timestamp = on): %v", err)
	}
	out := make(map[string]time.Time, len(dedupKeys))
	for rows.Next() {
		var key string
		var at *time.Time
		if err := rows.Scan(&key, &at); err != nil {
			tb.Fatalf("storetest: commit times: %v", err)
		}
		if at == nil {
			tb.Fatalf("storetest: no commit time for %q: the server does not record them (track_commit_timestamp = on)", key)
		}
		out[key] = *at
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("storetest: commit times (the server needs track_commit_timestamp = on): %v", err)
	}
	return out
}
