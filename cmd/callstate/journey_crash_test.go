package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/store/storetest"
)

// TestJourneyAfterKill: instance A commits a call's legs and is killed
// with SIGKILL while its journey refresh is held (a lock the test takes on
// the journey). Instance B, which wrote nothing, has the journey right
// within 5 s of the kill, and the feed tells call.missed once.
func TestJourneyAfterKill(t *testing.T) {
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t)
	start := func() (*exec.Cmd, string) {
		port := freePort(t)
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), runMainEnv+"=1",
			"DATABASE_URL="+dbURL, "DATA_DIR="+t.TempDir(), "SIPGATE_VERIFY_SIGNATURE=false",
			fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", port), "PUBLIC_URL="+base, "LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})
		waitReady(t, base)
		return cmd, base
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The holds: callstate_refresh_taken locks each journey so. The test
	// holds the journey of "crashed", and that of "ahead", a call written
	// first: A's refresher waits on "ahead" until both legs of "crashed"
	// are committed, and then takes all of their queued rows in one
	// refresh. Without it, a refresh could take the newCall's row alone
	// (the hangup's commit coming more than refreshGather after it) and
	// then wait on "crashed" with the hangup's row left to anyone.
	advisory := func(fn, journey string) {
		t.Helper()
		if _, err := conn.Exec(ctx, `SELECT `+fn+`(hashtextextended('callstate journey ' || $1::text, 0))`, journey); err != nil {
			t.Fatal(err)
		}
	}
	advisory("pg_advisory_lock", "ahead")
	advisory("pg_advisory_lock", "crashed")
	a, baseA := start()
	post := func(form url.Values) {
		t.Helper()
		res, err := http.Post(baseA+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("post: %s", res.Status)
		}
	}
	// blocked reports whether a backend waits for a lock of this
	// connection: the journeys' holds are all it has, so a refresh waits.
	blocked := func() bool {
		var b bool
		if err := conn.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid)))`).Scan(&b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	waitUntil := func(limit time.Duration, cond func() bool, failure string) {
		t.Helper()
		for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(failure)
			}
		}
	}
	post(url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {"4917099999"}, "to": {"4930555"},
		"callId": {"ahead"}, "user[]": {"Bob"}, "userId[]": {"w2"}})
	waitUntil(10*time.Second, blocked, "A's refresh of the first call never waited for its journey")
	post(url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {"4917012345"}, "to": {"4930555"},
		"callId": {"crashed"}, "user[]": {"Alice"}, "userId[]": {"w1"}})
	post(url.Values{"event": {"hangup"}, "direction": {"in"}, "callId": {"crashed"}, "cause": {"cancel"}})
	// Both legs in the journal, and nothing left in A's spool that could
	// write them again: every queued row of "crashed" is there (a batch
	// writes its rows with its events) and no other comes.
	waitUntil(10*time.Second, func() bool {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM call_event WHERE source = 'sipgate' AND call_key = 'crashed'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n < 2 {
			return false
		}
		empty, _ := spoolsEmpty(baseA)()
		return empty
	}, "the legs of the call never reached the journal")
	advisory("pg_advisory_unlock", "ahead")
	// A's refresher has taken the queued rows and waits for the lock.
	// Looked at only while a refresh waits: the look's own row locks
	// (FOR UPDATE) would make a refresh running meanwhile skip rows.
	held := func() bool {
		if !blocked() {
			return false
		}
		var free, all int
		if err := conn.QueryRow(ctx, `
SELECT (SELECT count(*) FROM (SELECT id FROM journey_pending FOR UPDATE SKIP LOCKED) f),
       (SELECT count(*) FROM journey_pending)`).Scan(&free, &all); err != nil {
			t.Fatal(err)
		}
		return all > 0 && free == 0
	}
	waitUntil(10*time.Second, held, "A's refresh never took the queued rows")
	start() // B
	a.Process.Signal(syscall.SIGKILL)
	a.Wait()
	killed := time.Now()
	advisory("pg_advisory_unlock", "crashed")
	outcome := func() string {
		var o string
		if err := conn.QueryRow(ctx, `SELECT coalesce((SELECT outcome FROM journey WHERE journey_id = 'crashed'), '')`).Scan(&o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	for outcome() != "missed" {
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("5 s after the kill the journey is %q", outcome())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("journey right %s after the kill", time.Since(killed).Round(time.Millisecond))
	var missed int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM call_feed_event WHERE type = 'call.missed' AND journey_id = 'crashed'`).Scan(&missed); err != nil {
			t.Fatal(err)
		}
		if missed > 0 {
			break
		}
	}
	if missed != 1 {
		t.Fatalf("%d call.missed events in the feed", missed)
	}
}
