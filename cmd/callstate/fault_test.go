package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/store/localpg"
	"github.com/callstate/callstate/store/storetest"
)

// stream posts whole calls (newCall, answer, hangup) to base from a few
// workers until stop is closed or max calls are sent, and returns the call
// ids whose three events were all answered 2xx, and how many were not.
func stream(t *testing.T, base string, stop <-chan struct{}, prefix string, max int) (ok []string, failed int) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	var (
		mu   sync.Mutex
		next atomic.Int64
		fail atomic.Int64
		wg   sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := next.Add(1)
				if i > int64(max) {
					return
				}
				id := fmt.Sprintf("%s-%d", prefix, i)
				good := true
				for _, body := range []string{
					"event=newCall&direction=in&from=4917012345&to=4930123456&callId=" + id + "&user%5B%5D=Alice&userId%5B%5D=w0",
					"event=answer&direction=in&from=4917012345&to=4930123456&callId=" + id + "&user=Alice&userId=w0&answeringNumber=4930123456",
					"event=hangup&direction=in&from=4917012345&to=4930123456&callId=" + id + "&cause=normalClearing",
				} {
					resp, err := client.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(body))
					if err != nil {
						good = false
						continue
					}
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						good = false
					}
				}
				if good {
					mu.Lock()
					ok = append(ok, id)
					mu.Unlock()
				} else {
					fail.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return ok, int(fail.Load())
}

// checkCalls asserts that every call in ids has its three events in the
// journal exactly once and an ended row with its answer recorded.
func checkCalls(t *testing.T, dbURL string, ids []string) {
	t.Helper()
	badJournal, badRows, err := countBad(dbURL, ids)
	if err != nil {
		t.Fatal(err)
	}
	if badJournal > 0 || badRows > 0 {
		t.Errorf("of %d acknowledged calls: %d without exactly 3 journal entries, %d without a correct row", len(ids), badJournal, badRows)
	}
}

func countBad(dbURL string, ids []string) (badJournal, badRows int, err error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, `
		SELECT count(*) FROM unnest($1::text[]) AS k(id)
		WHERE (SELECT count(*) FROM call_event e WHERE e.source = 'sipgate' AND e.call_key = k.id) <> 3`, ids).Scan(&badJournal)
	if err != nil {
		return 0, 0, err
	}
	err = conn.QueryRow(ctx, `
		SELECT count(*) FROM unnest($1::text[]) AS k(id)
		WHERE NOT EXISTS (SELECT 1 FROM call_state c WHERE c.source = 'sipgate' AND c.call_key = k.id
		                  AND c.state = 'ended' AND c.answered_at IS NOT NULL AND c.hangup_cause = 'normalClearing'
		                  AND c.extension = 'w0')`, ids).Scan(&badRows)
	return badJournal, badRows, err
}

// TestDatabaseOutage stops PostgreSQL during a stream of webhooks and
// starts it again: every event answered 2xx ends up in the journal exactly
// once and every row is right.
func TestDatabaseOutage(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		os.Chmod(d, 0o755)
	}
	pgOpts := localpg.Options{DataDir: filepath.Join(dir, "pg"), Port: freePort(t), Durable: true}
	ctx := context.Background()
	pg, err := localpg.Start(ctx, pgOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop(context.Background()) })

	base, logs, stopService := startService(t, map[string]string{
		"DATABASE_URL": pg.URL(), "SIPGATE_VERIFY_SIGNATURE": "false", "DATA_DIR": filepath.Join(dir, "state"),
	})
	stop := make(chan struct{})
	var ok []string
	var failed int
	done := make(chan struct{})
	go func() { ok, failed = stream(t, base, stop, "outage", 1<<30); close(done) }()

	time.Sleep(time.Second)
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // webhooks keep coming while the database is down
	if pg, err = localpg.Start(ctx, pgOpts); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	close(stop)
	<-done
	if err := stopService(); err != nil { // shutdown drains the spool
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(logs.String(), "spooling") {
		t.Error("the outage never reached the spool; the test proves nothing")
	}
	if len(ok) < 50 {
		t.Fatalf("only %d calls acknowledged", len(ok))
	}
	t.Logf("%d calls acknowledged, %d not", len(ok), failed)
	checkCalls(t, pg.URL(), ok)
}

// TestKillNine kills the service with SIGKILL in the middle of a stream and
// starts it again on the same spool: everything answered 2xx is there.
func TestKillNine(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	dataDir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), runMainEnv+"=1",
			"DATABASE_URL="+dbURL, "DATA_DIR="+dataDir, "SIPGATE_VERIFY_SIGNATURE=false",
			fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", port), "PUBLIC_URL="+base, "LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitReady(t, base)
		return cmd
	}
	cmd := start()
	stop := make(chan struct{})
	done := make(chan struct{})
	var ok []string
	go func() { ok, _ = stream(t, base, stop, "kill", 1<<30); close(done) }()
	time.Sleep(1500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	close(stop)
	<-done

	cmd = start()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	if len(ok) < 20 {
		t.Fatalf("only %d calls acknowledged before the kill", len(ok))
	}
	// The restarted service applies anything left in its spool at once.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if j, r, err := countBad(dbURL, ok); err == nil && j == 0 && r == 0 {
			break
		}
	}
	checkCalls(t, dbURL, ok)
	t.Logf("%d calls acknowledged before the kill, all stored", len(ok))
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready in 30s", base)
}
