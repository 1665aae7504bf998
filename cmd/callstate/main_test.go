package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
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
// restart.
func TestRunPrivatePostgres(t *testing.T) {
	dir := t.TempDir()
	// The server runs as an unprivileged user, who must reach the data dir.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{"DATA_DIR": dir, "LOCAL_POSTGRES_PORT": fmt.Sprint(freePort(t))}
	base, logs, stop := startService(t, env)
	if resp := postCapture(t, base); resp.StatusCode != http.StatusOK {
		t.Fatalf("captured newCall: %d", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v\n%s", err, logs)
	}
	if !strings.Contains(logs.String(), "using private PostgreSQL") {
		t.Errorf("log does not say where the database is:\n%s", logs)
	}
	// Again on the same data: the repeat is a duplicate, answered 200.
	base, logs, stop = startService(t, env)
	if resp := postCapture(t, base); resp.StatusCode != http.StatusOK {
		t.Errorf("after restart: %d", resp.StatusCode)
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v\n%s", err, logs)
	}
}

func TestRunBadConfig(t *testing.T) {
	err := run(context.Background(), nil, envFunc(map[string]string{"PUBLIC_URL": "nope", "LOG_LEVEL": "loud"}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PUBLIC_URL") || !strings.Contains(err.Error(), "LOG_LEVEL") {
		t.Errorf("run with bad config: %v", err)
	}
}
