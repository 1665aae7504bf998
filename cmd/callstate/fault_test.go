package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// twoInstances starts two instances on the database at dbURL, each with a
// spool of its own.
func twoInstances(t *testing.T, dbURL string) (a, b string, logs [2]*lockedBuffer) {
	t.Helper()
	env := func() map[string]string {
		return map[string]string{"DATABASE_URL": dbURL, "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "warn"}
	}
	a, logs[0], _ = startService(t, env())
	b, logs[1], _ = startService(t, env())
	return a, b, logs
}

// TestTwoInstancesOutage runs two instances on one database, with the
// events of every call alternating between them, and stops the database
// for a while in the middle: every acknowledged call comes out whole, its
// digits in the order they were posted, whichever instance or spool applied
// them.
func TestTwoInstancesOutage(t *testing.T) {
	pg := newTestPG(t, true)
	a, b, _ := twoInstances(t, pg.url)

	load := startCalls([]string{a, b}, "outage2", 6, 1<<30, 20*time.Millisecond)
	time.Sleep(2500 * time.Millisecond)
	pg.stop(t)
	time.Sleep(3 * time.Second) // webhooks keep coming while the database is down
	pg.start(t)
	back := time.Now()
	// Both instances are ready again soon after the database is; from then
	// on new events go straight to it while the spools drain.
	ready, ok, why := waitFor(10*time.Second, func() (bool, string) {
		for _, base := range []string{a, b} {
			if p := get(base, "/readyz", 3*time.Second); p.err != nil || p.status != http.StatusOK {
				return false, base + ": " + p.String()
			}
		}
		return true, ""
	})
	if !ok {
		t.Errorf("not ready within 10s of the database starting again: %s", why)
	}
	readyAt := time.Now()
	spooledBefore := mustMetric(t, a, "callstate_spool_appended_total", nil) + mustMetric(t, b, "callstate_spool_appended_total", nil)
	time.Sleep(time.Until(back.Add(3 * time.Second))) // webhooks keep coming while the spools drain
	results := load.finish()
	sum := summarize(results)
	spooledAfter := mustMetric(t, a, "callstate_spool_appended_total", nil) + mustMetric(t, b, "callstate_spool_appended_total", nil)
	postedAfter := 0
	for _, r := range results {
		if r.sent.After(readyAt) {
			postedAfter++
		}
	}
	// A write that fails on a connection the restart broke, or that takes
	// longer than DATABASE_WRITE_TIMEOUT, may still go to the spool.
	if n := spooledAfter - spooledBefore; ok && n > float64(20+postedAfter/10) {
		t.Errorf("%v of the %d events posted after both instances were ready again went to a spool: new events must go straight to the database while the backlog drains",
			n, postedAfter)
	}

	settleTwoInstances(t, pg.url, sum, a, b, fmt.Sprintf("%v of the %d posted after both were ready again (%s after the database started)",
		spooledAfter-spooledBefore, postedAfter, ready.Round(100*time.Millisecond)))
}

// settleTwoInstances waits until both instances' spools are empty, makes
// sure the outage reached a spool, and checks that every call acknowledged
// whole is in the database whole and right; what is said of the run goes
// into its log line.
func settleTwoInstances(t *testing.T, dbURL string, sum callSummary, a, b, what string) {
	t.Helper()
	drained := waitSpoolsEmpty(t, 30*time.Second, a, b)
	spooled := requireSpooled(t, a, b)
	t.Logf("%d calls (%d events) posted, %d acknowledged whole; %v events spooled; %s; spools empty %s after the last post",
		sum.calls, sum.events, len(sum.acked), spooled, what, drained.Round(100*time.Millisecond))
	if len(sum.acked) < 30 {
		t.Fatalf("only %d calls acknowledged whole", len(sum.acked))
	}
	checkRefused(t, sum)
	checkWholeCalls(t, dbURL, sum.acked)
}

// TestTwoInstancesFrozen is TestTwoInstancesOutage with the database frozen
// (SIGSTOP: connections stay open and nothing answers) instead of stopped.
// While it is frozen, /readyz and the API still answer in bounded time.
func TestTwoInstancesFrozen(t *testing.T) {
	pg := newTestPG(t, true)
	a, b, _ := twoInstances(t, pg.url)

	load := startCalls([]string{a, b}, "frozen2", 6, 1<<30, 20*time.Millisecond)
	time.Sleep(2500 * time.Millisecond)
	thaw := pg.freeze(t)
	frozenAt := time.Now()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		probes []probe
		bad    []string
	)
	for _, base := range []string{a, b} {
		wg.Go(func() {
			p := get(base, "/readyz", 3*time.Second)
			mu.Lock()
			defer mu.Unlock()
			probes = append(probes, p)
			if p.err != nil || p.status != http.StatusServiceUnavailable || p.jsonError() == "" {
				bad = append(bad, fmt.Sprintf("%s: %s, want 503 with a JSON error within 3s", base, p))
			}
		})
		wg.Go(func() {
			p := get(base, "/api/calls", 5*time.Second)
			mu.Lock()
			defer mu.Unlock()
			probes = append(probes, p)
			switch {
			case p.err != nil:
				bad = append(bad, fmt.Sprintf("%s: %s, want an answer within 5s", base, p))
			case p.status == http.StatusServiceUnavailable && p.jsonError() == "":
				bad = append(bad, fmt.Sprintf("%s: %s, want 503 with a JSON error", base, p))
			case p.status != http.StatusServiceUnavailable && p.status != http.StatusOK:
				bad = append(bad, fmt.Sprintf("%s: %s, want 503 or 200", base, p))
			}
		})
	}
	// Frozen for 3 s, and in any case until the probes are answered or have
	// given up: an answer that comes only after SIGCONT proves nothing.
	wg.Wait()
	time.Sleep(time.Until(frozenAt.Add(3 * time.Second)))
	thaw()
	frozeFor := time.Since(frozenAt)
	time.Sleep(3 * time.Second)
	sum := summarize(load.finish())
	for _, p := range probes {
		t.Logf("while frozen: %s", p)
	}
	for _, s := range bad {
		t.Error(s)
	}

	settleTwoInstances(t, pg.url, sum, a, b, "frozen for "+frozeFor.Round(100*time.Millisecond).String())
}

// TestStartWithoutDatabase starts the service while its database is not
// there yet: it serves, says it is not ready and why, keeps the webhooks in
// its spool, and as soon as the database is there it connects, migrates and
// applies them.
func TestStartWithoutDatabase(t *testing.T) {
	pg := newTestPG(t, false)
	base, logs, _ := startServiceUnready(t, map[string]string{
		"DATABASE_URL": pg.url, "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "warn",
	})
	if p := get(base, "/healthz", 3*time.Second); p.err != nil || p.status != http.StatusOK {
		t.Errorf("without a database: %s, want 200", p)
	}
	p := get(base, "/readyz", 3*time.Second)
	if msg := p.jsonError(); p.err != nil || p.status != http.StatusServiceUnavailable || !strings.Contains(strings.ToLower(msg), "database") {
		t.Errorf("without a database: %s, want 503 with a JSON error naming the database", p)
	}

	sum := summarize(startCalls([]string{base}, "nodb", 4, 20, 0).wait())
	checkRefused(t, sum)
	if n := mustMetric(t, base, "callstate_spool_events", nil); n == 0 {
		t.Errorf("no event waits in the spool after %d were accepted without a database", sum.events)
	}

	pg.start(t)
	took, ok, why := waitFor(10*time.Second, func() (bool, string) {
		if p := get(base, "/readyz", 3*time.Second); p.err != nil || p.status != http.StatusOK {
			return false, p.String()
		}
		return spoolsEmpty(base)()
	})
	if !ok {
		t.Fatalf("not ready with an empty spool within 10s of the database starting: %s\n%s", why, tail(logs.String(), 20))
	}
	t.Logf("%d calls accepted without a database; ready and drained %s after it started", len(sum.acked), took.Round(100*time.Millisecond))
	checkWholeCalls(t, pg.url, sum.acked)
}

// TestSpoolTooSmall keeps the database away longer than the spool can hold
// out. What cannot be kept is refused (answer, dtmf, hangup: 503) or, for
// newCall, which is always answered with its XML, counted as lost and logged
// with its call id; nothing acknowledged is missing otherwise. newCalls are
// kept after other events are refused, as long as the spool's reserve for
// them lasts: a part of SPOOL_MAX_BYTES, and on a full disk the room its
// ballast file held.
func TestSpoolTooSmall(t *testing.T) {
	pg := newTestPG(t, true)
	t.Run("DiskFull", func(t *testing.T) {
		dir := t.TempDir()
		// A test that cannot fill its disk proves nothing: it fails
		// rather than pass (mounting needs root or CAP_SYS_ADMIN, which
		// CI has).
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("cannot mount a 1 MiB tmpfs for the spool, so the full disk cannot be set up: %v", err)
		}
		t.Cleanup(func() {
			if err := syscall.Unmount(dir, 0); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
				syscall.Unmount(dir, syscall.MNT_DETACH)
			}
		})
		t.Log("spool on a 1 MiB tmpfs, SPOOL_MAX_BYTES at its default: the file system fills up first")
		spoolTooSmall(t, pg, map[string]string{"SPOOL_DIR": dir}, false)
	})
	t.Run("Bound", func(t *testing.T) {
		t.Log("spool on a roomy file system with SPOOL_MAX_BYTES=1048576")
		spoolTooSmall(t, pg, map[string]string{"SPOOL_MAX_BYTES": "1048576"}, true)
	})
}

func spoolTooSmall(t *testing.T, pg *testPG, env map[string]string, bound bool) {
	env["DATABASE_URL"] = pg.url
	env["SIPGATE_VERIFY_SIGNATURE"] = "false"
	env["LOG_LEVEL"] = "warn"
	base, logs, _ := startService(t, env)
	prefix := strings.ToLower(t.Name()[strings.LastIndexByte(t.Name(), '/')+1:])

	pg.stop(t)
	restarted := false
	defer func() {
		if !restarted {
			pg.start(t)
		}
	}()
	type readyAt struct {
		at     time.Time
		status int
	}
	var ready []readyAt
	pollStop, pollDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(pollDone)
		for {
			p := get(base, "/readyz", 3*time.Second)
			ready = append(ready, readyAt{time.Now(), p.status})
			select {
			case <-pollStop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	load := startCalls([]string{base}, prefix, 6, 3000, 0)
	loadDone := make(chan struct{})
	go func() { load.wg.Wait(); close(loadDone) }()
	// Until the spool refuses other events and then loses newCalls too,
	// once their reserve is used up. How long that takes depends on the
	// machine (each event kept is synced to disk; with the bound, a real
	// disk): the wait ends when it has happened, or when the load has
	// posted its 3000 calls, several times what the spool holds (2 min at
	// most).
	outage := time.Now()
	filled := func() bool {
		if load.refused.Load() == 0 {
			return false
		}
		lost, _, err := metric(base, "callstate_events_total", map[string]string{"source": "sipgate", "type": "newCall", "outcome": "lost"})
		return err == nil && lost > 0
	}
	full := filled()
	for deadline := time.Now().Add(2 * time.Minute); !full && time.Now().Before(deadline); full = filled() {
		select {
		case <-loadDone:
			deadline = time.Now()
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("spool refused events and lost a newCall: %v, %s after the outage began", full, time.Since(outage).Round(100*time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	results := load.finish()
	close(pollStop)
	<-pollDone
	stoppedPosting := time.Now()
	pg.start(t)
	restarted = true
	drained := waitSpoolsEmpty(t, 30*time.Second, base)

	stored, err := journalCounts(pg.url, prefix+"-%")
	if err != nil {
		t.Fatal(err)
	}
	lost := mustMetric(t, base, "callstate_events_total", map[string]string{"source": "sipgate", "type": "newCall", "outcome": "lost"})

	var (
		statuses        = map[string]int{}
		firstRefusal    time.Time
		ackedNewCalls   int
		missingNewCalls []eventResult
		missingOthers   []eventResult
		badXML          []eventResult
		acked           = map[[2]string]int{}
	)
	for _, r := range results {
		key := r.typ + " " + strconv.Itoa(r.status)
		if r.err != "" {
			key = r.typ + " no answer"
		}
		statuses[key]++
		if r.typ == "newCall" && r.badXML != "" {
			badXML = append(badXML, r)
		}
		if r.typ != "newCall" && !r.acknowledged() && (firstRefusal.IsZero() || r.answered.Before(firstRefusal)) {
			firstRefusal = r.answered
		}
		if r.acknowledged() {
			acked[[2]string{r.call, r.typ}]++
		}
	}
	for _, r := range results {
		if !r.acknowledged() {
			continue
		}
		k := [2]string{r.call, r.typ}
		if r.typ == "newCall" {
			ackedNewCalls++
			if stored[k] == 0 {
				missingNewCalls = append(missingNewCalls, r)
			}
			continue
		}
		// The first acknowledged events of this call and type must be
		// stored; an event missing here is one of them.
		if acked[k] > stored[k] {
			missingOthers = append(missingOthers, r)
			acked[k]--
		}
	}
	var keptAfterRefusal, postedAfterRefusal int
	if !firstRefusal.IsZero() {
		for _, r := range results {
			if r.typ == "newCall" && r.sent.After(firstRefusal) {
				postedAfterRefusal++
				if stored[[2]string{r.call, r.typ}] > 0 {
					keptAfterRefusal++
				}
			}
		}
	}
	t.Logf("%d events posted (%v); %d newCalls acknowledged, %d of them not stored, %v counted lost; "+
		"%d newCalls posted after the first refused event, %d of them stored; spool empty %s after the database came back",
		len(results), statuses, ackedNewCalls, len(missingNewCalls), lost, postedAfterRefusal, keptAfterRefusal,
		drained.Round(100*time.Millisecond))

	if firstRefusal.IsZero() && len(missingNewCalls) == 0 {
		t.Fatalf("the spool never refused an event in %d posted: the test proves nothing", len(results))
	}
	if len(badXML) > 0 {
		t.Errorf("%d newCalls not answered 200 with their XML:%s", len(badXML), examples(badXML, 5))
	}
	if int(lost) != len(missingNewCalls) {
		t.Errorf("%d newCalls were acknowledged but not stored, and callstate_events_total{source=\"sipgate\",type=\"newCall\",outcome=\"lost\"} is %v: must be equal:%s",
			len(missingNewCalls), lost, examples(missingNewCalls, 5))
	}
	var unlogged []eventResult
	for _, r := range missingNewCalls {
		if !errorLogged(logs.String(), r.call) {
			unlogged = append(unlogged, r)
		}
	}
	if len(unlogged) > 0 {
		t.Errorf("%d lost newCalls have no error logged with their call_id:%s", len(unlogged), examples(unlogged, 5))
	}
	if len(missingOthers) > 0 {
		t.Errorf("%d events other than newCall were answered 2xx but are not in the journal:%s", len(missingOthers), examples(missingOthers, 5))
	}
	if !firstRefusal.IsZero() {
		saw503 := false
		for _, r := range ready {
			if !r.at.Before(firstRefusal) && r.at.Before(stoppedPosting) && r.status == http.StatusServiceUnavailable {
				saw503 = true
				break
			}
		}
		if !saw503 {
			t.Errorf("/readyz was not 503 while the spool refused events (%d probes)", len(ready))
		}
		if postedAfterRefusal > 0 && keptAfterRefusal == 0 {
			// The bound keeps SPOOL_RESERVE_BYTES for newCall; a full
			// disk gives up the ballast file that holds room for them.
			t.Errorf("none of the %d newCalls posted after the spool first refused an event was kept: no room is reserved for newCall (bound=%v)", postedAfterRefusal, bound)
		}
	}
}

// journalCounts counts the journal rows by call and type of the calls
// whose key is LIKE pattern.
func journalCounts(dbURL, pattern string) (map[[2]string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(ctx, `SELECT call_key, type, count(*) FROM call_event
		WHERE source = 'sipgate' AND call_key LIKE $1 GROUP BY 1, 2`, pattern)
	out := map[[2]string]int{}
	var key, typ string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&key, &typ, &n}, func() error {
		out[[2]string{key, typ}] = n
		return nil
	})
	return out, err
}

// errorLogged reports whether logs hold an error line about the call id.
func errorLogged(logs, id string) bool {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "level=ERROR") && (strings.Contains(line, "call_id="+id+" ") || strings.HasSuffix(line, "call_id="+id)) {
			return true
		}
	}
	return false
}

// TestShutdownFrozenDatabase sends SIGTERM to the service while its
// database is frozen and events wait in its spool: it exits within
// SHUTDOWN_TIMEOUT (and a little), and the next start applies what it kept.
func TestShutdownFrozenDatabase(t *testing.T) {
	pg := newTestPG(t, true)
	env := map[string]string{
		"DATABASE_URL": pg.url, "DATA_DIR": t.TempDir(), "SIPGATE_VERIFY_SIGNATURE": "false",
		"SHUTDOWN_TIMEOUT": "3s", "LOG_LEVEL": "info",
	}
	c := startChild(t, env)
	before := summarize(startCalls([]string{c.base}, "before", 1, 1, 0).wait())
	checkRefused(t, before)

	thaw := pg.freeze(t)
	frozen := summarize(startCalls([]string{c.base}, "frozen", 2, 2, 0).wait())
	checkRefused(t, frozen)

	began := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	const limit = 3*time.Second + 2*time.Second
	select {
	case <-c.done:
		took := time.Since(began)
		t.Logf("exited %s after SIGTERM: %v", took.Round(10*time.Millisecond), c.err)
		if took > limit {
			t.Errorf("exited %s after SIGTERM, over SHUTDOWN_TIMEOUT=3s + 2s\n%s", took.Round(10*time.Millisecond), tail(c.logs.String(), 20))
		}
	case <-time.After(10 * time.Second):
		// SIGQUIT makes it print where its goroutines wait.
		state := procState(c.cmd.Process.Pid)
		c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
		logs, dump, _ := strings.Cut(c.logs.String(), "SIGQUIT")
		t.Errorf("still running (state %s) 10s after SIGTERM with SHUTDOWN_TIMEOUT=3s\n%s\ngoroutines of callstate then:\n%s",
			state, tail(logs, 10), ownGoroutines(dump, 120))
	}
	thaw()

	c = startChild(t, env)
	if took, ok, why := waitFor(15*time.Second, spoolsEmpty(c.base)); !ok {
		t.Errorf("spool not empty within 15s of the restart: %s", why)
	} else {
		t.Logf("restarted; spool empty after %s", took.Round(100*time.Millisecond))
	}
	checkWholeCalls(t, pg.url, append(before.acked, frozen.acked...))
}

// ownGoroutines returns the goroutines of a Go traceback that run
// callstate's code, at most n lines.
func ownGoroutines(dump string, n int) string {
	var out []string
	for _, g := range strings.Split(dump, "\n\n") {
		if strings.Contains(g, "github.com/callstate/callstate/") && !strings.Contains(g, "testing.tRunner") {
			out = append(out, strings.Split(strings.TrimSpace(g), "\n")...)
			out = append(out, "")
		}
	}
	if len(out) > n {
		out = append(out[:n], "…")
	}
	return strings.Join(out, "\n")
}
