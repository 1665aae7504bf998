package storetest_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

func TestNewDatabase(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"DatabasesAreIndependent", func(t *testing.T) {
			a, b := storetest.NewDatabase(t), storetest.NewDatabase(t)
			if a == b {
				t.Fatalf("both calls returned %s", a)
			}
			execSQL(t, a, `CREATE TABLE calls (id text PRIMARY KEY)`)
			if n := countTables(t, a); n != 1 {
				t.Errorf("first database: %d tables, want 1", n)
			}
			if n := countTables(t, b); n != 0 {
				t.Errorf("second database: %d tables, want 0", n)
			}
		}},
		{"DroppedAfterTest", func(t *testing.T) {
			var dbURL string
			t.Run("Create", func(t *testing.T) {
				dbURL = storetest.NewDatabase(t)
				conn := connect(t, dbURL)
				// A connection the test forgot to close does not block the drop.
				if err := conn.Ping(t.Context()); err != nil {
					t.Fatal(err)
				}
			})
			if exists(t, dbURL) {
				t.Errorf("database %s still exists after its test", dbName(t, dbURL))
			}
		}},
		{"ParallelCallsAreSafe", func(t *testing.T) {
			for i := range 8 {
				t.Run(fmt.Sprint(i), func(t *testing.T) {
					t.Parallel()
					began := time.Now()
					u := storetest.NewDatabase(t)
					t.Logf("NewDatabase took %v", time.Since(began).Round(time.Microsecond))
					execSQL(t, u, `CREATE TABLE calls (id text PRIMARY KEY)`)
				})
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func BenchmarkNewDatabase(b *testing.B) {
	storetest.NewDatabase(b) // starts the cluster before b.Loop's timing
	for b.Loop() {
		storetest.NewDatabase(b) // dropped when the benchmark ends
	}
}

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func execSQL(t *testing.T, dbURL, sql string) {
	t.Helper()
	conn := connect(t, dbURL)
	defer conn.Close(context.WithoutCancel(t.Context()))
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func countTables(t *testing.T, dbURL string) int {
	t.Helper()
	conn := connect(t, dbURL)
	defer conn.Close(context.WithoutCancel(t.Context()))
	var n int
	err := conn.QueryRow(t.Context(), `
		SELECT count(*)
		FROM pg_tables
		WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// exists reports whether the database of dbURL exists, asking the server's
// postgres database.
func exists(t *testing.T, dbURL string) bool {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	name := dbName(t, dbURL)
	u.Path = "/postgres"
	conn := connect(t, u.String())
	defer conn.Close(context.WithoutCancel(t.Context()))
	var found bool
	err = conn.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&found)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func dbName(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}
