package store

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate/store/storetest"
)

// migrationTest returns a pool on a fresh, empty database and a quiet log.
func migrationTest(t *testing.T) (context.Context, *pgxpool.Pool, *slog.Logger) {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), storetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return context.Background(), pool, slog.New(slog.DiscardHandler)
}

// TestMigrateAppliesEveryUnrecordedVersion: a migration with a lower number
// than one already applied (003 merged after 004) still runs.
func TestMigrateAppliesEveryUnrecordedVersion(t *testing.T) {
	ctx, pool, log := migrationTest(t)

	first := fstest.MapFS{
		"migrations/001_a.sql": {Data: []byte(`CREATE TABLE a (x int)`)},
		"migrations/004_d.sql": {Data: []byte(`CREATE TABLE d (x int)`)},
	}
	if err := migrateFS(ctx, pool, first, log); err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	later := fstest.MapFS{
		"migrations/001_a.sql": first["migrations/001_a.sql"],
		"migrations/003_c.sql": {Data: []byte(`CREATE TABLE c (x int)`)},
		"migrations/004_d.sql": first["migrations/004_d.sql"],
	}
	if err := migrateFS(ctx, pool, later, log); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	var names []string
	rows, err := pool.Query(ctx, `SELECT name FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if got, want := len(names), 3; got != want || names[1] != "003_c.sql" {
		t.Fatalf("applied %v, want 001, 003, 004", names)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO c VALUES (1)`); err != nil {
		t.Fatalf("table of 003 missing: %v", err)
	}
	// Running again changes nothing.
	if err := migrateFS(ctx, pool, later, log); err != nil {
		t.Fatalf("third migrate: %v", err)
	}
}

// TestMigrateRefusesChangedMigration: a migration edited after it was
// applied stops the start with its name; one applied before checksums were
// kept gets its checksum recorded.
func TestMigrateRefusesChangedMigration(t *testing.T) {
	ctx, pool, log := migrationTest(t)
	fsys := fstest.MapFS{
		"migrations/001_a.sql": {Data: []byte(`CREATE TABLE a (x int)`)},
		"migrations/002_b.sql": {Data: []byte(`CREATE TABLE b (x int)`)},
	}
	if err := migrateFS(ctx, pool, fsys, log); err != nil {
		t.Fatal(err)
	}
	// As if 002 had been applied by a version that kept no checksum.
	if _, err := pool.Exec(ctx, `UPDATE schema_migrations SET checksum = NULL WHERE version = 2`); err != nil {
		t.Fatal(err)
	}
	if err := migrateFS(ctx, pool, fsys, log); err != nil {
		t.Fatalf("migrate with a checksum missing: %v", err)
	}
	var missing int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE checksum IS NULL`).Scan(&missing); err != nil || missing != 0 {
		t.Fatalf("%d migrations without a checksum, %v", missing, err)
	}
	fsys["migrations/001_a.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE a (x bigint)`)}
	err := migrateFS(ctx, pool, fsys, log)
	if !errors.Is(err, errMigration) || !strings.Contains(err.Error(), "001_a.sql") || !permanent(err) {
		t.Fatalf("migrate with 001 changed: %v, want a migration error naming 001_a.sql", err)
	}
}
