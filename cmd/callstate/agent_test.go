package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store/storetest"
)

func TestLoadAgentConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string
	}{
		{"OffByDefault", nil, nil},
		{"OK", map[string]string{"SIP_AGENT_LISTEN": "0.0.0.0:5070", "SIP_AGENT_ACCOUNTS": "desk1:pw,desk2:pw2",
			"SIP_AGENT_ALIASES": "+4921155501=sipgate/w0, reception=sip/100", "SIP_AGENT_MIN_EXPIRES": "30s",
			"SIP_AGENT_LISTS": "team=sip/100 sipgate/w0,sales=sipgate/w1"}, nil},
		{"ErrListen", map[string]string{"SIP_AGENT_LISTEN": "5070"}, []string{"SIP_AGENT_LISTEN"}},
		{"ErrTransport", map[string]string{"SIP_AGENT_TRANSPORT": "sctp"}, []string{"SIP_AGENT_TRANSPORT"}},
		{"ErrAccount", map[string]string{"SIP_AGENT_ACCOUNTS": "nopassword"}, []string{"SIP_AGENT_ACCOUNTS"}},
		{"ErrAlias", map[string]string{"SIP_AGENT_ALIASES": "w0"}, []string{"SIP_AGENT_ALIASES"}},
		{"ErrListMember", map[string]string{"SIP_AGENT_LISTS": "team=sip/100 w0"}, []string{"SIP_AGENT_LISTS", `"w0"`}},
		{"ErrListName", map[string]string{"SIP_AGENT_LISTS": "a@b=sip/100"}, []string{"SIP_AGENT_LISTS"}},
		{"ErrExpiresOrder", map[string]string{"SIP_AGENT_MIN_EXPIRES": "2h", "SIP_AGENT_MAX_EXPIRES": "1h"}, []string{"SIP_AGENT_MAX_EXPIRES"}},
		{"ErrTLSWithoutCertificate", map[string]string{"SIP_AGENT_TRANSPORT": "tls"}, []string{"SIP_AGENT_TLS_CERT_FILE"}},
		{"ErrWSSWithoutCertificate", map[string]string{"SIP_AGENT_WSS_LISTEN": "0.0.0.0:7443"}, []string{"SIP_AGENT_TLS_CERT_FILE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(envFunc(tt.env))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.name == "OK" {
					if _, err := agentOptions(cfg.Agent, nil, nil); err != nil {
						t.Errorf("agentOptions: %v", err)
					}
					if s := cfg.String(); strings.Contains(s, "pw2") {
						t.Errorf("SIP_AGENT_ACCOUNTS not masked: %s", s)
					}
				}
				return
			}
			if err == nil {
				_, err = agentOptions(cfg.Agent, nil, nil)
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, frag := range tt.wantErr {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("error %q does not mention %q", err, frag)
				}
			}
		})
	}
}

// notifies returns the NOTIFYs sipp has received so far, from its message
// trace.
func notifies(p *testpbx.SippProcess) []string {
	raw, _ := os.ReadFile(filepath.Join(p.Dir(), "messages.log"))
	var ns []string
	for _, m := range strings.Split(string(raw), "----------------------------------------------- ") {
		if _, rest, ok := strings.Cut(m, "\n\n"); ok && strings.Contains(m, "message received") && strings.HasPrefix(rest, "NOTIFY ") {
			ns = append(ns, rest)
		}
	}
	return ns
}

var stateRE = regexp.MustCompile(`(?:direction="(\w+)">\s*)?<state>(\w+)</state>`)

// lampStates returns each NOTIFY's dialogs, e.g. "early/recipient".
func lampStates(ns []string) []string {
	var out []string
	for _, n := range ns {
		var ds []string
		for _, m := range stateRE.FindAllStringSubmatch(n, -1) {
			d := m[2]
			if m[1] != "" && m[2] != "terminated" {
				d += "/" + m[1]
			}
			ds = append(ds, d)
		}
		out = append(out, strings.Join(ds, "+"))
	}
	return out
}

// waitNotifies waits until sipp has n NOTIFYs, or has ended.
func waitNotifies(t *testing.T, p *testpbx.SippProcess, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); len(notifies(p)) < n; time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.Done():
			t.Fatalf("sipp ended after %d NOTIFYs, want %d: %v", len(notifies(p)), n, p.Err())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sipp has %d NOTIFYs after 20s, want %d: %v", len(notifies(p)), n, lampStates(notifies(p)))
		}
	}
}

// checkLampSequence checks that the states sipp saw go idle, ringing
// (early, recipient), busy (confirmed), idle, in that order.
func checkLampSequence(t *testing.T, states []string) {
	t.Helper()
	t.Logf("lamp states seen: %v", states)
	want := []string{"terminated", "early/recipient", "confirmed", "terminated"}
	active := func(s string) bool { return strings.Contains(s, "early") || strings.Contains(s, "confirmed") }
	i := 0
	for _, s := range states {
		switch {
		case i == 0 && s == "terminated", i == 1 && strings.Contains(s, "early/recipient"),
			i == 2 && strings.Contains(s, "confirmed"), i == 3 && !active(s) && strings.Contains(s, "terminated"):
			i++
		}
	}
	if i != len(want) {
		t.Errorf("lamp went %v, want %v in order", states, want)
	}
}

// TestAgentSipgateUser: a desk phone (sipp) subscribes to a sipgate user's
// lamp on one instance while the webhooks of a call go to another: it sees
// ringing, busy, idle.
func TestAgentSipgateUser(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	agentAddr := fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t))
	env := map[string]string{"DATABASE_URL": dbURL, "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "warn"}
	webhooks, _, _ := startService(t, env)
	env["SIP_AGENT_LISTEN"] = agentAddr
	env["SIP_AGENT_ACCOUNTS"] = "desk:secret"
	env["SIP_AGENT_DOMAIN"] = "callstate.test"
	agentBase, logs, _ := startService(t, env)

	post := func(body string) {
		t.Helper()
		resp, err := http.Post(webhooks+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("webhook %q: %d", body, resp.StatusCode)
		}
	}
	// Alice has a lamp once sipgate has told of her.
	const parties = "direction=in&from=4917012345&to=4921155501&callId="
	post("event=newCall&" + parties + "earlier&user%5B%5D=Alice+Doe&userId%5B%5D=w0")
	post("event=hangup&" + parties + "earlier&cause=cancel")
	waitLamp(t, webhooks, "sipgate", "w0", "idle")
	// The agent tells what the feed told it, a moment after the lamp
	// view: the phone's first NOTIFY must find it idle there too.
	waitAgentFeedLamp(t, dbURL, agentBase, "sipgate", "w0", "idle")

	phone := testpbx.RunSipp(t, "dialog-subscriber.xml", agentAddr, "-m", "1", "-s", "alice.doe", "-au", "desk", "-ap", "secret")
	waitNotifies(t, phone, 1)
	post("event=newCall&" + parties + "c1&user%5B%5D=Alice+Doe&userId%5B%5D=w0")
	waitNotifies(t, phone, 2)
	post("event=answer&" + parties + "c1&user=Alice+Doe&userId=w0&answeringNumber=4921155501")
	waitNotifies(t, phone, 3)
	post("event=hangup&" + parties + "c1&cause=normalClearing")
	phone.Wait(t)
	ns := notifies(phone)
	checkLampSequence(t, lampStates(ns))
	if !strings.Contains(ns[1], "sip:4917012345@callstate.test") {
		t.Errorf("ringing NOTIFY lacks the caller:\n%s", ns[1])
	}
	if strings.Contains(logs.String(), "secret") {
		t.Error("the password is in the log")
	}
}

// TestAgentPBXExtension: a desk phone (sipp) subscribes to a PBX
// extension's lamp while a real call through Kamailio rings it, is
// answered and hung up.
func TestAgentPBXExtension(t *testing.T) {
	k := testpbx.StartKamailio(t)
	agentAddr := fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t))
	dbURL := storetest.NewDatabase(t)
	base, _, _ := startService(t, map[string]string{
		"DATABASE_URL": dbURL, "LOG_LEVEL": "warn",
		"SIP_PBX_ADDR": k.Addr(), "SIP_DOMAIN": k.Domain(), "SIP_EXTENSIONS": "100,101",
		"SIP_LISTEN_ADDR": fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t)), "SIP_EXPIRES": "1m",
		"SIP_AGENT_LISTEN": agentAddr, "SIP_AGENT_ACCOUNTS": "desk:secret",
	})
	// The lamps are idle once the PBX has granted callstate's own
	// subscriptions.
	waitLamp(t, base, "sip", "100", "idle")
	waitLamp(t, base, "sip", "101", "idle")
	waitAgentFeedLamp(t, dbURL, base, "sip", "101", "idle")
	phone := testpbx.RunSipp(t, "dialog-subscriber.xml", agentAddr, "-m", "1", "-s", "101", "-au", "desk", "-ap", "secret")
	waitNotifies(t, phone, 1)
	// The agent tells a phone each lamp's state after every read of the
	// feed: a state that came and went within one read (a ring shorter than
	// the way from the PBX's NOTIFY through the journal to the feed, which
	// under a loaded test run reached 0.8 s) is not shown. Two seconds of
	// ringing and of talk leave each state its own read.
	k.PlaceCall(t, "100", "101", 2*time.Second, 2*time.Second)
	phone.Wait(t)
	checkLampSequence(t, lampStates(notifies(phone)))
}

// TestAgentResourceListSipp: sipp subscribes with Supported: eventlist to a
// list of two sipgate users and gets the full RLMI state, then a partial
// NOTIFY with only the user whose phone rings.
func TestAgentResourceListSipp(t *testing.T) {
	agentAddr := fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t))
	dbURL := storetest.NewDatabase(t)
	base, _, _ := startService(t, map[string]string{
		"DATABASE_URL": dbURL, "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "warn",
		"SIP_AGENT_LISTEN": agentAddr, "SIP_AGENT_ACCOUNTS": "desk:secret", "SIP_AGENT_DOMAIN": "callstate.test",
		"SIP_AGENT_LISTS": "team=sipgate/w0 sipgate/w1",
	})
	post := func(body string) {
		t.Helper()
		resp, err := http.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	const parties = "direction=in&from=4917012345&to=4921155501&callId="
	for _, u := range []string{"w0", "w1"} {
		post("event=newCall&" + parties + "earlier-" + u + "&user%5B%5D=U&userId%5B%5D=" + u)
		post("event=hangup&" + parties + "earlier-" + u + "&cause=cancel")
		waitLamp(t, base, "sipgate", u, "idle")
		waitAgentFeedLamp(t, dbURL, base, "sipgate", u, "idle")
	}
	phone := testpbx.RunSipp(t, "rlmi-subscriber.xml", agentAddr, "-m", "1", "-s", "team", "-au", "desk", "-ap", "secret")
	waitNotifies(t, phone, 1)
	post("event=newCall&" + parties + "c1&user%5B%5D=U&userId%5B%5D=w1")
	phone.Wait(t)
	ns := notifies(phone)
	if n := strings.Count(ns[0], "<resource "); n != 2 || !strings.Contains(ns[0], `fullState="true"`) {
		t.Errorf("first NOTIFY: %d resources, want both in full:\n%s", n, ns[0])
	}
	var partial string
	for _, n := range ns[1:] {
		if strings.Contains(n, `fullState="false"`) && strings.Contains(n, "<state>early</state>") {
			partial = n
			break
		}
	}
	if strings.Count(partial, "<resource ") != 1 || !strings.Contains(partial, `<resource uri="sip:w1@callstate.test"`) {
		t.Errorf("partial NOTIFY should list w1 alone:\n%s", partial)
	}
}

// waitLamp waits until the service's /api/lamps shows the lamp
// source/extension as lamp: a test's starting point (callstate's own PBX
// subscriptions granted, a sipgate user recorded), not a timing.
// waitAgentFeedLamp waits until the feed has told that the lamp of
// source/ext is lamp and the presence agent behind base has applied the
// feed that far (callstate_agent_feed_id).
func waitAgentFeedLamp(t *testing.T, dbURL, base, source, ext, lamp string) {
	t.Helper()
	ctx := context.Background()
	db, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var head int64
	_, ok, why := waitFor(30*time.Second, func() (bool, string) {
		var told string
		var unnumbered bool
		err := db.QueryRow(ctx, `SELECT coalesce((SELECT lamp FROM call_feed_lamp WHERE source = $1 AND extension = $2), ''),
			EXISTS (SELECT 1 FROM call_feed_new), (SELECT head FROM call_feed_head)`, source, ext).Scan(&told, &unnumbered, &head)
		if err != nil {
			return false, err.Error()
		}
		return told == lamp && !unnumbered, fmt.Sprintf("the feed told %q", told)
	})
	if !ok {
		t.Fatalf("lamp %s/%s in the feed: %s", source, ext, why)
	}
	_, ok, why = waitFor(30*time.Second, func() (bool, string) {
		id := mustMetric(t, base, "callstate_agent_feed_id", nil)
		return int64(id) >= head, fmt.Sprintf("the agent is at feed id %v of %d", id, head)
	})
	if !ok {
		t.Fatal(why)
	}
}

func waitLamp(t *testing.T, base, source, ext, lamp string) {
	t.Helper()
	got := ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(base + "/api/lamps")
		if err != nil {
			continue
		}
		var ls struct {
			Lamps []struct{ Source, Extension, Lamp string }
		}
		err = json.NewDecoder(resp.Body).Decode(&ls)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, l := range ls.Lamps {
			if l.Source == source && l.Extension == ext {
				if got = l.Lamp; got == lamp {
					return
				}
			}
		}
	}
	t.Fatalf("lamp %s/%s is %q after 30s, want %s", source, ext, got, lamp)
}
