package presence

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
)

// TestAgentTLS: a phone subscribes over TLS; the NOTIFY comes back on its
// connection.
func TestAgentTLS(t *testing.T) {
	files := testpbx.NewCertificate(t)
	pair, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	st := testpbx.OpenStore(t)
	applyCall(t, st, "old", callstate.Update{Extension: "w0", UserIDs: []string{"w0"}, State: callstate.StateEnded})
	a := startAgent(t, st, Config{Transport: "tls", AllowAnonymous: true,
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}})
	conn, err := tls.Dial("tcp", a.Addr(), &tls.Config{InsecureSkipVerify: true}) // the test's own certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	local := conn.LocalAddr().String()
	fmt.Fprintf(conn, "SUBSCRIBE sip:w0@callstate.test SIP/2.0\r\n"+
		"Via: SIP/2.0/TLS %s;branch=z9hG4bKtls1;rport\r\nMax-Forwards: 70\r\n"+
		"From: <sip:desk@callstate.test>;tag=tls1\r\nTo: <sip:w0@callstate.test>\r\n"+
		"Call-ID: tls-call-1\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:desk@%s;transport=tls>\r\n"+
		"Event: dialog\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n", local, local)
	r := bufio.NewReader(conn)
	read := func() (string, textproto.MIMEHeader, string) {
		t.Helper()
		tp := textproto.NewReader(r)
		line, err := tp.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(h.Get("Content-Length"))
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatal(err)
		}
		return line, h, string(body)
	}
	var got200, gotNotify bool
	for !got200 || !gotNotify {
		line, h, body := read()
		switch {
		case strings.HasPrefix(line, "SIP/2.0 200"):
			got200 = true
		case strings.HasPrefix(line, "NOTIFY "):
			gotNotify = true
			if !strings.Contains(h.Get("Via"), "SIP/2.0/TLS") || !strings.Contains(body, "<state>terminated</state>") {
				t.Errorf("NOTIFY over TLS: Via %q body %s", h.Get("Via"), body)
			}
			fmt.Fprintf(conn, "SIP/2.0 200 OK\r\nVia: %s\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %s\r\nContent-Length: 0\r\n\r\n",
				h.Get("Via"), h.Get("From"), h.Get("To"), h.Get("Call-ID"), h.Get("CSeq"))
		default:
			t.Fatalf("unexpected %q", line)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for a.Stats().Notifies == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a.Stats().Notifies != 1 {
		t.Errorf("the NOTIFY's 200 did not reach the agent: %+v", a.Stats())
	}
}
