package store

import (
	"context"
	"io/fs"
	"log/slog"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store/storetest"
)

// migrationsBefore returns the embedded migrations numbered below version.
func migrationsBefore(t *testing.T, version int) fstest.MapFS {
	t.Helper()
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{}
	for _, m := range ms {
		if m.version < version {
			b, err := fs.ReadFile(migrationFS, "migrations/"+m.name)
			if err != nil {
				t.Fatal(err)
			}
			fsys["migrations/"+m.name] = &fstest.MapFile{Data: b}
		}
	}
	return fsys
}

// TestMigrateJournalToPartitions: migration 014 moves a populated journal
// into daily partitions with its ids and dedup keys; repeats of its events
// are still repeats, and new events get higher ids.
func TestMigrateJournalToPartitions(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	log := slog.New(slog.DiscardHandler)
	if err := migrateFS(ctx, pool, migrationsBefore(t, 14), log); err != nil {
		t.Fatal(err)
	}
	// 3 days of events, 50 a day, with ids the identity gave.
	start := time.Date(2026, 10, 30, 22, 0, 0, 0, time.UTC)
	_, err = pool.Exec(ctx, `
INSERT INTO call_event (source, dedup_key, call_key, type, received_at, payload, call_update)
SELECT 'sipgate', 'k' || i, 'c' || (i / 3), 'newCall', $1::timestamptz + (i * interval '1 day' / 50),
       convert_to('from=49170' || i, 'UTF8'), CASE WHEN i % 2 = 0 THEN convert_to('{}', 'UTF8') END
FROM generate_series(0, 149) i`, start)
	if err != nil {
		t.Fatal(err)
	}
	var before struct {
		n, maxID int64
		sum      string
	}
	const digest = `SELECT count(*), max(id), md5(string_agg(id || source || dedup_key || call_key || type || received_at || payload::text || coalesce(call_update::text, '-'), ',' ORDER BY id)) FROM call_event`
	if err := pool.QueryRow(ctx, digest).Scan(&before.n, &before.maxID, &before.sum); err != nil {
		t.Fatal(err)
	}
	st, err := Open(ctx, url, Options{Logger: log}) // applies 014 and any later
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var after struct {
		n, maxID int64
		sum      string
	}
	if err := pool.QueryRow(ctx, digest).Scan(&after.n, &after.maxID, &after.sum); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("journal after 014: %+v, before %+v", after, before)
	}
	var keys, parted int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM call_event_key),
		(SELECT count(*) FROM ONLY call_event)`).Scan(&keys, &parted); err != nil {
		t.Fatal(err)
	}
	if keys != before.n || parted != 0 {
		t.Errorf("%d dedup keys (want %d), %d rows outside the partitions", keys, before.n, parted)
	}
	ps, err := st.JournalPartitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, day := range []string{"20261030", "20261031", "20261101", "20261102"} {
		var n int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM call_event_`+day).Scan(&n); err != nil {
			t.Errorf("partition of %s: %v", day, err)
		}
	}
	if len(ps) < 4+JournalAheadDays {
		t.Errorf("%d partitions, want the 4 days of the journal and the days ahead", len(ps))
	}
	// A repeat of a migrated event is a repeat; a new one is journaled
	// with the next id.
	ev := func(key string, at time.Time) callstate.Event {
		return callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: key, ReceivedAt: at,
			Payload: []byte("x"), Update: callstate.Update{Key: "c0", State: callstate.StateRinging}}
	}
	if applied, err := st.Apply(ctx, ev("k0", time.Now())); err != nil || applied {
		t.Errorf("repeat of a migrated event: applied=%v, %v", applied, err)
	}
	if applied, err := st.Apply(ctx, ev("new", time.Now())); err != nil || !applied {
		t.Fatalf("new event: applied=%v, %v", applied, err)
	}
	j, err := st.Journal(ctx, callstate.SourceSipgate, "c0")
	if err != nil || len(j) != 4 || j[3].ID != before.maxID+1 {
		t.Errorf("journal of c0: %v, %v; want its 3 migrated events and the new one with id %d", j, err, before.maxID+1)
	}
}

// BenchmarkMigrateJournal times migration 014 on a journal of 200,000
// events over 30 days, against the anchor of writing those rows in the
// first place (one INSERT ... SELECT, in the same run):
//
//	go test -run '^$' -bench MigrateJournal -benchtime 1x ./store/
func BenchmarkMigrateJournal(b *testing.B) {
	const rows = 200000
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	var populate, migrate time.Duration
	for b.Loop() {
		b.StopTimer()
		url := storetest.NewDatabase(b)
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		ms, err := loadMigrations(migrationFS)
		if err != nil {
			b.Fatal(err)
		}
		before := fstest.MapFS{}
		for _, m := range ms {
			if m.version < 14 {
				before["migrations/"+m.name] = &fstest.MapFile{Data: []byte(m.sql)}
			}
		}
		if err := migrateFS(ctx, pool, before, log); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		_, err = pool.Exec(ctx, `
INSERT INTO call_event (source, dedup_key, call_key, type, received_at, payload, call_update)
SELECT 'sipgate', md5(i::text), 'c' || (i / 3), 'newCall', now() - (i * interval '30 days' / $1),
       convert_to(repeat('from=4917012345678&to=4930123456&', 8), 'UTF8'), convert_to('{"key":"x"}', 'UTF8')
FROM generate_series(1, $1) i`, rows)
		if err != nil {
			b.Fatal(err)
		}
		populate += time.Since(start)
		b.StartTimer()
		start = time.Now()
		if err := migrateFS(ctx, pool, migrationFS, log); err != nil {
			b.Fatal(err)
		}
		migrate += time.Since(start)
		pool.Close()
	}
	b.ReportMetric(populate.Seconds()/float64(b.N), "populate_s")
	b.ReportMetric(migrate.Seconds()/float64(b.N), "migrate_s")
}
