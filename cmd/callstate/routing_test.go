package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

const rulesReject = `rules:
  - name: reject all
    then: { reject: busy }
`

const rulesHangup = `rules:
  - name: hang up all
    then: { hangup: true }
`

// writeAtomically replaces path's content the way editors and ConfigMaps
// do: a new file renamed over the old one.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestCheckConfigRouting: check-config reports every problem of the rules
// file at once, each with its line, and names ROUTING_FILE.
func TestCheckConfigRouting(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`time_zone: Europe/Berlin
rules:
  - name: one
    when: { from: "+49 30 abc" }
    then: { reject: maybe }
  - name: two
    when: { outside: "Mon-Fri 08:00-25:00" }
    then: { voicemail: true }
`), 0o644)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(rulesReject), 0o644)
	menus := filepath.Join(dir, "menus.yaml")
	os.WriteFile(menus, []byte("rules:\n  - name: m\n    then: { gather: { menu: main } }\nmenus:\n  main:\n    - name: x\n      then: { hangup: true }\n"), 0o644)

	tests := []struct {
		name     string
		env      map[string]string
		code     int
		wantErrs []string
	}{
		{"Fine", map[string]string{"ROUTING_FILE": good}, 0, nil},
		{"ErrEveryProblem", map[string]string{"ROUTING_FILE": bad}, 2, []string{
			"ROUTING_FILE " + bad + ": line 4:19: from: \"+49 30 abc\" is not a number",
			"ROUTING_FILE " + bad + ": line 5:21: reject must be busy or rejected",
			"ROUTING_FILE " + bad + ": line 7:22: outside: \"08:00-25:00\"",
		}},
		{"ErrMissingFile", map[string]string{"ROUTING_FILE": filepath.Join(dir, "none.yaml")}, 2, []string{"ROUTING_FILE"}},
		{"ErrMenusWithoutSecret", map[string]string{"ROUTING_FILE": menus}, 2, []string{"ROUTING_SECRET: must be set"}},
		{"MenusWithSecret", map[string]string{"ROUTING_FILE": menus, "ROUTING_SECRET": "0123456789abcdef"}, 0, nil},
		{"ErrShortSecret", map[string]string{"ROUTING_FILE": menus, "ROUTING_SECRET": "short"}, 2, []string{"ROUTING_SECRET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCLI(t, tt.env, "check-config", "-env-file", os.DevNull)
			if got := exitCode(err); got != tt.code {
				t.Fatalf("exit code %d (%v), want %d", got, err, tt.code)
			}
			for _, w := range tt.wantErrs {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if tt.code == 0 && !strings.Contains(out, "ROUTING_FILE="+tt.env["ROUTING_FILE"]) {
				t.Errorf("output lacks the file:\n%s", out)
			}
			if strings.Contains(out, "0123456789abcdef") {
				t.Errorf("output shows ROUTING_SECRET:\n%s", out)
			}
		})
	}
}

// TestRoutingReloadUnderLoad: newCalls keep coming while the rules file is
// replaced, reloaded on SIGHUP, and broken. Every newCall is answered 200
// by one of the rules (never the default, never an error), the new rules
// take over, and the broken file keeps them, with a log line and a metric.
func TestRoutingReloadUnderLoad(t *testing.T) {
	// The service's watcher takes SIGHUP; so does this test, so that the
	// signal never finds the process without a handler.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	dir := t.TempDir()
	path := filepath.Join(dir, "routing.yaml")
	writeAtomically(t, path, rulesReject)
	base, logs, stop := startService(t, map[string]string{
		"DATABASE_URL": storetest.NewDatabase(t), "ROUTING_FILE": path, "SIPGATE_VERIFY_SIGNATURE": "false",
	})

	var (
		wg                  sync.WaitGroup
		stopLoad            atomic.Bool
		n, rejects, hangups atomic.Int64
		mu                  sync.Mutex
		failures            []string
		slowest             time.Duration
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stopLoad.Load(); i++ {
				form := url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {"491701234567"},
					"to": {"4930555"}, "callId": {fmt.Sprintf("load-%d-%d", w, i)}}.Encode()
				t0 := time.Now()
				resp, err := client.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(form))
				d := time.Since(t0)
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				n.Add(1)
				mu.Lock()
				slowest = max(slowest, d)
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case resp.StatusCode != http.StatusOK:
					failures = append(failures, fmt.Sprintf("%d %s", resp.StatusCode, body))
				case strings.Contains(string(body), `<Reject reason="busy">`):
					rejects.Add(1)
				case strings.Contains(string(body), `<Hangup>`):
					hangups.Add(1)
				default:
					failures = append(failures, "neither rule's answer: "+string(body))
				}
				mu.Unlock()
			}
		}()
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				stopLoad.Store(true)
				wg.Wait()
				t.Fatalf("%s did not happen within 10s\n%s", what, tail(logs.String(), 20))
			}
		}
	}
	waitFor("answers by the first rules", func() bool { return rejects.Load() > 20 })

	writeAtomically(t, path, rulesHangup)
	waitFor("the file's change reloaded", func() bool { return strings.Contains(logs.String(), "trigger=\"file changed\"") })
	h0 := hangups.Load()
	waitFor("answers by the new rules", func() bool { return hangups.Load() > h0+20 })

	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("the SIGHUP reload", func() bool { return strings.Contains(logs.String(), "trigger=SIGHUP") })

	os.WriteFile(path, []byte("rules:\n  - name: broken\n    then: { reject: maybe }\n"), 0o644)
	waitFor("the broken file refused", func() bool { return strings.Contains(logs.String(), "routing rules not reloaded") })
	h1 := hangups.Load()
	waitFor("answers by the rules before the broken file", func() bool { return hangups.Load() > h1+20 })
	stopLoad.Store(true)
	wg.Wait()

	r0 := rejects.Load()
	if len(failures) > 0 {
		t.Errorf("%d of %d newCalls failed, e.g. %s", len(failures), n.Load(), failures[0])
	}
	if slowest > 5*time.Second {
		t.Errorf("slowest answer %s: past sipgate's patience", slowest)
	}
	if !strings.Contains(logs.String(), "reject must be busy or rejected") {
		t.Errorf("log does not say what is wrong with the broken file:\n%s", tail(logs.String(), 20))
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`callstate_routing_reloads_total{outcome="failed"} 1`,
		`callstate_routing_reloads_total{outcome="ok"} 2`,
		`callstate_routing_decisions_total{rule="reject all"} ` + fmt.Sprint(r0),
		`callstate_routing_rules 1`,
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := stop(); err != nil {
		t.Errorf("run: %v", err)
	}
	t.Logf("%d newCalls during the reloads (%d by the first rules, %d by the second), slowest %s", n.Load(), r0, hangups.Load(), slowest)
}

// TestRouteTestCommand: "callstate route test" names the rule a call
// would match and prints the XML, with the lamps as the database has them.
func TestRouteTestCommand(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	st, err := store.Open(context.Background(), dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range []callstate.Update{
		{Key: "busy-w0", CallID: "busy-w0", Direction: "in", From: "4917011111", To: "4930", UserIDs: []string{"w0"}, Extension: "w0", State: callstate.StateRinging},
		{Key: "busy-w0", CallID: "busy-w0", Extension: "w0", PinExtension: true, State: callstate.StateAnswered},
	} {
		ev := callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: fmt.Sprint("rt", i),
			ReceivedAt: time.Now(), Payload: []byte("x"), Update: u}
		if _, err := st.Apply(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	path := filepath.Join(t.TempDir(), "routing.yaml")
	os.WriteFile(path, []byte(`time_zone: Europe/Berlin
rules:
  - name: block list
    when: { from: "+4930999*" }
    then: { reject: busy }
  - name: alice busy
    when: { user: w0, lamp: { w0: busy } }
    then: { dial: ["+491602222222"] }
  - name: evening
    when: { outside: "Mon-Fri 08:00-18:00" }
    then: { voicemail: true }
`), 0o644)
	env := map[string]string{"DATABASE_URL": dbURL, "LOG_LEVEL": "warn", "ROUTING_FILE": path}
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"BlockList", []string{"--from", "030 999 123", "--to", "+49 285 59389086", "--at", "2026-12-07T10:00:00+01:00"}, 0,
			[]string{`rule "block list" (` + path + ` line 3) matches a call from 4930999123 to 4928559389086 at Mon 2026-12-07 10:00 CET: reject`, `<Reject reason="busy"></Reject>`}},
		{"LampFromDatabase", []string{"--from", "491701234567", "--user", "w0", "--at", "2026-12-07T10:00:00+01:00"}, 0,
			[]string{`rule "alice busy"`, `<Number>491602222222</Number>`}},
		{"Evening", []string{"--from", "491701234567", "--at", "2026-12-07T19:00:00Z"}, 0,
			[]string{`rule "evening"`, "Mon 2026-12-07 20:00 CET", `<Voicemail>`}},
		{"Default", []string{"--from", "491701234567", "--at", "2026-12-07T10:00:00+01:00"}, 0,
			[]string{"no rule matches", "SIPGATE_NEWCALL_ACTION=none", `<Response onAnswer=`}},
		{"ErrBadTime", []string{"--at", "tomorrow"}, 2, nil},
		{"ErrBadNumber", []string{"--from", "abc"}, 2, nil},
		{"ErrNoTest", nil, 2, nil},
	}
	menus := filepath.Join(t.TempDir(), "menus.yaml")
	os.WriteFile(menus, []byte("rules:\n  - name: m\n    then: { gather: { menu: main } }\nmenus:\n  main:\n"+
		"    - name: main 1\n      when: { digits: \"1\" }\n      then: { dial: [\"+491604444444\"] }\n"), 0o644)
	menuEnv := map[string]string{"DATABASE_URL": dbURL, "LOG_LEVEL": "warn", "ROUTING_FILE": menus, "ROUTING_SECRET": "0123456789abcdef"}
	t.Run("Menu", func(t *testing.T) {
		out, err := runCLI(t, menuEnv, "route", "test", "-env-file", os.DevNull, "--menu", "main", "--digits", "1")
		if err != nil || !strings.Contains(out, `in menu main, digits "1": rule "main 1"`) || !strings.Contains(out, "<Number>491604444444</Number>") {
			t.Errorf("menu: %v\n%s", err, out)
		}
		if _, err := runCLI(t, menuEnv, "route", "test", "-env-file", os.DevNull, "--menu", "nowhere"); exitCode(err) != 2 {
			t.Errorf("unknown menu: %v, want exit 2", err)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"route", "test", "-env-file", os.DevNull}, tt.args...)
			if tt.name == "ErrNoTest" {
				args = []string{"route"}
			}
			out, err := runCLI(t, env, args...)
			if got := exitCode(err); got != tt.code {
				t.Fatalf("exit %d (%v), want %d\n%s", got, err, tt.code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestRoutingBusyPBXExtension: while PBX extension 101 is in a real call
// through Kamailio (callstate watching it over SIP), newCalls for the
// hotline ring the colleague; before and after, the desk.
func TestRoutingBusyPBXExtension(t *testing.T) {
	k := testpbx.StartKamailio(t)
	path := filepath.Join(t.TempDir(), "routing.yaml")
	os.WriteFile(path, []byte(`rules:
  - name: desk 101 busy
    when: { to: "+4921155501", lamp: { "101": [ringing, busy, hold] } }
    then: { dial: ["+491602222222"] }
  - name: desk 101 free
    when: { to: "+4921155501", lamp: { "sip/101": idle } }
    then: { dial: ["+491603333333"] }
`), 0o644)
	base, logs, _ := startService(t, map[string]string{
		"DATABASE_URL": storetest.NewDatabase(t), "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "warn",
		"SIP_PBX_ADDR": k.Addr(), "SIP_DOMAIN": k.Domain(), "SIP_EXTENSIONS": "100,101",
		"SIP_LISTEN_ADDR": fmt.Sprintf("127.0.0.1:%d", testpbx.FreePort(t)), "SIP_EXPIRES": "1m",
		"ROUTING_FILE": path,
	})
	n := 0
	// answerUntil posts newCalls until one is answered by want's number:
	// the live view follows the lamp within moments, not at once.
	answerUntil := func(want string) {
		t.Helper()
		got := ""
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			n++
			form := url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {"491701234567"}, "to": {"4921155501"},
				"callId": {fmt.Sprint("pbx-", n)}}.Encode()
			resp, err := http.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(form))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("newCall: %d %s", resp.StatusCode, b)
			}
			if got = string(b); strings.Contains(got, "<Number>"+want+"</Number>") {
				return
			}
		}
		t.Fatalf("no newCall answered with %s; last answer %s\n%s", want, got, tail(logs.String(), 20))
	}
	waitLamp(t, base, "sip", "101", "idle")
	answerUntil("491603333333")
	call := k.StartCall(t, "100", "101", 500*time.Millisecond, 4*time.Second)
	waitLamp(t, base, "sip", "101", "busy")
	answerUntil("491602222222")
	if err := call.Err(); err != nil {
		t.Fatal(err)
	}
	waitLamp(t, base, "sip", "101", "idle")
	answerUntil("491603333333")
}
