package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/store/localpg"
)

// hookEvent is one sipgate webhook of a call: its event name and its
// form-encoded body.
type hookEvent struct{ typ, body string }

// wholeCall is the five webhooks of one answered call in the order sipgate
// sends them: newCall, answer, the DTMF digits 4 and then 2, hangup.
func wholeCall(id string) []hookEvent {
	const parties = "direction=in&from=4917012345&to=4930123456&callId="
	return []hookEvent{
		{"newCall", "event=newCall&" + parties + id + "&user%5B%5D=Alice&userId%5B%5D=w0"},
		{"answer", "event=answer&" + parties + id + "&user=Alice&userId=w0&answeringNumber=4930123456"},
		{"dtmf", "event=dtmf&callId=" + id + "&dtmf=4"},
		{"dtmf", "event=dtmf&callId=" + id + "&dtmf=2"},
		{"hangup", "event=hangup&" + parties + id + "&cause=normalClearing"},
	}
}

// eventsPerCall is len(wholeCall(id)).
const eventsPerCall = 5

// eventResult is how one posted webhook was answered.
type eventResult struct {
	call     string
	typ      string
	index    int    // position within its call
	base     string // the instance it was posted to
	status   int    // 0 when there was no answer
	err      string // transport error, if any
	badXML   string // newCall answered 200 without its XML: what came instead
	sent     time.Time
	answered time.Time
}

// acknowledged reports whether the webhook was answered 2xx.
func (r eventResult) acknowledged() bool { return r.err == "" && r.status/100 == 2 }

// ok reports whether the webhook was answered as it must be: 2xx, and a
// newCall with its XML.
func (r eventResult) ok() bool { return r.acknowledged() && r.badXML == "" }

func (r eventResult) String() string {
	s := fmt.Sprintf("%s %s #%d to %s", r.call, r.typ, r.index, r.base)
	switch {
	case r.err != "":
		return s + ": " + r.err
	case r.badXML != "":
		return fmt.Sprintf("%s: %d but %s", s, r.status, r.badXML)
	default:
		return fmt.Sprintf("%s: %d after %s", s, r.status, r.answered.Sub(r.sent).Round(time.Millisecond))
	}
}

// callLoad is a set of callers, each posting whole calls one event after the
// other and waiting for every answer before the next event. Event i of call
// n goes to bases[(n+i) % len(bases)]: with two instances the events of a
// call alternate between them, and so does the instance that gets a call's
// first event.
type callLoad struct {
	bases    []string
	prefix   string
	client   *http.Client
	max      int64
	pause    time.Duration // between one answer and the caller's next event
	next     atomic.Int64
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	refused  atomic.Int64 // events not answered as they must be

	mu      sync.Mutex
	results []eventResult
}

// startCalls starts workers callers that post at most max whole calls with
// ids prefix-1, prefix-2, … until stopped, each pausing between an answer
// and its next event. A call that has begun is always posted to its end.
func startCalls(bases []string, prefix string, workers, max int, pause time.Duration) *callLoad {
	l := &callLoad{
		bases: bases, prefix: prefix, max: int64(max), pause: pause, stop: make(chan struct{}),
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2},
		},
	}
	for range workers {
		l.wg.Go(l.caller)
	}
	return l
}

func (l *callLoad) caller() {
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		n := l.next.Add(1)
		if n > l.max {
			return
		}
		id := fmt.Sprintf("%s-%d", l.prefix, n)
		for i, ev := range wholeCall(id) {
			r := l.post(l.bases[(int(n)+i)%len(l.bases)], ev)
			r.call, r.index = id, i
			if !r.ok() {
				l.refused.Add(1)
			}
			l.mu.Lock()
			l.results = append(l.results, r)
			l.mu.Unlock()
			time.Sleep(l.pause)
		}
	}
}

func (l *callLoad) post(base string, ev hookEvent) eventResult {
	r := eventResult{typ: ev.typ, base: base, sent: time.Now()}
	resp, err := l.client.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(ev.body))
	r.answered = time.Now()
	if err != nil {
		r.err = err.Error()
		return r
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.status = resp.StatusCode
	if err != nil {
		r.err = "reading the answer: " + err.Error()
		return r
	}
	if ev.typ == "newCall" {
		ct := resp.Header.Get("Content-Type")
		switch {
		case resp.StatusCode != http.StatusOK:
			r.badXML = "newCall must always be answered 200"
		case !strings.Contains(ct, "xml"):
			r.badXML = fmt.Sprintf("Content-Type %q", ct)
		case !strings.Contains(string(body), "<Response"):
			r.badXML = fmt.Sprintf("body %.200q", body)
		}
	}
	return r
}

// finish stops the callers once their current calls are posted and returns
// every result.
func (l *callLoad) finish() []eventResult {
	l.stopOnce.Do(func() { close(l.stop) })
	return l.wait()
}

// wait waits until the callers have posted their max calls and returns every
// result.
func (l *callLoad) wait() []eventResult {
	l.wg.Wait()
	l.client.CloseIdleConnections()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// callSummary sums up a load's results by call.
type callSummary struct {
	calls   int      // calls begun
	events  int      // events posted
	acked   []string // calls whose every event was answered as it must be
	refused []eventResult
}

func summarize(results []eventResult) callSummary {
	var s callSummary
	byCall := map[string][]eventResult{}
	var order []string
	for _, r := range results {
		if _, ok := byCall[r.call]; !ok {
			order = append(order, r.call)
		}
		byCall[r.call] = append(byCall[r.call], r)
		if !r.ok() {
			s.refused = append(s.refused, r)
		}
	}
	s.calls, s.events = len(order), len(results)
	for _, id := range order {
		rs := byCall[id]
		if len(rs) == eventsPerCall && !slices.ContainsFunc(rs, func(r eventResult) bool { return !r.ok() }) {
			s.acked = append(s.acked, id)
		}
	}
	return s
}

// examples lists the first n results, one a line.
func examples(rs []eventResult, n int) string {
	var b strings.Builder
	for i, r := range rs {
		if i == n {
			fmt.Fprintf(&b, "\n\t… and %d more", len(rs)-n)
			break
		}
		b.WriteString("\n\t" + r.String())
	}
	return b.String()
}

// checkRefused fails the test when any event was not answered as it must
// be (the spool has room for all of them).
func checkRefused(t *testing.T, s callSummary) {
	t.Helper()
	if len(s.refused) > 0 {
		t.Errorf("%d of %d events were not answered 2xx (newCall with its XML):%s", len(s.refused), s.events, examples(s.refused, 5))
	}
}

// callRow is what the checks read about one call.
type callRow struct {
	id                       string
	journal                  int
	exists                   bool
	state, dtmf, cause       string
	started, answered, ended *time.Time
}

func (r callRow) String() string {
	ts := func(p *time.Time) string {
		if p == nil {
			return "null"
		}
		return p.Format("15:04:05.000000")
	}
	if !r.exists {
		return fmt.Sprintf("%s: %d journal rows, no call_state row", r.id, r.journal)
	}
	return fmt.Sprintf("%s: %d journal rows, state %s, dtmf %q, cause %q, started %s, answered %s, ended %s",
		r.id, r.journal, r.state, r.dtmf, r.cause, ts(r.started), ts(r.answered), ts(r.ended))
}

// readCalls reads the journal count and the row of every call in ids.
func readCalls(dbURL string, ids []string) ([]callRow, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(ctx, `
		SELECT k.id,
		       (SELECT count(*) FROM call_event e WHERE e.source = 'sipgate' AND e.call_key = k.id),
		       c.call_key IS NOT NULL, coalesce(c.state::text, ''), coalesce(c.dtmf, ''), coalesce(c.hangup_cause, ''),
		       c.started_at, c.answered_at, c.ended_at
		FROM unnest($1::text[]) AS k(id)
		LEFT JOIN call_state c ON c.source = 'sipgate' AND c.call_key = k.id
		ORDER BY k.id`, ids)
	var out []callRow
	var r callRow
	_, err = pgx.ForEachRow(rows, []any{&r.id, &r.journal, &r.exists, &r.state, &r.dtmf, &r.cause, &r.started, &r.answered, &r.ended}, func() error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// badCalls counts what is wrong with the rows of whole calls.
type badCalls struct {
	journal, missing, state, dtmf, cause, unanswered, order int
	dtmfSeen                                                map[string]int // the wrong dtmf values and how often
	samples                                                 []callRow
}

func (b badCalls) total() int {
	return b.journal + b.missing + b.state + b.dtmf + b.cause + b.unanswered + b.order
}

func (b badCalls) String() string {
	s := fmt.Sprintf("%d without exactly %d journal rows, %d without a row, %d not ended, %d with dtmf other than '42' %v, "+
		"%d with hangup_cause other than 'normalClearing', %d without answered_at, %d without started_at ≤ answered_at ≤ ended_at",
		b.journal, eventsPerCall, b.missing, b.state, b.dtmf, b.dtmfSeen, b.cause, b.unanswered, b.order)
	for _, r := range b.samples {
		s += "\n\t" + r.String()
	}
	return s
}

func judge(rows []callRow) badCalls {
	b := badCalls{dtmfSeen: map[string]int{}}
	for _, r := range rows {
		bad := false
		if r.journal != eventsPerCall {
			b.journal++
			bad = true
		}
		if !r.exists {
			b.missing++
			bad = true
		} else {
			if r.state != "ended" {
				b.state++
				bad = true
			}
			if r.dtmf != "42" {
				b.dtmf++
				b.dtmfSeen[r.dtmf]++
				bad = true
			}
			if r.cause != "normalClearing" {
				b.cause++
				bad = true
			}
			if r.answered == nil {
				b.unanswered++
				bad = true
			}
			if r.started == nil || r.answered == nil || r.ended == nil ||
				r.started.After(*r.answered) || r.answered.After(*r.ended) {
				b.order++
				bad = true
			}
		}
		if bad && len(b.samples) < 5 {
			b.samples = append(b.samples, r)
		}
	}
	return b
}

// checkWholeCalls asserts that every call in ids (posted with wholeCall) has
// its five events in the journal exactly once and a row that is ended,
// answered, hung up normally, with the digits 42, and timestamps in order.
func checkWholeCalls(t *testing.T, dbURL string, ids []string) {
	t.Helper()
	rows, err := readCalls(dbURL, ids)
	if err != nil {
		t.Fatalf("reading the calls: %v", err)
	}
	if b := judge(rows); b.total() > 0 {
		t.Errorf("of %d acknowledged calls: %s", len(ids), b)
	}
}

// metric returns the sum of the samples of the metric name whose labels
// include labels, from base's /metrics, and whether there was any.
func metric(base, name string, labels map[string]string) (float64, bool, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		s, ok := parseSample(sc.Text())
		if !ok || s.name != name {
			continue
		}
		match := true
		for k, v := range labels {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			sum += s.value
			found = true
		}
	}
	return sum, found, sc.Err()
}

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseSample parses one line of Prometheus' text format:
// name{label="value",…} value [timestamp].
func parseSample(line string) (sample, bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return sample{}, false
	}
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return sample{}, false
	}
	s.name, line = line[:i], line[i:]
	if line[0] == '{' {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, ", ")
			if line == "" {
				return sample{}, false
			}
			if line[0] == '}' {
				line = line[1:]
				break
			}
			eq := strings.Index(line, `="`)
			if eq < 0 {
				return sample{}, false
			}
			key := line[:eq]
			line = line[eq+2:]
			var val strings.Builder
			for {
				if line == "" {
					return sample{}, false
				}
				c := line[0]
				line = line[1:]
				if c == '"' {
					break
				}
				if c == '\\' && line != "" {
					switch line[0] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(line[0])
					}
					line = line[1:]
					continue
				}
				val.WriteByte(c)
			}
			s.labels[key] = val.String()
		}
	}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return sample{}, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return sample{}, false
	}
	s.value = v
	return s, true
}

// mustMetric is metric that fails the test when /metrics cannot be read.
func mustMetric(t *testing.T, base, name string, labels map[string]string) float64 {
	t.Helper()
	v, _, err := metric(base, name, labels)
	if err != nil {
		t.Fatalf("%s: %v", base, err)
	}
	return v
}

// waitFor polls cond every 100 ms until it holds or limit has passed. It
// returns how long that took, whether it held, and cond's last word on why
// not.
func waitFor(limit time.Duration, cond func() (bool, string)) (time.Duration, bool, string) {
	began := time.Now()
	for {
		ok, why := cond()
		if ok {
			return time.Since(began), true, ""
		}
		if time.Since(began) > limit {
			return time.Since(began), false, why
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// spoolsEmpty reports whether every instance's spool is empty.
func spoolsEmpty(bases ...string) func() (bool, string) {
	return func() (bool, string) {
		var why []string
		for _, b := range bases {
			v, found, err := metric(b, "callstate_spool_events", nil)
			switch {
			case err != nil:
				why = append(why, fmt.Sprintf("%s: %v", b, err))
			case !found:
				why = append(why, b+": no callstate_spool_events")
			case v != 0:
				why = append(why, fmt.Sprintf("%s: %v events spooled", b, v))
			}
		}
		return len(why) == 0, strings.Join(why, "; ")
	}
}

// waitSpoolsEmpty waits up to limit for every instance's spool to be empty
// and reports an error if one is not.
func waitSpoolsEmpty(t *testing.T, limit time.Duration, bases ...string) time.Duration {
	t.Helper()
	took, ok, why := waitFor(limit, spoolsEmpty(bases...))
	if !ok {
		t.Errorf("spools not empty within %s: %s", limit, why)
	}
	return took
}

// requireSpooled fails the test unless some instance put events into its
// spool: otherwise the outage never reached it and the test proves nothing.
func requireSpooled(t *testing.T, bases ...string) float64 {
	t.Helper()
	var n float64
	for _, b := range bases {
		n += mustMetric(t, b, "callstate_spool_appended_total", nil)
	}
	if n == 0 {
		t.Fatal("no event went to a spool (callstate_spool_appended_total is 0): the outage never reached the spool; the test proves nothing")
	}
	return n
}

// testPG is a private PostgreSQL the test stops, starts and freezes.
type testPG struct {
	opts localpg.Options
	url  string
	srv  *localpg.Server
}

// newTestPG prepares a server on a port of its own; it is started when
// start is true, else its URL leads nowhere until start is called.
func newTestPG(t *testing.T, start bool) *testPG {
	t.Helper()
	dir := t.TempDir()
	// When root, the server runs as another user, who must reach its dir.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	p := &testPG{
		opts: localpg.Options{DataDir: filepath.Join(dir, "pg"), Port: port},
		url:  fmt.Sprintf("postgres://postgres@127.0.0.1:%d/callstate?sslmode=disable", port),
	}
	t.Cleanup(func() {
		if p.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p.srv.Stop(ctx)
		}
	})
	if start {
		p.start(t)
	}
	return p
}

func (p *testPG) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv, err := localpg.Start(ctx, p.opts)
	if err != nil {
		t.Fatal(err)
	}
	p.srv = srv
	if srv.URL() != p.url {
		t.Fatalf("the server's URL is %s, not %s", srv.URL(), p.url)
	}
}

func (p *testPG) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	p.srv = nil
}

// freeze stops every process of the server with SIGSTOP: the postmaster
// first, so that it forks no more, then its children. Connections stay open
// and nothing answers. The returned thaw sends SIGCONT to all of them; it
// also runs at the end of the test, whatever happens.
func (p *testPG) freeze(t *testing.T) (thaw func()) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.opts.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}
	var (
		mu     sync.Mutex
		frozen []int
		once   sync.Once
	)
	thaw = func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			for _, pid := range slices.Backward(frozen) {
				syscall.Kill(pid, syscall.SIGCONT)
			}
		})
	}
	t.Cleanup(thaw)
	stopOne := func(pid int) {
		mu.Lock()
		defer mu.Unlock()
		if slices.Contains(frozen, pid) {
			return
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err == nil {
			frozen = append(frozen, pid)
		}
	}
	stopOne(pm)
	if !slices.Contains(frozen, pm) {
		t.Fatalf("SIGSTOP to postmaster %d failed", pm)
	}
	// A child forked just before the postmaster stopped shows up in a
	// second look.
	for range 2 {
		for _, pid := range childrenOf(pm) {
			stopOne(pid)
		}
	}
	if _, ok, why := waitFor(2*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		for _, pid := range frozen {
			if st := procState(pid); st != "T" && st != "" {
				return false, fmt.Sprintf("process %d is in state %s", pid, st)
			}
		}
		return true, ""
	}); !ok {
		t.Fatalf("postgres not frozen: %s", why)
	}
	mu.Lock()
	t.Logf("froze postmaster %d and %d children", pm, len(frozen)-1)
	mu.Unlock()
	return thaw
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := procPPID(child); ok && ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// procStat returns the fields of /proc/pid/stat after the command name:
// state, ppid, ….
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

func procPPID(pid int) (int, bool) {
	f := procStat(pid)
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// procState is the process's state letter (R, S, T, Z, …), or "" when it
// is gone.
func procState(pid int) string {
	if f := procStat(pid); len(f) > 0 {
		return f[0]
	}
	return ""
}

// startServiceUnready runs the service like startService but returns as
// soon as it answers /healthz, ready or not. It fails the test if the
// service exits first.
func startServiceUnready(t testing.TB, env map[string]string) (string, *lockedBuffer, func() error) {
	t.Helper()
	port := freePort(t)
	if env["DATA_DIR"] == "" {
		env["DATA_DIR"] = t.TempDir()
	}
	env["LISTEN_ADDR"] = fmt.Sprintf("127.0.0.1:%d", port)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if _, ok := env["PUBLIC_URL"]; !ok { // PUBLIC_URL "" leaves it to the default
		env["PUBLIC_URL"] = base
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-env-file", os.DevNull}, envFunc(env), logs) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				runErr = errors.New("service did not stop within 30s")
			}
		})
		return runErr
	}
	client := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := client.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			once.Do(func() { cancel(); runErr = err })
			t.Fatalf("service exited instead of serving: %v\n%s", err, tail(logs.String(), 20))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("service does not answer /healthz within 30s\n%s", tail(logs.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { stop() })
	return base, logs, stop
}

// child is the service running as a process of its own.
type child struct {
	cmd  *exec.Cmd
	base string
	logs *lockedBuffer
	done chan struct{} // closed when it has exited
	err  error         // its exit, once done is closed
}

// startChild runs the service as a child process with env added to the
// test's environment and waits until it is ready. It is killed at the end
// of the test if it still runs.
func startChild(t *testing.T, env map[string]string) *child {
	t.Helper()
	port := freePort(t)
	c := &child{base: fmt.Sprintf("http://127.0.0.1:%d", port), logs: &lockedBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0])
	c.cmd.Env = append(os.Environ(), runMainEnv+"=1",
		fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", port), "PUBLIC_URL="+c.base)
	for k, v := range env {
		c.cmd.Env = append(c.cmd.Env, k+"="+v)
	}
	c.cmd.Stdout, c.cmd.Stderr = c.logs, c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.done
	})
	client := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := client.Get(c.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
		}
		select {
		case <-c.done:
			t.Fatalf("service exited: %v\n%s", c.err, tail(c.logs.String(), 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not ready within 30s\n%s", tail(c.logs.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// probe is one timed GET.
type probe struct {
	path    string
	status  int
	ctype   string
	body    string
	err     error
	elapsed time.Duration
}

func (p probe) String() string {
	if p.err != nil {
		return fmt.Sprintf("GET %s: %v after %s", p.path, p.err, p.elapsed.Round(time.Millisecond))
	}
	return fmt.Sprintf("GET %s: %d %.200q after %s", p.path, p.status, p.body, p.elapsed.Round(time.Millisecond))
}

// get requests base+path, giving up after limit.
func get(base, path string, limit time.Duration) probe {
	p := probe{path: path}
	client := &http.Client{Timeout: limit}
	began := time.Now()
	resp, err := client.Get(base + path)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		p.status, p.ctype, p.body = resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	p.err, p.elapsed = err, time.Since(began)
	return p
}

// jsonError returns the error message of a {"error": "..."} body, or "".
func (p probe) jsonError() string {
	var e struct {
		Error string `json:"error"`
	}
	if !strings.Contains(p.ctype, "json") || json.Unmarshal([]byte(p.body), &e) != nil {
		return ""
	}
	return e.Error
}
