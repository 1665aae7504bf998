package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// TestIntervalAndRequestLog runs a short fixed-rate load against a local
// server and checks the INTERVAL lines, the request log and that the
// RESULT line agrees with both.
func TestIntervalAndRequestLog(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if n.Add(1)%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("<Response/>"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	reqs := filepath.Join(dir, "requests.txt")
	var out bytes.Buffer
	err := run([]string{"-url", srv.URL, "-rate", "400", "-c", "8", "-d", "1s",
		"-interval", "250ms", "-requests", reqs, "-label", "t"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	var intervals, intervalOK, intervalFailed int64
	var result map[string]string
	for line := range strings.SplitSeq(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "INTERVAL "):
			kv := fields(line)
			intervals++
			intervalOK += atoi(t, kv["ok"])
			intervalFailed += atoi(t, kv["failed"])
			for _, k := range []string{"t_s", "p50_ms", "p99_ms", "max_ms"} {
				if _, ok := kv[k]; !ok {
					t.Errorf("INTERVAL line without %s: %s", k, line)
				}
			}
		case strings.HasPrefix(line, "RESULT "):
			result = fields(line)
		}
	}
	if result == nil {
		t.Fatalf("no RESULT line in\n%s", out.String())
	}
	if intervals < 4 || intervals > 6 {
		t.Errorf("%d INTERVAL lines for 1s at 250ms, want 4 to 6\n%s", intervals, out.String())
	}
	ok, failed := atoi(t, result["ok"]), atoi(t, result["failed"])
	if ok < 300 || failed == 0 {
		t.Errorf("ok %d, failed %d: want about 360 and 40", ok, failed)
	}
	if intervalOK != ok || intervalFailed != failed {
		t.Errorf("INTERVAL lines add up to ok %d failed %d, RESULT says ok %d failed %d", intervalOK, intervalFailed, ok, failed)
	}
	b, err := os.ReadFile(reqs)
	if err != nil {
		t.Fatal(err)
	}
	var logOK, logFailed int64
	var prev int64
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("request line %q: want send time, latency, status", line)
		}
		at, lat := atoi(t, f[0]), atoi(t, f[1])
		if at < 1e15 || lat < 0 {
			t.Errorf("request line %q: send time not in Unix µs or negative latency", line)
		}
		if at < prev-100_000 {
			t.Errorf("request line %q: send time far before the previous one", line)
		}
		prev = at
		if f[2] == "200" {
			logOK++
		} else {
			logFailed++
		}
	}
	if logOK != ok || logFailed != failed {
		t.Errorf("request log has ok %d failed %d, RESULT says ok %d failed %d", logOK, logFailed, ok, failed)
	}
}

func fields(line string) map[string]string {
	kv := map[string]string{}
	for _, f := range strings.Fields(line)[1:] {
		k, v, _ := strings.Cut(f, "=")
		kv[k] = v
	}
	return kv
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// TestSignOnly makes the file of pre-signed events without sending any:
// the target is a server that fails the test when it is asked anything.
func TestSignOnly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("-sign-only sent %s %s", r.Method, r.URL)
	}))
	defer srv.Close()
	dir := t.TempDir()
	if err := run([]string{"-genkey", dir}, io.Discard); err != nil {
		t.Fatal(err)
	}
	signed := filepath.Join(dir, "signed.txt")
	var out bytes.Buffer
	if err := run([]string{"-url", srv.URL, "-key", filepath.Join(dir, "private.pem"), "-signed", signed, "-n", "3", "-sign-only"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "3 signed events") {
		t.Errorf("output %q", out.String())
	}
	if fi, err := os.Stat(signed); err != nil || fi.Size() == 0 {
		t.Errorf("signed file: %v, %v", fi, err)
	}
	if err := run([]string{"-url", srv.URL, "-sign-only"}, io.Discard); err == nil {
		t.Error("-sign-only without -key, -signed and -n: no error")
	}
}
