package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store/storetest"
)

// runMainEnv makes the test binary run the service itself, so that tests
// can kill it like a real process.
const runMainEnv = "CALLSTATE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	storetest.Main(m)
}

// freePort returns a port on 127.0.0.1 that was free a moment ago, drawn
// outside the kernel's ephemeral range (see testpbx.FreePort).
func freePort(tb testing.TB) int { return testpbx.FreePort(tb) }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startService runs the whole service as main does, waits until it is
// ready, and returns its base URL, its log, and a stop function that
// returns run's error.
func startService(t testing.TB, env map[string]string) (string, *lockedBuffer, func() error) {
	t.Helper()
	base, logs, stop := startServiceUnready(t, env)
	client := &http.Client{Timeout: 2 * time.Second}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := client.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, logs, stop
			}
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("service not ready within 60s\n%s", logs)
		}
	}
}

// postCapture replays sipgate's captured, signed newCall.
func postCapture(t *testing.T, base string) *http.Response {
	t.Helper()
	raw, err := os.ReadFile("../../handlers/testdata/captured-newcall.http")
	if err != nil {
		t.Fatal(err)
	}
	head, body, _ := strings.Cut(string(raw), "\n\n")
	var sig string
	for _, line := range strings.Split(head, "\n") {
		if v, ok := strings.CutPrefix(line, "X-Sipgate-Signature: "); ok {
			sig = v
		}
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/sipgate", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	req.Header.Set("X-Sipgate-Signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestRunWithDatabaseURL(t *testing.T) {
	base, logs, stop := startService(t, map[string]string{"DATABASE_URL": storetest.NewDatabase(t)})
	resp := postCapture(t, base)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `onHangup="`+base+`/webhooks/sipgate"`) {
		t.Errorf("captured newCall: %d %s", resp.StatusCode, b)
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
	for _, want := range []string{"set the incoming and outgoing webhook URL to " + base + "/webhooks/sipgate", "shutting down", "stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

// TestRunPrivatePostgres is the fresh-machine path: no DATABASE_URL, so
// the service starts its own PostgreSQL in DATA_DIR, and state survives a
// restart: the call is there after it, with its journal, and the repeat
// of its webhook is a duplicate. With no PUBLIC_URL, the first start
// tells in a few short lines where to look: the webhook URL for the
// sipgate console on the listen port, the board, the API and psql.
func TestRunPrivatePostgres(t *testing.T) {
	dir := t.TempDir()
	// The server runs as an unprivileged user, who must reach the data dir.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pgPort := freePort(t)
	env := map[string]string{"DATA_DIR": dir, "LOCAL_POSTGRES_PORT": fmt.Sprint(pgPort), "PUBLIC_URL": ""}
	base, logs, stop := startService(t, env)
	port := strings.TrimPrefix(base, "http://127.0.0.1:")
	local := "http://localhost:" + port
	resp := postCapture(t, base)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `onHangup="`+local+`/webhooks/sipgate"`) {
		t.Fatalf("captured newCall: %d %s; want its onHangup on PUBLIC_URL's default %s", resp.StatusCode, b, local)
	}
	before := getJSON200[callsPage](t, base+"/api/calls")
	if len(before.Calls) != 1 || before.Calls[0].State == "" {
		t.Fatalf("calls before the restart: %+v", before)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v\n%s", err, logs)
	}
	first := logs.String()
	for _, want := range []string{
		"sipgate console: set the incoming and outgoing webhook URL to " + local + "/webhooks/sipgate",
		"wall board: " + local + "/\"",
		"API: " + local + "/api/calls",
		fmt.Sprintf("using private PostgreSQL; connect with: psql 'postgres://postgres@127.0.0.1:%d/callstate", pgPort),
		`msg="database migrated to version `,
	} {
		if !strings.Contains(first, want) {
			t.Errorf("first start's log lacks %q:\n%s", want, first)
		}
	}
	if n := strings.Count(first, "database migrated"); n != 1 {
		t.Errorf("first start's log says database migrated %d times, want once:\n%s", n, first)
	}
	for _, line := range strings.Split(first, "\n") {
		if len(line) > 400 {
			t.Errorf("a log line of %d characters: %.200s...", len(line), line)
		}
	}
	if strings.Contains(first, "HTTP_IDLE_TIMEOUT") {
		t.Errorf("the start logs settings left at their defaults:\n%s", first)
	}
	// Again on the same data: the call is there, and the repeat is a
	// duplicate, answered 200 and not journaled again.
	base, logs, stop = startService(t, env)
	if after := getJSON200[callsPage](t, base+"/api/calls"); !reflect.DeepEqual(after, before) {
		t.Errorf("calls after the restart:\n%+v\nbefore:\n%+v", after, before)
	}
	if resp := postCapture(t, base); resp.StatusCode != http.StatusOK {
		t.Errorf("after restart: %d", resp.StatusCode)
	}
	detail := getJSON200[struct {
		State  string            `json:"state"`
		Events []json.RawMessage `json:"events"`
	}](t, fmt.Sprintf("%s/api/calls/%d", base, before.Calls[0].ID))
	if detail.State != before.Calls[0].State || len(detail.Events) != 1 {
		t.Errorf("call after the restart and the repeat: state %q, %d events; want %q and 1", detail.State, len(detail.Events), before.Calls[0].State)
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v\n%s", err, logs)
	}
	if strings.Contains(logs.String(), "database migrated") {
		t.Errorf("second start migrated again:\n%s", logs)
	}
}

// callsPage is the part of GET /api/calls the restart test compares.
type callsPage struct {
	Calls []struct {
		ID     int64  `json:"id"`
		Key    string `json:"key"`
		State  string `json:"state"`
		From   string `json:"from"`
		To     string `json:"to"`
		Events int    `json:"events"`
	} `json:"calls"`
}

// getJSON200 GETs url, wants a 200, and decodes the body into a T.
func getJSON200[T any](t *testing.T, url string) T {
	t.Helper()
	var v T
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, b)
	}
	return v
}

func TestRunBadConfig(t *testing.T) {
	err := run(context.Background(), nil, envFunc(map[string]string{"PUBLIC_URL": "nope", "LOG_LEVEL": "loud"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PUBLIC_URL") || !strings.Contains(err.Error(), "LOG_LEVEL") {
		t.Errorf("run with bad config: %v", err)
	}
}
