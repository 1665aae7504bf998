package store

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// errMigration marks a migration that the database refused: trying again
// will not help.
var errMigration = errors.New("migration failed")

// migrationLock is the advisory lock key held while migrating, so that
// several instances starting at once apply each migration exactly once.
const migrationLock = 0x63616c6c73746174 // "callstat"

type migration struct {
	version  int
	name     string
	sql      string
	checksum string // SHA-256 of sql, hex
}

func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must start with a positive number and '_'", base)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		ms = append(ms, migration{version: v, name: base, sql: string(b), checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

// The runner is our own rather than github.com/jackc/tern's: tern keeps
// one version number per database and refuses a gap in the numbers
// ("Missing migration 3"; we have none numbered 3), so a migration merged
// after a higher-numbered one was applied would never run, and it keeps no
// checksums, so an edited migration would go unnoticed. Here every applied
// migration has its row in schema_migrations, with its checksum.

// migrate applies the embedded migrations that the database has not seen,
// each in its own transaction, under an advisory lock.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	return migrateFS(ctx, pool, migrationFS, log)
}

// migrateFS applies the migrations of fsys (migrations/*.sql) whose version
// schema_migrations does not record, in order of version.
func migrateFS(ctx context.Context, pool *pgxpool.Pool, fsys fs.FS, log *slog.Logger) error {
	ms, err := loadMigrations(fsys)
	if err != nil {
		return fmt.Errorf("store: load migrations: %w", err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("store: migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLock)) //nolint:errcheck // released with the session anyway

	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	// Each migration not yet recorded is applied, whatever its number: a
	// migration merged later with a lower number than one already applied
	// (003 after 004) still runs. One applied already must be the same SQL
	// as the file now: a migration changed after the fact would leave
	// databases that differ by when they were migrated.
	recorded, err := readApplied(ctx, conn.Conn())
	if err != nil {
		return err
	}
	applied := make(map[int]bool, len(recorded))
	for _, m := range ms {
		r, ok := recorded[m.version]
		if !ok {
			continue
		}
		applied[m.version] = true
		switch r.checksum {
		case m.checksum:
		case "": // applied before checksums were kept
			if _, err := conn.Exec(ctx, `UPDATE schema_migrations SET checksum = $2 WHERE version = $1`, m.version, m.checksum); err != nil {
				return fmt.Errorf("store: migrate: record checksum of %s: %w", m.name, err)
			}
		default:
			return fmt.Errorf("store: migration %s: %w: changed after it was applied on %s (checksum %.12s…, the file's %.12s…); restore the file and put the change in a new migration",
				m.name, errMigration, r.appliedAt.Format(time.DateTime), r.checksum, m.checksum)
		}
	}
	var names []string
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`, m.version, m.name, m.checksum)
			return err
		})
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return fmt.Errorf("store: migration %s: %w: %w", m.name, errMigration, err)
		}
		if err != nil {
			return fmt.Errorf("store: migration %s: %w", m.name, err)
		}
		log.Debug("database migrated", "migration", m.name)
		names = append(names, m.name)
	}
	// One line for the lot: a new database gets every migration.
	if len(names) > 0 {
		log.Info(fmt.Sprintf("database migrated to version %d", ms[len(ms)-1].version), "applied", len(names),
			"first", names[0], "last", names[len(names)-1])
	}
	return nil
}

const createMigrationsTable = `
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text;`

type appliedMigration struct {
	checksum  string
	appliedAt time.Time
}

// readApplied returns the migrations schema_migrations records, by version.
func readApplied(ctx context.Context, conn *pgx.Conn) (map[int]appliedMigration, error) {
	rows, _ := conn.Query(ctx, `SELECT version, coalesce(checksum, ''), applied_at FROM schema_migrations`)
	out := map[int]appliedMigration{}
	var (
		v  int32
		a  appliedMigration
		at time.Time
	)
	_, err := pgx.ForEachRow(rows, []any{&v, &a.checksum, &at}, func() error {
		a.appliedAt = at
		out[int(v)] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: migrate: read versions: %w", err)
	}
	return out, nil
}

// Migration is one embedded migration and where a database stands with it.
type Migration struct {
	Version   int
	Name      string
	Applied   bool
	AppliedAt time.Time // when Applied
	Changed   bool      // Applied, but the file differs from what was applied
}

// Migrations reports each embedded migration's state in the database at
// url, without applying any. A database never migrated has them all
// pending.
func Migrations(ctx context.Context, url string) ([]Migration, error) {
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		return nil, fmt.Errorf("store: load migrations: %w", err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", readErr(err))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("store: migrations: %w", readErr(err))
	}
	recorded := map[int]appliedMigration{}
	if exists {
		var hasSum bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
			WHERE table_name = 'schema_migrations' AND column_name = 'checksum')`).Scan(&hasSum); err != nil {
			return nil, fmt.Errorf("store: migrations: %w", readErr(err))
		}
		if !hasSum {
			rows, _ := conn.Query(ctx, `SELECT version, '', applied_at FROM schema_migrations`)
			var (
				v  int32
				a  appliedMigration
				at time.Time
			)
			if _, err := pgx.ForEachRow(rows, []any{&v, &a.checksum, &at}, func() error {
				a.appliedAt = at
				recorded[int(v)] = a
				return nil
			}); err != nil {
				return nil, fmt.Errorf("store: migrations: %w", readErr(err))
			}
		} else if recorded, err = readApplied(ctx, conn); err != nil {
			return nil, err
		}
	}
	out := make([]Migration, len(ms))
	for i, m := range ms {
		r, ok := recorded[m.version]
		out[i] = Migration{Version: m.version, Name: m.name, Applied: ok, AppliedAt: r.appliedAt,
			Changed: ok && r.checksum != "" && r.checksum != m.checksum}
	}
	return out, nil
}

// Migrate applies the pending embedded migrations to the database at url,
// as Open does, and returns.
func Migrate(ctx context.Context, url string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return fmt.Errorf("store: connect: %w", err)
	}
	defer pool.Close()
	return migrate(ctx, pool, log)
}
