package store

import (
	"context"
	"log/slog"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate/store/storetest"
)

// TestMigrateAppliesEveryUnrecordedVersion: a migration with a lower number
// than one already applied (003 merged after 004) still runs.
func TestMigrateAppliesEveryUnrecordedVersion(t *testing.T) {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, storetest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	log := slog.New(slog.DiscardHandler)

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
