package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store/storetest"
)

// TestInstancesShareAndTakeOver runs two instances against one database and
// a real Kamailio with the default lease settings: they share the watched
// extensions, and when one is killed with SIGKILL the other watches all of
// them again within 30 s, proven by a real call between two extensions the
// dead instance held.
func TestInstancesShareAndTakeOver(t *testing.T) {
	k := testpbx.StartKamailio(t)
	dbURL := storetest.NewDatabase(t)
	exts := []string{"100", "101", "102", "103", "104", "105"}
	start := func(id string) *exec.Cmd {
		port := freePort(t)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), runMainEnv+"=1", "INSTANCE_ID="+id,
			"DATABASE_URL="+dbURL, "DATA_DIR="+t.TempDir(), "LOG_LEVEL=warn",
			fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", port), fmt.Sprintf("PUBLIC_URL=http://127.0.0.1:%d", port),
			"SIP_PBX_ADDR="+k.Addr(), "SIP_DOMAIN="+k.Domain(), "SIP_EXTENSIONS="+strings.Join(exts, ","),
			fmt.Sprintf("SIP_LISTEN_ADDR=127.0.0.1:%d", testpbx.FreePort(t)), "SIP_EXPIRES=1m")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d", port))
		return cmd
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	owners := func() map[string][]string {
		rows, _ := conn.Query(ctx, `SELECT owner, extension FROM sip_extension
			WHERE subscription = 'active' AND lease_until > now() ORDER BY extension`)
		by := map[string][]string{}
		var owner, ext string
		if _, err := pgx.ForEachRow(rows, []any{&owner, &ext}, func() error {
			by[owner] = append(by[owner], ext)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return by
	}
	waitUntil := func(what string, limit time.Duration, cond func() bool) time.Duration {
		t.Helper()
		began := time.Now()
		for !cond() {
			if time.Since(began) > limit {
				t.Fatalf("not within %s: %s (owners %v)", limit, what, owners())
			}
			time.Sleep(200 * time.Millisecond)
		}
		return time.Since(began)
	}

	a := start("a")
	waitUntil("a watches every extension", 60*time.Second, func() bool { return len(owners()["a"]) == len(exts) })
	start("b")
	waitUntil("a and b share the extensions", 60*time.Second, func() bool {
		o := owners()
		return len(o["a"]) == 3 && len(o["b"]) == 3
	})
	fromA := owners()["a"]

	a.Process.Signal(syscall.SIGKILL)
	a.Wait()
	took := waitUntil("b watches every extension", 30*time.Second, func() bool { return len(owners()["b"]) == len(exts) })
	t.Logf("b took over a's %v in %s", fromA, took.Round(100*time.Millisecond))

	// b really listens for a's former extensions: a call between two of
	// them lands in call_state.
	k.PlaceCall(t, fromA[0], fromA[1], 300*time.Millisecond, 300*time.Millisecond)
	waitUntil("the call after the takeover is stored for both parties", 20*time.Second, func() bool {
		var ended []string
		rows, _ := conn.Query(ctx, `SELECT extension FROM call_state WHERE source = 'sip' AND state = 'ended' AND answered_at IS NOT NULL`)
		ended, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(ended, fromA[0]) && slices.Contains(ended, fromA[1])
	})
}
