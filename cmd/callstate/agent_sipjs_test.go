package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store/storetest"
)

// sipjsDir holds the Node subscriber; npm installs SIP.js there (its
// package-lock.json pins the versions) the first time a test needs it.
const sipjsDir = "testdata/sipjs"

func installSIPjs(t *testing.T) {
	t.Helper()
	installNode(t, sipjsDir, "sip.js")
}

// sipjsNotify is one line of subscriber.mjs.
type sipjsNotify struct {
	Subscribed bool   `json:"subscribed"`
	State      string `json:"state"`
	Body       string `json:"body"`
}

// webPhone is SIP.js's Subscriber in Node, subscribed over WebSocket.
type webPhone struct {
	t     *testing.T
	lines chan sipjsNotify
}

func startWebPhone(t *testing.T, server, target, event string) *webPhone {
	t.Helper()
	cmd := exec.Command("node", "subscriber.mjs", server, target, event, "desk", "secret")
	cmd.Dir = sipjsDir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, _ := cmd.StdinPipe()
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &webPhone{t: t, lines: make(chan sipjsNotify, 100)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var n sipjsNotify
			if json.Unmarshal(sc.Bytes(), &n) == nil {
				p.lines <- n
			}
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("node stderr:\n%s", stderr)
		}
	})
	return p
}

// waitFor returns the first NOTIFY body for which ok is true.
func (p *webPhone) waitFor(what string, ok func(body string) bool) string {
	p.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case n, open := <-p.lines:
			if !open {
				p.t.Fatalf("SIP.js exited before %s", what)
			}
			if !n.Subscribed && ok(n.Body) {
				return n.Body
			}
		case <-timeout:
			p.t.Fatalf("SIP.js saw no NOTIFY with %s within 20s", what)
		}
	}
}

func hasState(state string) func(string) bool {
	return func(b string) bool { return strings.Contains(b, "<state>"+state+"</state>") }
}

func idleBody(b string) bool {
	return hasState("terminated")(b) && !hasState("early")(b) && !hasState("confirmed")(b)
}

// TestAgentWebSocketSIPjs: a web phone (SIP.js's Subscriber, in Node, over
// WebSocket) subscribes to a sipgate user's and a PBX extension's dialog
// state and sees each ring, go busy and go idle; over WSS it watches the
// sipgate user's presence go on the phone and back.
func TestAgentWebSocketSIPjs(t *testing.T) {
	installSIPjs(t)
	k := testpbx.StartKamailio(t)
	wsAddr := fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t))
	wssAddr := fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t))
	cert := testpbx.NewCertificate(t)
	base, _, _ := startService(t, map[string]string{
		"DATABASE_URL": storetest.NewDatabase(t), "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "warn",
		"SIP_PBX_ADDR": k.Addr(), "SIP_DOMAIN": k.Domain(), "SIP_EXTENSIONS": "100,101",
		"SIP_LISTEN_ADDR": fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t)), "SIP_EXPIRES": "1m",
		"SIP_AGENT_LISTEN": fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t)), "SIP_AGENT_WS_LISTEN": wsAddr,
		"SIP_AGENT_WSS_LISTEN": wssAddr, "SIP_AGENT_TLS_CERT_FILE": cert.CertFile, "SIP_AGENT_TLS_KEY_FILE": cert.KeyFile,
		"SIP_AGENT_ACCOUNTS": "desk:secret", "SIP_AGENT_DOMAIN": "callstate.test",
	})
	post := func(body string) {
		t.Helper()
		resp, err := http.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("webhook: %d", resp.StatusCode)
		}
	}
	const parties = "direction=in&from=4917012345&to=4921155501&callId="
	post("event=newCall&" + parties + "earlier&user%5B%5D=Alice&userId%5B%5D=w0")
	post("event=hangup&" + parties + "earlier&cause=cancel")
	waitLamp(t, base, "sipgate", "w0", "idle")
	waitLamp(t, base, "sip", "101", "idle")

	t.Run("SipgateUser", func(t *testing.T) {
		p := startWebPhone(t, "ws://"+wsAddr, "sip:w0@callstate.test", "dialog")
		p.t = t
		p.waitFor("the idle lamp", idleBody)
		post("event=newCall&" + parties + "c1&user%5B%5D=Alice&userId%5B%5D=w0")
		if b := p.waitFor("an early dialog", hasState("early")); !strings.Contains(b, `direction="recipient"`) {
			t.Errorf("ringing without direction=recipient:\n%s", b)
		}
		post("event=answer&" + parties + "c1&user=Alice&userId=w0&answeringNumber=4921155501")
		p.waitFor("a confirmed dialog", hasState("confirmed"))
		post("event=hangup&" + parties + "c1&cause=normalClearing")
		p.waitFor("the idle lamp again", idleBody)
	})
	t.Run("SipgateUserOverWSS", func(t *testing.T) {
		p := startWebPhone(t, "wss://"+wssAddr, "sip:w0@callstate.test", "presence")
		p.t = t
		p.waitFor("the idle lamp", func(b string) bool {
			return strings.Contains(b, "<basic>open</basic>") && !strings.Contains(b, "on-the-phone")
		})
		post("event=newCall&" + parties + "c2&user%5B%5D=Alice&userId%5B%5D=w0")
		p.waitFor("on-the-phone", func(b string) bool { return strings.Contains(b, "<rpid:on-the-phone/>") })
		post("event=hangup&" + parties + "c2&cause=cancel")
		p.waitFor("the idle lamp again", func(b string) bool { return !strings.Contains(b, "on-the-phone") })
	})
	t.Run("PBXExtension", func(t *testing.T) {
		p := startWebPhone(t, "ws://"+wsAddr, "sip:101@callstate.test", "dialog")
		p.t = t
		p.waitFor("the idle lamp", idleBody)
		call := k.StartCall(t, "100", "101", 2*time.Second, 2*time.Second)
		p.waitFor("an early dialog", hasState("early"))
		p.waitFor("a confirmed dialog", hasState("confirmed"))
		if err := call.Err(); err != nil {
			t.Fatal(err)
		}
		p.waitFor("the idle lamp again", idleBody)
	})
}
