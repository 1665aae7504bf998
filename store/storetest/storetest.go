// Package storetest gives every package's tests a fresh PostgreSQL database.
//
// With TEST_DATABASE_URL set, databases are created on that server. Without
// it, the first NewDatabase starts a private cluster (store/localpg) with fsync
// off in a temporary directory (in /dev/shm when it has room), shared by all
// tests of the test binary and stopped and removed by Main. Tests never skip: with neither a URL nor the server binaries, they
// fail and say what to install.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate/store/localpg"
)

// EnvURL names the variable holding the URL of an existing server to test
// against. Its user must be allowed to create databases.
const EnvURL = "TEST_DATABASE_URL"

// cluster is what the test binary shares: one server and an admin pool.
type cluster struct {
	url          *url.URL // the admin connection; databases differ by path
	admin        *pgxpool.Pool
	server       *localpg.Server // nil with TEST_DATABASE_URL
	tmpDir       string
	createSQL    string // after CREATE DATABASE name
	forceDropped bool   // server supports DROP DATABASE ... WITH (FORCE)
}

var (
	mainCalled atomic.Bool
	setupOnce  sync.Once
	shared     *cluster
	setupErr   error
)

// Main runs the package's tests and then stops the private cluster, if
// NewDatabase started one. It exits the process with the tests' status.
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()
	if shared != nil {
		if err := shared.close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// NewDatabase returns the URL of a fresh, empty database for this test,
// dropped (with any connections left open) when the test and its subtests
// have finished. It uses the server at TEST_DATABASE_URL when set, else a
// private cluster started once per test binary with fsync off, on a free
// port. It may be called from parallel tests.
//
// NewDatabase fails the test, never skips it, when no server can be had: the
// message says what to install. The package's TestMain must call Main.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	if !mainCalled.Load() {
		tb.Fatal("storetest: NewDatabase needs the package's tests to have func TestMain(m *testing.M) { storetest.Main(m) }")
	}
	setupOnce.Do(func() { shared, setupErr = setup() })
	if setupErr != nil {
		tb.Fatal(setupErr)
	}
	c := shared

	name := databaseName(tb.Name())
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := c.admin.Exec(tb.Context(), `CREATE DATABASE `+ident+c.createSQL); err != nil {
		tb.Fatalf("storetest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sql := `DROP DATABASE IF EXISTS ` + ident
		if c.forceDropped {
			sql += ` WITH (FORCE)`
		}
		if _, err := c.admin.Exec(ctx, sql); err != nil {
			tb.Errorf("storetest: drop database %s: %v", name, err)
		}
	})
	u := *c.url
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

// setup connects to TEST_DATABASE_URL or starts the private cluster.
func setup() (*cluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := &cluster{}
	raw := os.Getenv(EnvURL)
	if raw == "" {
		var err error
		if raw, err = c.startServer(ctx); err != nil {
			_ = c.close()
			return nil, err
		}
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		_ = c.close()
		return nil, fmt.Errorf("storetest: %s must be a postgres:// URL", EnvURL)
	}
	c.url = u
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		_ = c.close()
		return nil, fmt.Errorf("storetest: %s: %w", EnvURL, err)
	}
	cfg.MaxConns = 4
	if c.admin, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		_ = c.close()
		return nil, fmt.Errorf("storetest: connect: %w", err)
	}
	var version int
	if err := c.admin.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		_ = c.close()
		return nil, fmt.Errorf("storetest: connect to %s: %w", u.Redacted(), err)
	}
	c.forceDropped = version >= 130000
	// template0 holds nothing but the system catalogs, so the database is
	// empty even if someone changed template1 on a shared server.
	c.createSQL = ` TEMPLATE template0`
	if c.server != nil && version >= 150000 {
		// Copying files beats PostgreSQL 15's default of copying through
		// the WAL: about 8 ms instead of 20 ms. It costs two checkpoints,
		// cheap with fsync off but not on a shared, durable server.
		c.createSQL += ` STRATEGY FILE_COPY`
	}
	return c, nil
}

// startServer starts the private cluster in a new temporary directory and
// returns its URL.
func (c *cluster) startServer(ctx context.Context) (string, error) {
	dir, err := os.MkdirTemp(memDir(), "callstate-test-pg-")
	if err != nil {
		return "", fmt.Errorf("storetest: %w", err)
	}
	c.tmpDir = dir
	// When root, the server runs as another user, who must reach the data dir.
	if err := os.Chmod(dir, 0o711); err != nil {
		return "", fmt.Errorf("storetest: %w", err)
	}
	c.server, err = localpg.Start(ctx, localpg.Options{
		DataDir:  filepath.Join(dir, "data"),
		Database: "postgres", // exists: NewDatabase creates the others
	})
	if errors.Is(err, localpg.ErrNoServer) {
		return "", fmt.Errorf("storetest: %w; for tests, %s can point at an existing server instead", err, EnvURL)
	}
	if err != nil {
		return "", fmt.Errorf("storetest: %w", err)
	}
	return c.server.URL(), nil
}

// close releases the pool, stops the server and removes its directory.
func (c *cluster) close() error {
	if c.admin != nil {
		c.admin.Close()
	}
	var errs []error
	if c.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.server.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("storetest: %w", err))
		}
	}
	if c.tmpDir != "" {
		if err := os.RemoveAll(c.tmpDir); err != nil {
			errs = append(errs, fmt.Errorf("storetest: %w", err))
		}
	}
	return errors.Join(errs...)
}

// databaseName makes a database name from the test's name and a random
// suffix, unique across test binaries sharing a server, and within
// PostgreSQL's 63-byte limit.
func databaseName(testName string) string {
	var b strings.Builder
	b.WriteString("test_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 45 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(suffix))
	return b.String()
}
