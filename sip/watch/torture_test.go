package watch

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate/internal/testpbx"
)

// TestTortureMessages sends the RFC 4475 torture messages to a running
// subscriber's socket. Each is answered or dropped; none changes what is
// stored, and afterwards the subscriber still serves its subscription.
func TestTortureMessages(t *testing.T) {
	t.Parallel()
	n := startNotifier(t, nil)
	st := testpbx.OpenStore(t)
	if err := st.AddExtensions(t.Context(), []string{"100"}); err != nil {
		t.Fatal(err)
	}
	s := startSubscriber(t, Config{PBXAddr: n.addr, Domain: "pbx.test", Store: st, Expires: time.Minute})
	var sub *fakeSub
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if sub = n.sub("100"); sub == nil {
			return "no SUBSCRIBE for 100"
		}
		return ""
	})
	addr := strings.TrimPrefix(strings.SplitN(s.Contact(), ";", 2)[0], "sip:")
	if i := strings.LastIndex(addr, "@"); i >= 0 {
		addr = addr[i+1:]
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	files, _ := filepath.Glob("testdata/torture/*/*.dat")
	if len(files) < 40 {
		t.Fatalf("found %d torture messages", len(files))
	}
	answered := 0
	for _, f := range files {
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The files keep LF line ends; SIP wants CRLF.
		msg = bytes.ReplaceAll(bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		if _, err := conn.Write(msg); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		buf := make([]byte, 65535)
		if k, err := conn.Read(buf); err == nil {
			answered++
			if status := string(bytes.SplitN(buf[:k], []byte("\r\n"), 2)[0]); strings.Contains(status, " 200 ") {
				t.Errorf("%s was accepted: %s", filepath.Base(f), status)
			}
		}
	}
	t.Logf("%d torture messages: %d answered, %d dropped; %d counted as outside any subscription",
		len(files), answered, len(files)-answered, s.Stats().Stray)
	if s.Stats().Stray == 0 {
		t.Error("no torture request was counted as outside any subscription")
	}

	if calls := sipCalls(t, st, "100"); len(calls) != 0 {
		t.Errorf("torture messages stored calls: %+v", calls)
	}
	code, err := n.notify(t.Context(), sub, "active;expires=60", dialogDoc("100", 7, "d1", "early"))
	if err != nil || code != 200 {
		t.Fatalf("NOTIFY after the torture: %d, %v", code, err)
	}
	testpbx.WaitFor(t, 5*time.Second, func() string {
		if calls := sipCalls(t, st, "100"); len(calls) != 1 {
			return "the NOTIFY after the torture was not stored"
		}
		return ""
	})
}
