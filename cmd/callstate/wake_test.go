package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// pushServiceDir holds the Node push service stand-in; npm installs the
// http_ece package there (package-lock.json pins it).
const pushServiceDir = "testdata/pushservice"

// pushReceipt is one line of pushservice.mjs: one message it got.
type pushReceipt struct {
	Sub       string                `json:"sub"`
	At        int64                 `json:"at"` // Unix ms
	TTL       string                `json:"ttl"`
	Urgency   string                `json:"urgency"`
	Topic     string                `json:"topic"`
	Encoding  string                `json:"encoding"`
	Size      int                   `json:"size"`
	Verified  bool                  `json:"verified"`
	Decrypted bool                  `json:"decrypted"`
	Error     string                `json:"error"`
	Payload   callstate.WakeMessage `json:"payload"`
	K         string                `json:"k"`
	VapidSub  string                `json:"vapidSub"`
	Status    int                   `json:"status"`
}

// formattedDE is number as the board formats it with PHONE_REGION's
// default, DE: what a push's fromFormatted must say.
func formattedDE(number string) string {
	plan, _ := callstate.NewNumberPlan("DE")
	return plan.Format(number)
}

// pushService is a running pushservice.mjs.
type pushService struct {
	base string
	mu   sync.Mutex
	got  []pushReceipt
	note chan struct{} // a receipt came
}

func (p *pushService) receipts(sub string) []pushReceipt {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []pushReceipt
	for _, r := range p.got {
		if sub == "" || r.Sub == sub {
			out = append(out, r)
		}
	}
	return out
}

// wait returns sub's receipts once it has n, failing t after 10 s.
func (p *pushService) wait(t *testing.T, sub string, n int) []pushReceipt {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if rs := p.receipts(sub); len(rs) >= n {
			return rs
		}
		select {
		case <-p.note:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("subscription %s: %d pushes after 10s, want %d", sub, len(p.receipts(sub)), n)
		}
	}
}

func startPushService(t testing.TB) *pushService {
	t.Helper()
	p := &pushService{note: make(chan struct{}, 1)}
	port := startNodePeer(t, pushServiceDir, "http_ece", nil, func(line []byte) {
		var r pushReceipt
		if json.Unmarshal(line, &r) != nil {
			return
		}
		p.mu.Lock()
		p.got = append(p.got, r)
		p.mu.Unlock()
		select {
		case p.note <- struct{}{}:
		default:
		}
	}, "pushservice.mjs", "0")
	p.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	return p
}

// subscribe makes a subscription whose messages get plan's answers.
func (p *pushService) subscribe(t testing.TB, plan string) json.RawMessage {
	t.Helper()
	res, err := http.Post(p.base+"/subscribe?plan="+plan, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return b
}

func subID(t testing.TB, sub json.RawMessage) string {
	t.Helper()
	var s callstate.PushSubscription
	if err := json.Unmarshal(sub, &s); err != nil {
		t.Fatal(err)
	}
	return s.Endpoint[strings.LastIndexByte(s.Endpoint, '/')+1:]
}

// apiDo sends a request with a bearer credential and returns the status
// and body.
func apiDo(t testing.TB, method, u, bearer string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, u, r)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

type registered struct {
	ID, Secret string
	Sub        string // the push service's subscription id
}

func register(t testing.TB, base, credential string, who map[string]any, sub json.RawMessage) registered {
	t.Helper()
	body := map[string]any{"subscription": sub}
	for k, v := range who {
		body[k] = v
	}
	code, b := apiDo(t, http.MethodPost, base+"/api/devices", credential, body)
	if code != http.StatusCreated {
		t.Fatalf("register %v: %d %s", who, code, b)
	}
	var d struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	json.Unmarshal(b, &d)
	if d.ID == "" || !strings.HasPrefix(d.Secret, "dev_") {
		t.Fatalf("register: %s", b)
	}
	return registered{ID: d.ID, Secret: d.Secret, Sub: subID(t, sub)}
}

// newCall posts a sipgate newCall and returns how long its answer took.
func newCall(t *testing.T, base string, f url.Values) time.Duration {
	t.Helper()
	f.Set("event", "newCall")
	if f.Get("direction") == "" {
		f.Set("direction", "in")
	}
	start := time.Now()
	res, err := http.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(f.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	took := time.Since(start)
	if res.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("<Response")) {
		t.Fatalf("newCall %s: %s %s", f.Get("callId"), res.Status, b)
	}
	return took
}

func postEvent(t *testing.T, base string, f url.Values) {
	t.Helper()
	res, err := http.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(f.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("post %s: %s", f.Get("event"), res.Status)
	}
}

func holds(t *testing.T, base, outcome string) float64 {
	t.Helper()
	n, _, err := metric(base, "callstate_wake_holds_total", map[string]string{"outcome": outcome})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

const wakeTestToken = "wake-test-token-0123456789"

// TestWake runs the device API, the pushes and the held newCall through
// two instances on one database and a push service stand-in that decrypts
// every message with http_ece and checks its VAPID signature.
func TestWake(t *testing.T) {
	ps := startPushService(t)
	dbURL := storetest.NewDatabase(t)
	const wait = 3 * time.Second
	env := []string{"API_TOKEN=" + wakeTestToken, "WAKE_ALLOW_HTTP=true", "WAKE_WAIT=" + wait.String(),
		"WAKE_VAPID_SUBJECT=mailto:ops@example.com"}
	_, baseA := startWebhookInstance(t, dbURL, env...)
	_, baseB := startWebhookInstance(t, dbURL, env...)

	// Both instances sign with the one key the first made.
	key := func(base string) string {
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, b := apiDo(t, http.MethodGet, base+"/api/devices/vapid-key", "", nil)
			if code == http.StatusOK {
				var k struct {
					PublicKey string `json:"publicKey"`
				}
				json.Unmarshal(b, &k)
				return k.PublicKey
			}
			if time.Now().After(deadline) {
				t.Fatalf("vapid-key: %d %s", code, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	vapid := key(baseA)
	if kb := key(baseB); kb != vapid || len(vapid) != 87 {
		t.Fatalf("VAPID keys %q and %q: want one, 65 bytes in base64url", vapid, kb)
	}

	alice := register(t, baseA, wakeTestToken, map[string]any{"user": "w0", "name": "Alice's phone"}, ps.subscribe(t, ""))
	// The devices' set reaches the other instance (a notification).
	time.Sleep(300 * time.Millisecond)

	checkIncoming := func(t *testing.T, r pushReceipt, callID, journey string) {
		t.Helper()
		if !r.Verified || !r.Decrypted {
			t.Fatalf("push not verified or decrypted: %s", r.Error)
		}
		if r.K != vapid || r.VapidSub != "mailto:ops@example.com" {
			t.Errorf("signed with k=%s sub=%s, want %s", r.K, r.VapidSub, vapid)
		}
		if r.Urgency != "high" || r.TTL != "30" || r.Encoding != "aes128gcm" || r.Topic != callstate.WakeTopic(journey) {
			t.Errorf("headers urgency=%q ttl=%q encoding=%q topic=%q", r.Urgency, r.TTL, r.Encoding, r.Topic)
		}
		p := r.Payload
		want := callstate.WakeMessage{V: 1, Kind: "incoming", Call: callID, Journey: journey, From: "4915112345678",
			FromFormatted: formattedDE("4915112345678"), To: "4921112345678", ToName: "Alice", User: "w0", At: p.At,
			Ready: "/api/devices/" + alice.ID + "/ready?call=" + url.QueryEscape(callID)}
		if p != want {
			t.Errorf("payload\n got %+v\nwant %+v", p, want)
		}
		if _, err := time.Parse(time.RFC3339, p.At); err != nil {
			t.Errorf("at %q: %v", p.At, err)
		}
		if r.Size > 4096+86 {
			t.Errorf("body of %d bytes", r.Size)
		}
	}
	call := func(id string, users ...string) url.Values {
		f := url.Values{"callId": {id}, "from": {"4915112345678"}, "to": {"4921112345678"}}
		for _, u := range users {
			f.Add("userId[]", u)
			f.Add("user[]", map[string]string{"w0": "Alice", "w1": "Bob", "w2": "Carol", "w9": "Zed"}[u])
		}
		return f
	}

	t.Run("HeldUntilReadyOnTheOtherInstance", func(t *testing.T) {
		before := len(ps.receipts(alice.Sub))
		readyAt := make(chan time.Time, 1)
		go func() {
			// The device: wakes on the push, takes 300 ms, reports ready
			// to instance B.
			rs := ps.wait(t, alice.Sub, before+1)
			time.Sleep(300 * time.Millisecond)
			code, b := apiDo(t, http.MethodPost, baseB+rs[before].Payload.Ready, alice.Secret, nil)
			if code != http.StatusNoContent {
				t.Errorf("ready: %d %s", code, b)
			}
			readyAt <- time.Now()
		}()
		start := time.Now()
		took := newCall(t, baseA, call("c1", "w0"))
		answered := start.Add(took)
		at := <-readyAt
		if answered.Before(at.Add(-50*time.Millisecond)) || took >= wait {
			t.Errorf("newCall answered after %v, the ready came after %v: want the answer after the ready, before WAKE_WAIT %v",
				took, at.Sub(start), wait)
		}
		rs := ps.receipts(alice.Sub)
		checkIncoming(t, rs[before], "c1", "c1")
		t.Logf("newCall answered %v after it came, %v after the push went out, %v after the ready was sent",
			took, answered.Sub(time.UnixMilli(rs[before].At)), answered.Sub(at))
		if n := holds(t, baseA, "ready"); n != 1 {
			t.Errorf("holds ready = %v", n)
		}
	})

	t.Run("ClearAfterAnswerSameTopic", func(t *testing.T) {
		before := len(ps.receipts(alice.Sub))
		postEvent(t, baseB, url.Values{"event": {"answer"}, "callId": {"c1"}, "direction": {"in"}, "user": {"Bob"},
			"userId": {"w1"}, "answeringNumber": {"4921112345678"}})
		rs := ps.wait(t, alice.Sub, before+1)
		r := rs[before]
		if r.Payload != (callstate.WakeMessage{V: 1, Kind: "clear", Call: "c1", Journey: "c1", Reason: "answered", User: "w0"}) ||
			r.Topic != callstate.WakeTopic("c1") || !r.Verified {
			t.Errorf("clear %+v topic %s", r.Payload, r.Topic)
		}
		// The hangup clears nothing more: once per journey.
		postEvent(t, baseA, url.Values{"event": {"hangup"}, "callId": {"c1"}, "direction": {"in"}, "cause": {"normalClearing"}})
		time.Sleep(1500 * time.Millisecond)
		if n := len(ps.receipts(alice.Sub)); n != before+1 {
			t.Errorf("%d pushes after the hangup, want none", n-before-1)
		}
	})

	t.Run("TimeoutWithoutReadyThenClearOnHangup", func(t *testing.T) {
		before := len(ps.receipts(alice.Sub))
		took := newCall(t, baseB, call("c2", "w0"))
		if took < wait || took > wait+time.Second {
			t.Errorf("newCall answered after %v, want WAKE_WAIT %v", took, wait)
		}
		if n := holds(t, baseB, "timeout"); n != 1 {
			t.Errorf("holds timeout = %v", n)
		}
		postEvent(t, baseA, url.Values{"event": {"hangup"}, "callId": {"c2"}, "direction": {"in"}, "cause": {"cancel"}})
		rs := ps.wait(t, alice.Sub, before+2)
		checkIncoming(t, rs[before], "c2", "c2")
		if c := rs[before+1]; c.Payload.Kind != "clear" || c.Payload.Reason != "ended" || c.Topic != rs[before].Topic {
			t.Errorf("clear %+v topic %s, want ended with topic %s", c.Payload, c.Topic, rs[before].Topic)
		}
		t.Logf("held newCall answered after %v (WAKE_WAIT %v)", took, wait)
	})

	t.Run("ForwardLegSendsNoSecondPush", func(t *testing.T) {
		before := len(ps.receipts(alice.Sub))
		go func() {
			rs := ps.wait(t, alice.Sub, before+1)
			apiDo(t, http.MethodPost, baseA+rs[before].Payload.Ready, alice.Secret, nil)
		}()
		newCall(t, baseA, call("c3", "w1"+"", "w0"))
		none := holds(t, baseB, "none")
		// sipgate forwards the call to w0 again on a leg of its own.
		leg := call("c3-fwd", "w0")
		leg.Set("origCallId", "c3")
		took := newCall(t, baseB, leg)
		if took >= wait {
			t.Errorf("forward leg held %v", took)
		}
		if n := holds(t, baseB, "none"); n != none+1 {
			t.Errorf("holds none %v -> %v, want one more", none, n)
		}
		time.Sleep(500 * time.Millisecond)
		if n := len(ps.receipts(alice.Sub)); n != before+1 {
			t.Errorf("%d pushes for one journey, want 1", n-before)
		}
	})

	t.Run("NoDevicesNotHeld", func(t *testing.T) {
		all := len(ps.receipts(""))
		var held float64
		for _, o := range []string{"ready", "timeout", "none", "gone"} {
			held += holds(t, baseA, o)
		}
		took := newCall(t, baseA, call("c4", "w9"))
		if took >= wait {
			t.Errorf("newCall for a user without devices took %v", took)
		}
		var after float64
		for _, o := range []string{"ready", "timeout", "none", "gone"} {
			after += holds(t, baseA, o)
		}
		if after != held || len(ps.receipts("")) != all {
			t.Errorf("a call for a user without devices was held (%v -> %v) or pushed", held, after)
		}
	})

	t.Run("GoneSubscriptionRemoved", func(t *testing.T) {
		bob := register(t, baseB, wakeTestToken, map[string]any{"user": "w1"}, ps.subscribe(t, "410"))
		time.Sleep(300 * time.Millisecond)
		took := newCall(t, baseA, call("c5", "w1"))
		if took >= wait {
			t.Errorf("newCall held %v with the only push refused", took)
		}
		ps.wait(t, bob.Sub, 1)
		conn, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			conn.QueryRow(context.Background(), `SELECT count(*) FROM wake_device WHERE id = $1`, bob.ID).Scan(&n)
			if n == 0 || time.Now().After(deadline) {
				break
			}
		}
		if n != 0 {
			t.Error("device of a gone subscription still there")
		}
		if g, _, _ := metric(baseA, "callstate_wake_pushes_total", map[string]string{"outcome": "gone"}); g != 1 {
			t.Errorf("pushes gone = %v", g)
		}
		// Its credential no longer works.
		if code, _ := apiDo(t, http.MethodDelete, baseA+"/api/devices/"+bob.ID, bob.Secret, nil); code != http.StatusUnauthorized {
			t.Errorf("delete of a removed device with its credential: %d", code)
		}
	})

	t.Run("BadInput", func(t *testing.T) {
		sub := ps.subscribe(t, "")
		var s map[string]any
		json.Unmarshal(sub, &s)
		bad := func(mut func(map[string]any)) map[string]any {
			c := map[string]any{}
			b, _ := json.Marshal(s)
			json.Unmarshal(b, &c)
			mut(c)
			return c
		}
		for _, tt := range []struct {
			name, cred string
			body       any
			code       int
			msg        string
		}{
			{"NoCredential", "", map[string]any{"user": "w0", "subscription": s}, 401, "credentials"},
			{"WrongToken", "not-the-token-at-all", map[string]any{"user": "w0", "subscription": s}, 401, "credentials"},
			{"UnknownEnrollment", "enroll_nope", map[string]any{"user": "w0", "subscription": s}, 401, "enrollment token"},
			{"NotJSON", wakeTestToken, "{", 400, "JSON"},
			{"UserAndExtension", wakeTestToken, map[string]any{"user": "w0", "extension": "101", "subscription": s}, 400, "either user"},
			{"NoSubscription", wakeTestToken, map[string]any{"user": "w0"}, 400, "subscription is required"},
			{"NoEndpoint", wakeTestToken, map[string]any{"user": "w0", "subscription": bad(func(m map[string]any) { delete(m, "endpoint") })}, 400, "endpoint"},
			{"BadP256dh", wakeTestToken, map[string]any{"user": "w0", "subscription": bad(func(m map[string]any) {
				m["keys"].(map[string]any)["p256dh"] = "BAAA"
			})}, 400, "p256dh"},
			{"BadAuth", wakeTestToken, map[string]any{"user": "w0", "subscription": bad(func(m map[string]any) {
				m["keys"].(map[string]any)["auth"] = "c2hvcnQ"
			})}, 400, "auth"},
			{"EndpointNotURL", wakeTestToken, map[string]any{"user": "w0", "subscription": bad(func(m map[string]any) { m["endpoint"] = "push me" })}, 400, "endpoint"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				var body any = tt.body
				if s, ok := tt.body.(string); ok {
					body = []byte(s)
				}
				code, b := apiDo(t, http.MethodPost, baseA+"/api/devices", tt.cred, body)
				if code != tt.code || !strings.Contains(string(b), tt.msg) {
					t.Errorf("%d %s, want %d with %q", code, b, tt.code, tt.msg)
				}
			})
		}
		t.Run("WrongDeviceCredential", func(t *testing.T) {
			code, b := apiDo(t, http.MethodPost, baseA+"/api/devices/"+alice.ID+"/ready?call=c1", "dev_wrong", nil)
			if code != http.StatusUnauthorized {
				t.Errorf("%d %s", code, b)
			}
			code, b = apiDo(t, http.MethodPost, baseA+"/api/devices/"+alice.ID+"/ready?call=c1", wakeTestToken, nil)
			if code != http.StatusUnauthorized {
				t.Errorf("the API token reports ready: %d %s", code, b)
			}
		})
		t.Run("UnknownCall", func(t *testing.T) {
			code, b := apiDo(t, http.MethodPost, baseA+"/api/devices/"+alice.ID+"/ready?call=never", alice.Secret, nil)
			if code != http.StatusNotFound || !strings.Contains(string(b), "no push of that call") {
				t.Errorf("%d %s", code, b)
			}
			code, b = apiDo(t, http.MethodPost, baseA+"/api/devices/"+alice.ID+"/ready", alice.Secret, nil)
			if code != http.StatusBadRequest {
				t.Errorf("no call: %d %s", code, b)
			}
		})
	})

	t.Run("HTTPSAndPublicEndpointsOnly", func(t *testing.T) {
		// An instance without WAKE_ALLOW_HTTP.
		_, baseC := startWebhookInstance(t, dbURL, "API_TOKEN="+wakeTestToken)
		sub := ps.subscribe(t, "")
		var s map[string]any
		json.Unmarshal(sub, &s)
		for _, tt := range []struct{ endpoint, msg string }{
			{s["endpoint"].(string), "must be an https URL"},
			{"https://127.0.0.1:8443/push/1", "private"},
			{"https://192.168.1.20/push/1", "private"},
		} {
			s["endpoint"] = tt.endpoint
			code, b := apiDo(t, http.MethodPost, baseC+"/api/devices", wakeTestToken, map[string]any{"user": "w0", "subscription": s})
			if code != http.StatusBadRequest || !strings.Contains(string(b), tt.msg) {
				t.Errorf("%s: %d %s, want 400 with %q", tt.endpoint, code, b, tt.msg)
			}
		}
	})

	t.Run("EnrollmentForItsOwnUserOnce", func(t *testing.T) {
		out, err := runCLI(t, map[string]string{"DATABASE_URL": dbURL, "PUBLIC_URL": "https://calls.example.com", "LOG_LEVEL": "error"},
			"devices", "enroll", "w2")
		if err != nil {
			t.Fatal(err)
		}
		link, err := url.Parse(strings.TrimSpace(out))
		if err != nil || !strings.HasPrefix(out, "https://calls.example.com/board/?enroll=enroll_") || link.Fragment != "wake" ||
			link.Query().Get("user") != "w2" {
			t.Fatalf("enroll printed %q", out)
		}
		token := link.Query().Get("enroll")
		sub := ps.subscribe(t, "")
		if code, b := apiDo(t, http.MethodPost, baseA+"/api/devices", token,
			map[string]any{"user": "w1", "subscription": sub}); code != http.StatusForbidden {
			t.Errorf("enrollment for w2 used for w1: %d %s", code, b)
		}
		if code, b := apiDo(t, http.MethodPost, baseA+"/api/devices", token,
			map[string]any{"extension": "101", "subscription": sub}); code != http.StatusForbidden {
			t.Errorf("enrollment for w2 used for an extension: %d %s", code, b)
		}
		carol := register(t, baseB, token, map[string]any{"user": "w2"}, sub)
		if code, b := apiDo(t, http.MethodPost, baseA+"/api/devices", token,
			map[string]any{"user": "w2", "subscription": ps.subscribe(t, "")}); code != http.StatusUnauthorized {
			t.Errorf("enrollment used twice: %d %s", code, b)
		}
		out, err = runCLI(t, map[string]string{"DATABASE_URL": dbURL, "LOG_LEVEL": "error"}, "devices")
		if err != nil || !strings.Contains(out, carol.ID) || !strings.Contains(out, alice.ID) || !strings.Contains(out, "Alice's phone") {
			t.Errorf("devices list: %v\n%s", err, out)
		}
		// The device removes itself with its own credential.
		if code, b := apiDo(t, http.MethodDelete, baseA+"/api/devices/"+carol.ID, carol.Secret, nil); code != http.StatusNoContent {
			t.Errorf("delete with own credential: %d %s", code, b)
		}
		if code, _ := apiDo(t, http.MethodDelete, baseA+"/api/devices/"+carol.ID, wakeTestToken, nil); code != http.StatusNotFound {
			t.Errorf("delete again: %d", code)
		}
	})

	t.Run("CORSForTheBoard", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodOptions, baseA+"/api/devices", nil)
		req.Header.Set("Origin", baseA)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != baseA ||
			!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "POST") {
			t.Errorf("preflight %s: allow-origin %q methods %q", res.Status, got, res.Header.Get("Access-Control-Allow-Methods"))
		}
	})

	t.Run("RoutedElsewhereNotHeld", func(t *testing.T) {
		rules := t.TempDir() + "/routing.yaml"
		os.WriteFile(rules, []byte("rules:\n  - name: block list\n    when: { from: [\"+4930999*\"] }\n    then: { reject: busy }\n"), 0o644)
		_, baseD := startWebhookInstance(t, dbURL, "API_TOKEN="+wakeTestToken, "WAKE_ALLOW_HTTP=true", "ROUTING_FILE="+rules)
		time.Sleep(500 * time.Millisecond) // its devices' set
		before := len(ps.receipts(alice.Sub))
		f := call("c8", "w0")
		f.Set("from", "4930999123")
		took := newCall(t, baseD, f)
		routed, _, _ := metric(baseD, "callstate_routing_decisions_total", map[string]string{"rule": "block list"})
		var held float64
		for _, o := range []string{"ready", "timeout", "none", "gone"} {
			held += holds(t, baseD, o)
		}
		time.Sleep(300 * time.Millisecond)
		if routed != 1 || held != 0 || took >= wait || len(ps.receipts(alice.Sub)) != before {
			t.Errorf("a rejected call: routed %v, held %v, answered after %v, %d pushes", routed, held, took,
				len(ps.receipts(alice.Sub))-before)
		}
		// The same instance holds a call no rule takes.
		go func() {
			rs := ps.wait(t, alice.Sub, before+1)
			apiDo(t, http.MethodPost, baseD+rs[before].Payload.Ready, alice.Secret, nil)
		}()
		newCall(t, baseD, call("c9", "w0"))
		if n := holds(t, baseD, "ready"); n != 1 {
			t.Errorf("holds ready on the routing instance = %v", n)
		}
	})

	t.Run("PBXEarlyDialogPushedNotHeld", func(t *testing.T) {
		// A PBX extension's device; the dialog comes as the SIP subscriber
		// writes it (through the store, as sip.Subscriber's events do).
		ext := register(t, baseA, wakeTestToken, map[string]any{"extension": "101"}, ps.subscribe(t, ""))
		time.Sleep(300 * time.Millisecond)
		st, err := store.Open(context.Background(), dbURL, store.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		<-st.Ready()
		dialog := func(state callstate.State) {
			u := callstate.Update{Key: "101|dlg-1", CallID: "pbx-call-1", Extension: "101", State: state,
				Direction: callstate.DirectionIn, From: "4915112345678", To: "101"}
			if _, err := st.Apply(context.Background(), callstate.Event{Source: callstate.SourceSIP, Type: "dialog",
				DedupKey: "101|pbx-call-1|" + state.String(), ReceivedAt: time.Now(), Payload: []byte("<dialog/>"), Update: u}); err != nil {
				t.Fatal(err)
			}
		}
		dialog(callstate.StateRinging)
		rs := ps.wait(t, ext.Sub, 1)
		p := rs[0].Payload
		if !rs[0].Verified || p.Kind != "incoming" || p.Call != "pbx-call-1" || p.Journey != "sip:pbx-call-1" ||
			p.Extension != "101" || p.User != "" || p.From != "4915112345678" || p.FromFormatted != formattedDE(p.From) ||
			p.Ready != "/api/devices/"+ext.ID+"/ready?call=pbx-call-1" || rs[0].Topic != callstate.WakeTopic("sip:pbx-call-1") {
			t.Errorf("early dialog's push %+v topic %s", p, rs[0].Topic)
		}
		// The device's ready is taken (nothing is held).
		if code, b := apiDo(t, http.MethodPost, baseB+p.Ready, ext.Secret, nil); code != http.StatusNoContent {
			t.Errorf("ready: %d %s", code, b)
		}
		dialog(callstate.StateEnded)
		rs = ps.wait(t, ext.Sub, 2)
		if c := rs[1]; c.Payload.Kind != "clear" || c.Payload.Reason != "ended" || c.Topic != rs[0].Topic {
			t.Errorf("clear %+v", c.Payload)
		}
	})

	t.Run("LostClearSentAgain", func(t *testing.T) {
		// A clear recorded a minute ago by an instance that died before
		// sending it: an instance that starts sends it.
		conn, err := pgx.Connect(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), `
INSERT INTO wake_push (journey_id, call_id, user_ids, pushed_at, cleared_at, clear_reason)
VALUES ('lostj', 'lostc', '{w0}', now() - interval '2 minutes', now() - interval '1 minute', 'ended')`); err != nil {
			t.Fatal(err)
		}
		before := len(ps.receipts(alice.Sub))
		startWebhookInstance(t, dbURL, env...)
		rs := ps.wait(t, alice.Sub, before+1)
		if r := rs[before]; r.Payload != (callstate.WakeMessage{V: 1, Kind: "clear", Call: "lostc", Journey: "lostj", Reason: "ended", User: "w0"}) ||
			r.Topic != callstate.WakeTopic("lostj") {
			t.Errorf("clear sent again %+v topic %s", r.Payload, r.Topic)
		}
		var sent *time.Time
		conn.QueryRow(context.Background(), `SELECT clear_sent_at FROM wake_push WHERE journey_id = 'lostj'`).Scan(&sent)
		if sent == nil {
			t.Error("the clear sent again is not marked sent")
		}
	})

	t.Run("ThrottledByRetryAfter", func(t *testing.T) {
		dave := register(t, baseA, wakeTestToken, map[string]any{"user": "w3"}, ps.subscribe(t, "429:30"))
		time.Sleep(300 * time.Millisecond)
		f := call("c6", "w0")
		f.Set("userId[]", "w3")
		newCall(t, baseA, f)
		ps.wait(t, dave.Sub, 1)
		// Within Retry-After, instance A sends nothing to that push service.
		f = call("c7", "w3")
		newCall(t, baseA, f)
		time.Sleep(300 * time.Millisecond)
		// Nor does instance B: the wait is kept for every instance.
		f = call("c8", "w3")
		newCall(t, baseB, f)
		time.Sleep(300 * time.Millisecond)
		if n := len(ps.receipts(dave.Sub)); n != 1 {
			t.Errorf("%d pushes within Retry-After, want the first only", n)
		}
		if n, _, _ := metric(baseB, "callstate_wake_pushes_total", map[string]string{"outcome": "throttled"}); n < 1 {
			t.Errorf("pushes throttled on instance B = %v, want 1", n)
		}
		if n, _, _ := metric(baseA, "callstate_wake_pushes_total", map[string]string{"outcome": "throttled"}); n < 2 {
			t.Errorf("pushes throttled = %v, want 2", n)
		}
	})
}
