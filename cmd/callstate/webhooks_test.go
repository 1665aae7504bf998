package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/callstate/callstate/store/storetest"
	"github.com/callstate/callstate/webhook"
)

// receiverDir holds the Node receiver; npm installs the standardwebhooks
// package there (package-lock.json pins it) the first time a test needs it.
const receiverDir = "testdata/receiver"

// receipt is one line of receiver.mjs: one request it got.
type receipt struct {
	ID       string `json:"id"`
	Try      int    `json:"try"`
	Status   int    `json:"status"`
	Verified bool   `json:"verified"`
	Error    string `json:"error"`
	SHA      string `json:"sha"`
	Type     string `json:"type"`
	Journey  string `json:"journey"`
	Body     string `json:"body"`
	At       int64  `json:"at"`
}

// receiver is a running receiver.mjs.
type receiver struct {
	url string
	mu  sync.Mutex
	got []receipt
}

func (r *receiver) receipts() []receipt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receipt(nil), r.got...)
}

// startReceiver starts receiver.mjs with secret and plan (see there).
func startReceiver(t *testing.T, secret, plan string, delay time.Duration) *receiver {
	t.Helper()
	r := &receiver{}
	env := []string{fmt.Sprintf("DELAY_MS=%d", delay.Milliseconds())}
	port := startNodePeer(t, receiverDir, "standardwebhooks", env, func(line []byte) {
		var rc receipt
		if json.Unmarshal(line, &rc) != nil {
			return
		}
		r.mu.Lock()
		r.got = append(r.got, rc)
		r.mu.Unlock()
	}, "receiver.mjs", "0", secret, plan)
	r.url = fmt.Sprintf("http://127.0.0.1:%d/hook", port)
	return r
}

// startWebhookInstance starts callstate sending to rcv, and returns it and
// its base URL.
func startWebhookInstance(t *testing.T, dbURL string, env ...string) (*exec.Cmd, string) {
	t.Helper()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), runMainEnv+"=1",
		"DATABASE_URL="+dbURL, "DATA_DIR="+t.TempDir(), "SIPGATE_VERIFY_SIGNATURE=false",
		fmt.Sprintf("LISTEN_ADDR=127.0.0.1:%d", port), "PUBLIC_URL="+base, "LOG_LEVEL=warn"), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	waitReady(t, base)
	return cmd, base
}

// postCall posts a sipgate call's webhooks: answered, or missed.
func postCall(t *testing.T, base, id string, answered bool) {
	t.Helper()
	forms := []url.Values{{"event": {"newCall"}, "direction": {"in"}, "from": {"4917012345"}, "to": {"4930555"},
		"callId": {id}, "user[]": {"Alice"}, "userId[]": {"w1"}}}
	cause := "cancel"
	if answered {
		forms = append(forms, url.Values{"event": {"answer"}, "direction": {"in"}, "callId": {id}, "user": {"Alice"},
			"userId": {"w1"}, "answeringNumber": {"4930555"}})
		cause = "normalClearing"
	}
	forms = append(forms, url.Values{"event": {"hangup"}, "direction": {"in"}, "callId": {id}, "cause": {cause}})
	for _, f := range forms {
		res, err := http.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(f.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("post %s: %s", f.Get("event"), res.Status)
		}
	}
}

// TestWebhooksOut (WEBHOOK_TEST_CALLS=10000 for the size): two instances send a call's events to a receiver that
// checks every signature with the standardwebhooks package, answers each
// message's first try 500 and its second 429 with Retry-After, and
// accepts the third. One instance is killed with SIGKILL while deliveries
// are in flight, and started again. Every expected event arrives, none
// other, each under one webhook-id with the same body on every try, one
// call's in order.
func TestWebhooksOut(t *testing.T) {
	calls := 120
	if v, err := strconv.Atoi(os.Getenv("WEBHOOK_TEST_CALLS")); err == nil && v > 0 {
		calls = v
	}
	secret := webhook.NewSecret()
	rcv := startReceiver(t, secret, "500,429:2", 50*time.Millisecond)
	dbURL := storetest.NewDatabase(t)
	env := []string{"EVENTS_WEBHOOK_URL=" + rcv.url, "EVENTS_WEBHOOK_SECRET=" + secret,
		"EVENTS_WEBHOOK_TYPES=call.ringing,call.answered,call.ended,journey.ended,call.missed",
		"EVENTS_WEBHOOK_RETRY_SCHEDULE=0s,1s,1s,1s,1s,1s,1s,1s,1s,1s", "EVENTS_WEBHOOK_ALLOW_PRIVATE=true"}
	a, baseA := startWebhookInstance(t, dbURL, env...)
	_, baseB := startWebhookInstance(t, dbURL, env...)
	bSent := func() float64 {
		n, _, err := metric(baseB, "callstate_webhook_deliveries_total", map[string]string{"outcome": "delivered"})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	want := map[string]bool{}
	for i := range calls {
		id := fmt.Sprintf("wh%d", i)
		answered := i%2 == 0
		base := baseA
		if i%3 == 0 {
			base = baseB
		}
		if i == calls/2 {
			// Once deliveries flow, kill A with some in flight (the
			// receiver takes 50 ms an answer), then start it again.
			for n := len(rcv.receipts()); len(rcv.receipts()) < n+10; {
				time.Sleep(5 * time.Millisecond)
			}
			a.Process.Signal(syscall.SIGKILL)
			a.Wait()
			_, baseA = startWebhookInstance(t, dbURL, env...)
			base = baseA
		}
		postCall(t, base, id, answered)
		for _, typ := range []string{"call.ringing", "call.ended", "journey.ended"} {
			want[id+" "+typ] = true
		}
		if answered {
			want[id+" call.answered"] = true
		} else {
			want[id+" call.missed"] = true
		}
	}

	// Every expected event accepted (the lease of what the killed instance
	// held runs out after 20 s).
	deadline := time.Now().Add(90*time.Second + time.Duration(calls)*20*time.Millisecond)
	var got map[string]bool
	for {
		got = map[string]bool{}
		for _, r := range rcv.receipts() {
			if r.Status == http.StatusOK {
				got[r.Journey+" "+r.Type] = true
			}
		}
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("never accepted: %s", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("accepted but not expected: %s", k)
		}
	}

	rs := rcv.receipts()
	bodies := map[string]string{}
	tries := map[string][]receipt{}
	var firstOK []receipt
	accepted := map[string]bool{}
	for _, r := range rs {
		if !r.Verified {
			t.Errorf("signature of %s did not verify: %s", r.ID, r.Error)
		}
		if b, ok := bodies[r.ID]; ok && b != r.SHA {
			t.Errorf("%s: another body on try %d", r.ID, r.Try)
		}
		bodies[r.ID] = r.SHA
		tries[r.ID] = append(tries[r.ID], r)
		if r.Status == http.StatusOK && !accepted[r.ID] {
			accepted[r.ID] = true
			firstOK = append(firstOK, r)
		}
	}
	// One call's events in order: by message id (the feed's id), the
	// first acceptance of each comes after its predecessors'.
	last := map[string]int64{}
	for _, r := range firstOK {
		n, err := strconv.ParseInt(strings.TrimPrefix(r.ID, "msg_"), 10, 64)
		if err != nil {
			t.Fatalf("webhook-id %q", r.ID)
		}
		if n < last[r.Journey] {
			t.Errorf("journey %s: %s accepted after msg_%d", r.Journey, r.ID, last[r.Journey])
		}
		last[r.Journey] = n
	}
	// The schedule and Retry-After: the third try comes at least 2 s after
	// the second (Retry-After: 2 beats the schedule's 1 s).
	var gaps []int64
	for _, ts := range tries {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Try < ts[j].Try })
		if len(ts) >= 3 && ts[1].Status == 429 {
			gaps = append(gaps, ts[2].At-ts[1].At)
		}
	}
	if len(gaps) == 0 {
		t.Fatal("no message got a 429 and a third try")
	}
	for _, g := range gaps {
		if g < 1900 {
			t.Errorf("third try %d ms after a 429 with Retry-After: 2", g)
			break
		}
	}
	redelivered := 0
	for _, ts := range tries {
		ok := 0
		for _, r := range ts {
			if r.Status == http.StatusOK {
				ok++
			}
		}
		if ok > 1 {
			redelivered++
		}
	}
	// Both instances delivered.
	if n := bSent(); n == 0 || n == float64(len(accepted)) {
		t.Errorf("instance B delivered %v of %d messages; want some, not all", n, len(accepted))
	}
	t.Logf("%d calls, %d messages, %d requests, %d messages delivered twice (the kill), %v by instance B",
		calls, len(tries), len(rs), redelivered, bSent())
}
