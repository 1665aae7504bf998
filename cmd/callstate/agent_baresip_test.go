package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store/storetest"
)

// baresip runs Debian's baresip with its presence module, subscribed to
// the presence of contacts (URIs) through the agent at agentAddr, with the
// digest account desk/secret. Its ctrl_tcp interface answers commands.
type baresip struct {
	t    *testing.T
	ctrl string
	out  *lockedBuffer
}

func startBaresip(t *testing.T, agentAddr string, contacts ...string) *baresip {
	t.Helper()
	bin, err := exec.LookPath("baresip")
	if err != nil {
		t.Fatalf("baresip not found (scripts/install-test-deps.sh installs baresip-core): %v", err)
	}
	dir := t.TempDir()
	ctrl := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	files := map[string]string{
		"config": fmt.Sprintf(`module_path /usr/lib/baresip/modules
sip_listen 127.0.0.1:%d
module_app account.so
module_app contact.so
module_app presence.so
module_app menu.so
module ctrl_tcp.so
ctrl_tcp_listen %s
`, freePort(t), ctrl),
		"accounts": fmt.Sprintf(`<sip:desk@127.0.0.1>;auth_pass=secret;outbound="sip:%s";regint=0`+"\n", agentAddr),
	}
	var cs strings.Builder
	for i, c := range contacts {
		fmt.Fprintf(&cs, "\"Lamp %d\" <%s>;presence=p2p\n", i, c)
	}
	files["contacts"] = cs.String()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "-f", dir, "-v")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("baresip output:\n%s", out)
		}
	})
	return &baresip{t: t, ctrl: ctrl, out: out}
}

// command sends one ctrl_tcp command (a JSON netstring) and returns the
// text of its answer.
func (b *baresip) command(cmd string) (string, error) {
	conn, err := net.DialTimeout("tcp", b.ctrl, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	msg, _ := json.Marshal(map[string]string{"command": cmd, "token": "t"})
	if _, err := fmt.Fprintf(conn, "%d:%s,", len(msg), msg); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	for {
		lenStr, err := r.ReadString(':')
		if err != nil {
			return "", err
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenStr, ":"))
		if err != nil {
			return "", err
		}
		buf := make([]byte, n+1)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		var res struct {
			Response bool   `json:"response"`
			Data     string `json:"data"`
		}
		if json.Unmarshal(bytes.TrimSuffix(buf, []byte(",")), &res) == nil && res.Response {
			return res.Data, nil
		}
	}
}

var ansiRE = regexp.MustCompile("\x1b\\[[0-9;]*m")

// status returns what baresip shows for the contact uri: Online, Busy,
// Offline, Unknown.
func (b *baresip) status(uri string) string {
	out, err := b.command("contacts")
	if err != nil {
		return "error: " + err.Error()
	}
	for _, line := range strings.Split(ansiRE.ReplaceAllString(out, ""), "\n") {
		if strings.Contains(line, "<"+uri+">") {
			f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), ">"))
			if len(f) > 0 {
				return f[0]
			}
		}
	}
	return "missing"
}

// waitStatus waits until baresip shows want for uri.
func (b *baresip) waitStatus(uri, want string) {
	b.t.Helper()
	got := ""
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = b.status(uri); got == want {
			return
		}
	}
	b.t.Fatalf("baresip shows %s for %s, want %s", got, uri, want)
}

// TestAgentPresenceBaresip: baresip's presence module, a PIDF client from
// Debian, subscribes to a sipgate user and to a PBX extension and sees each
// go busy (RPID on-the-phone) and back, from webhooks and from a real call
// through Kamailio. baresip knows only Online, Busy and Offline: ringing
// and talking are both Busy for it.
func TestAgentPresenceBaresip(t *testing.T) {
	k := testpbx.StartKamailio(t)
	agentAddr := fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t))
	base, _, _ := startService(t, map[string]string{
		"DATABASE_URL": storetest.NewDatabase(t), "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "warn",
		"SIP_PBX_ADDR": k.Addr(), "SIP_DOMAIN": k.Domain(), "SIP_EXTENSIONS": "100,101",
		"SIP_LISTEN_ADDR": fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t)), "SIP_EXPIRES": "1m",
		"SIP_AGENT_LISTEN": agentAddr, "SIP_AGENT_ACCOUNTS": "desk:secret",
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
	user, ext := "sip:w0@"+agentAddr, "sip:101@"+agentAddr
	b := startBaresip(t, agentAddr, user, ext)

	t.Run("SipgateUser", func(t *testing.T) {
		b.t = t
		b.waitStatus(user, "Online")
		post("event=newCall&" + parties + "c1&user%5B%5D=Alice&userId%5B%5D=w0")
		b.waitStatus(user, "Busy")
		post("event=answer&" + parties + "c1&user=Alice&userId=w0&answeringNumber=4921155501")
		post("event=hangup&" + parties + "c1&cause=normalClearing")
		b.waitStatus(user, "Online")
	})
	t.Run("PBXExtension", func(t *testing.T) {
		b.t = t
		b.waitStatus(ext, "Online") // once callstate's own subscription is active
		call := k.StartCall(t, "100", "101", 3*time.Second, 3*time.Second)
		b.waitStatus(ext, "Busy")
		if err := call.Err(); err != nil {
			t.Fatal(err)
		}
		b.waitStatus(ext, "Online")
	})
	if out := b.out.String(); !strings.Contains(out, "changed status from") {
		t.Errorf("baresip never logged a change:\n%s", out)
	}
}
