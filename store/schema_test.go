package store_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/store/localpg"
	"github.com/callstate/callstate/store/storetest"
)

var updateSchema = flag.Bool("update-schema", false, "write schema.sql from a freshly migrated database (make schema)")

// schemaFile is the schema the migrations make, checked in to be read.
const schemaFile = "schema.sql"

// TestSchemaFile fails when schema.sql is not the schema that the
// migrations make on a fresh database: a migration was added or changed
// without `make schema`.
func TestSchemaFile(t *testing.T) {
	url := storetest.NewDatabase(t)
	openURL(t, url) // migrates
	got := dumpSchema(t, url)
	if *updateSchema {
		if err := os.WriteFile(schemaFile, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote store/%s", schemaFile)
		return
	}
	b, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatalf("%v: run `make schema` to write it", err)
	}
	want := string(b)
	if wv, gv := dumpedFrom(want), dumpedFrom(got); wv != gv {
		t.Fatalf("store/%s was dumped from %s and this server is %s: compare on the former (unset %s to use the private PostgreSQL)",
			schemaFile, wv, gv, storetest.EnvURL)
	}
	if got != want {
		t.Fatalf("store/%s is not the schema the migrations make: run `make schema` and commit the file.\nFirst difference:\n%s",
			schemaFile, firstDiff(want, got))
	}
}

// dumpSchema returns the schema of the database at url as pg_dump writes
// it, normalised: no ownership, privileges or session settings, none of
// the journal's daily partitions (their names are dates), and a first line
// naming the server's major version.
func dumpSchema(t *testing.T, url string) string {
	t.Helper()
	dir, err := localpg.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var major int
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int / 10000`).Scan(&major); err != nil {
		t.Fatal(err)
	}
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
		"--no-tablespaces", "--exclude-table=call_event_[0-9]*", "--dbname="+url)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, stderr.String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "-- callstate's schema as the migrations in store/migrations make it, dumped from PostgreSQL %d.\n", major)
	b.WriteString("-- Generated: do not edit. `make schema` writes it again; TestSchemaFile fails when it is stale.\n")
	blank := true
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "SET "), strings.HasPrefix(line, "SELECT pg_catalog.set_config"),
			strings.HasPrefix(line, `\restrict`), strings.HasPrefix(line, `\unrestrict`),
			strings.HasPrefix(line, "-- Dumped from"), strings.HasPrefix(line, "-- Dumped by"),
			strings.HasPrefix(line, "-- PostgreSQL database dump"):
			continue
		case line == "--":
			continue
		case strings.TrimSpace(line) == "":
			if blank {
				continue
			}
			blank = true
		default:
			blank = false
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

var dumpedFromRE = regexp.MustCompile(`dumped from (PostgreSQL \d+)`)

func dumpedFrom(schema string) string {
	if m := dumpedFromRE.FindStringSubmatch(schema); m != nil {
		return m[1]
	}
	return "an unknown PostgreSQL"
}

// firstDiff shows where a and b first differ, with a few lines around.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	i := 0
	for i < len(al) && i < len(bl) && al[i] == bl[i] {
		i++
	}
	from := max(0, i-3)
	show := func(ls []string) string {
		return strings.Join(ls[from:min(len(ls), i+6)], "\n")
	}
	return fmt.Sprintf("line %d\n--- store/%s:\n%s\n+++ the migrations:\n%s", i+1, schemaFile, show(al), show(bl))
}
