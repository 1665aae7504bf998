package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store/storetest"
)

// sseEvent is one event of /api/stream.
type sseEvent struct{ id, typ, data string }

// readSSE sends the events of an open stream to out until it ends.
func readSSE(res *http.Response, out chan<- sseEvent) {
	defer close(out)
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.typ != "" {
				out <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[6:]
		}
	}
}

// openSSE opens base's /api/stream, resuming after lastID when it is not "".
func openSSE(t *testing.T, ctx context.Context, base, lastID string) <-chan sseEvent {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		t.Fatalf("stream: %s", res.Status)
	}
	out := make(chan sseEvent, 10000)
	go readSSE(res, out)
	return out
}

// TestStreamResumeAfterRestart is the resume check with real
// processes: a stream client of instance A reads, then disconnects for
// 30 s. Meanwhile A is killed with SIGKILL and started again, the same
// instance (its port and data directory), and calls go on through the
// other instance B and through A, before, during and after A's restart.
// The client then resumes on B with its Last-Event-ID and gets every typed
// event of those 30 s exactly once, in feed order, then live ones.
func TestStreamResumeAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 40 s; make test runs it")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dbURL := storetest.NewDatabase(t)
	type instance struct {
		cmd       *exec.Cmd
		base, dir string
		port      int
	}
	start := func(in *instance) {
		t.Helper()
		in.cmd = exec.Command(os.Args[0])
		in.cmd.Env = append(os.Environ(), runMainEnv+"=1",
			"DATABASE_URL="+dbURL, "DATA_DIR="+in.dir, "SIPGATE_VERIFY_SIGNATURE=false",
			fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", in.port), "PUBLIC_URL="+in.base, "LOG_LEVEL=warn")
		in.cmd.Stderr = os.Stderr
		if err := in.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmd := in.cmd
		t.Cleanup(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		})
		waitReady(t, in.base)
	}
	newInstance := func() *instance {
		port := freePort(t)
		in := &instance{port: port, base: fmt.Sprintf("http://127.0.0.1:%d", port), dir: t.TempDir()}
		start(in)
		return in
	}
	a, b := newInstance(), newInstance()
	post := func(in *instance, form url.Values) {
		t.Helper()
		res, err := http.Post(in.base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("post to %s: %s", in.base, res.Status)
		}
	}
	// call posts a whole call through in: rung, answered or not, ended.
	call := func(in *instance, id string, user int, answered bool) {
		t.Helper()
		u := fmt.Sprintf("w%d", user)
		post(in, url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {"4917012345"}, "to": {"4930555"},
			"callId": {id}, "user[]": {"User " + u}, "userId[]": {u}})
		cause := "cancel"
		if answered {
			post(in, url.Values{"event": {"answer"}, "direction": {"in"}, "callId": {id}, "user": {"User " + u},
				"userId": {u}, "answeringNumber": {"4930555"}})
			cause = "normalClearing"
		}
		post(in, url.Values{"event": {"hangup"}, "direction": {"in"}, "callId": {id}, "cause": {cause}})
	}

	// The client reads A, sees a call ring, and leaves.
	sctx, scancel := context.WithCancel(ctx)
	evs := openSSE(t, sctx, a.base, "")
	call(b, "before", 0, true)
	var last string
	for deadline := time.After(15 * time.Second); last == ""; {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatal("the stream ended")
			}
			if ev.typ == callstate.EventRinging && strings.Contains(ev.data, `"before"`) {
				last = ev.id
			}
		case <-deadline:
			t.Fatal("no call.ringing of the first call within 15 s")
		}
	}
	scancel()
	left := time.Now()

	// 30 s away: calls through both, A killed and started again in between.
	n := 0
	next := func(in *instance) {
		call(in, fmt.Sprintf("away%d", n), n%3, n%2 == 0)
		n++
	}
	for time.Since(left) < 5*time.Second {
		next(a)
		next(b)
		time.Sleep(500 * time.Millisecond)
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.cmd.Wait()
	for time.Since(left) < 12*time.Second {
		next(b)
		time.Sleep(500 * time.Millisecond)
	}
	start(a) // the same instance: its port and data directory
	for time.Since(left) < 30*time.Second {
		next(a)
		next(b)
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("%d calls while the client was away for %s; A restarted", n, time.Since(left).Round(time.Second))

	// What the feed holds after the client's last id, once every journey
	// is written (the grace of unanswered ones) and numbered.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	typed := map[string]bool{}
	for _, ty := range callstate.FeedTypes {
		typed[ty] = true
	}
	from, _ := strconv.ParseInt(last, 10, 64)
	// One statement, so one snapshot: a journey refreshed and numbered
	// between two reads would be counted done and not be in want.
	var want, told []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var pending, unnumbered int
		err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM journey_pending), (SELECT count(*) FROM call_feed_new),
			ARRAY(SELECT id::text || ' ' || type FROM call_feed_event WHERE id > $1 AND type = ANY ($2) ORDER BY id),
			ARRAY(SELECT journey_id || ' ' || type FROM call_feed_event WHERE id > $1 AND type = ANY ($3))`,
			from, callstate.FeedTypes, []string{callstate.EventJourneyEnded, callstate.EventMissed}).
			Scan(&pending, &unnumbered, &want, &told)
		if err != nil {
			t.Fatal(err)
		}
		if pending == 0 && unnumbered == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("journeys or feed ids still pending 20 s after the calls: %d, %d", pending, unnumbered)
		}
	}
	// Every call of those 30 s ended its journey, and the unanswered ones
	// (odd numbers) were missed: say which call lacks what, and its rows.
	for i := range n {
		id := fmt.Sprintf("away%d", i)
		lacks := !slices.Contains(told, id+" "+callstate.EventJourneyEnded) ||
			i%2 == 1 && !slices.Contains(told, id+" "+callstate.EventMissed)
		if !lacks {
			continue
		}
		var leg, journey, feed string
		conn.QueryRow(ctx, `SELECT row_to_json(c)::text FROM call_state c WHERE call_id = $1`, id).Scan(&leg)
		conn.QueryRow(ctx, `SELECT row_to_json(j)::text FROM journey j WHERE journey_id = $1`, id).Scan(&journey)
		conn.QueryRow(ctx, `SELECT string_agg(coalesce(id::text, '-') || ' ' || type, ', ' ORDER BY id) FROM call_feed_event WHERE journey_id = $1`, id).Scan(&feed)
		t.Errorf("call %s (answered %v) lacks its journey.ended or call.missed after feed id %d\ncall: %s\njourney: %s\nfeed: %s",
			id, i%2 == 0, from, leg, journey, feed)
	}
	if t.Failed() {
		t.FailNow()
	}

	// The client comes back, to B, with its last id.
	evs = openSSE(t, ctx, b.base, last)
	var got []string
	for deadline := time.After(20 * time.Second); len(got) < len(want); {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatal("the resumed stream ended")
			}
			if ev.typ == "snapshot" {
				t.Fatalf("the resume from %s got a snapshot", last)
			}
			if typed[ev.typ] {
				got = append(got, ev.id+" "+ev.typ)
			}
		case <-deadline:
			t.Fatalf("after 20 s, %d of %d typed events", len(got), len(want))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("resumed with %d events, want the feed's %d in order:\n%v\nwant\n%v", len(got), len(want), got, want)
	}
	// Live events follow, and nothing of before comes again.
	call(a, "live", 1, false)
	for deadline := time.After(15 * time.Second); ; {
		select {
		case ev := <-evs:
			if !typed[ev.typ] {
				continue
			}
			if id, _ := strconv.ParseInt(ev.id, 10, 64); slices.Contains(got, ev.id+" "+ev.typ) || id <= from {
				t.Fatalf("event %s %s came again", ev.id, ev.typ)
			}
			if ev.typ == callstate.EventRinging && strings.Contains(ev.data, `"live"`) {
				t.Logf("resumed on B: %d typed events of the 30 s once each, in order, then live ones", len(want))
				return
			}
		case <-deadline:
			t.Fatal("no live event after the resume")
		}
	}
}
