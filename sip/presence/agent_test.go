package presence

import (
	"context"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/sip"
	"github.com/callstate/callstate/store"
)

// storeSource is the store as the agent's LampSource, as cmd/callstate
// wires it (there, with the presence_alias table's aliases besides the
// configured ones; no test here has any).
type storeSource struct{ *store.Store }

func (s storeSource) AgentAccounts(ctx context.Context, realm string) (map[string]string, error) {
	return s.PresenceAccounts(ctx, realm)
}

func (s storeSource) AgentAliases(context.Context) (map[string]LampRef, error) {
	return map[string]LampRef{}, nil
}

// startAgent runs an Agent over the store until the test ends, fed as in
// cmd/callstate (see follow).
func startAgent(tb testing.TB, st *store.Store, cfg Config) *Agent {
	tb.Helper()
	cfg.ListenAddr = cmpOr(cfg.ListenAddr, "127.0.0.1:0")
	cfg.Domain = cmpOr(cfg.Domain, "callstate.test")
	cfg.Source = storeSource{st}
	if cfg.Logger == nil {
		cfg.Logger = testpbx.Logger(tb)
	}
	if cfg.Accounts == nil {
		cfg.Accounts = map[string]string{"desk": "secret"}
	}
	a, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	followed := follow(ctx, tb, st, a)
	done := make(chan struct{})
	go func() {
		if err := a.Run(ctx); err != nil {
			tb.Error(err)
		}
		close(done)
	}()
	tb.Cleanup(func() { cancel(); <-done; <-followed })
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		tb.Fatal("agent not ready within 10s")
	}
	return a
}

// follow feeds a the store's feed until ctx is done, as cmd/callstate
// does: the store's change notifications wake the reader. The returned
// channel is closed when it has stopped.
func follow(ctx context.Context, tb testing.TB, st *store.Store, a *Agent) <-chan struct{} {
	wake := make(chan struct{}, 1)
	done := make(chan struct{}, 2)
	go func() {
		_ = st.Listen(ctx, func(store.Change) {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
		done <- struct{}{}
	}()
	go func() {
		if err := st.FollowFeed(ctx, store.FeedFollow{Start: a.Snapshot, Apply: a.Apply, Wake: wake}); err != nil {
			tb.Error(err)
		}
		done <- struct{}{}
	}()
	stopped := make(chan struct{})
	go func() { <-done; <-done; close(stopped) }()
	return stopped
}

func applyCall(tb testing.TB, st *store.Store, key string, u callstate.Update) {
	tb.Helper()
	u.Key = key
	ev := callstate.Event{Source: callstate.SourceSipgate, Type: "x", DedupKey: key + "/" + u.State.String(),
		ReceivedAt: time.Now(), Payload: []byte("{}"), Update: u}
	if _, err := st.Apply(context.Background(), ev); err != nil {
		tb.Fatal(err)
	}
}

func TestAgentDialogLamp(t *testing.T) {
	st := testpbx.OpenStore(t)
	// Alice is known as a sipgate user from an earlier call.
	applyCall(t, st, "old", callstate.Update{Extension: "w0", Users: []string{"Alice Doe"}, UserIDs: []string{"w0"}, State: callstate.StateEnded})
	a := startAgent(t, st, Config{Aliases: map[string]LampRef{"+49 211 555": {callstate.SourceSipgate, "w0"}}})
	p := newPhone(t, a.Addr())

	for _, user := range []string{"w0", "alice.doe", "0049211555"} {
		t.Run("ResolvesAs_"+user, func(t *testing.T) {
			s := p.newSub(user, "dialog")
			if r := s.subscribe("desk", "secret"); r.StatusCode != 200 {
				t.Fatalf("SUBSCRIBE %s: %d", user, r.StatusCode)
			}
			n := s.next()
			if got, _ := dialogStates(t, n); strings.Join(got, ",") != "terminated" {
				t.Errorf("first NOTIFY: dialogs %v, want one terminated (idle)", got)
			}
			if ss := n.GetHeader("Subscription-State").Value(); !strings.HasPrefix(ss, "active;expires=") {
				t.Errorf("Subscription-State %q", ss)
			}
		})
	}

	s := p.newSub("w0", "dialog")
	if r := s.subscribe("desk", "secret"); r.StatusCode != 200 || r.GetHeader("Expires").Value() != "600" {
		t.Fatalf("SUBSCRIBE: %d Expires %v", r.StatusCode, r.GetHeader("Expires"))
	}
	var versions []uint64
	step := func(want string) {
		t.Helper()
		n := s.next()
		got, v := dialogStates(t, n)
		versions = append(versions, v)
		if strings.Join(got, ",") != want {
			t.Errorf("dialogs %v, want %s\n%s", got, want, n.Body())
		}
	}
	step("terminated")
	applyCall(t, st, "call1", callstate.Update{Direction: callstate.DirectionIn, From: "4917012345", To: "49211555",
		Users: []string{"Alice Doe"}, UserIDs: []string{"w0"}, State: callstate.StateRinging})
	step("early/recipient")
	applyCall(t, st, "call1", callstate.Update{Extension: "w0", PinExtension: true, State: callstate.StateAnswered})
	step("confirmed/recipient")
	applyCall(t, st, "call1", callstate.Update{State: callstate.StateEnded, Cause: "normalClearing"})
	step("terminated/recipient")
	// A refresh gets the full state again, the version goes on.
	if r := s.send("Expires: 300"); r.StatusCode != 200 || r.GetHeader("Expires").Value() != "300" {
		t.Fatalf("refresh: %d (to tag %q)", r.StatusCode, s.toTag)
	}
	step("terminated")
	for i, v := range versions {
		if v != uint64(i) {
			t.Errorf("versions %v, want 0, 1, 2, ...", versions)
			break
		}
	}
	// Expires: 0 ends it with a last NOTIFY.
	if r := s.send("Expires: 0"); r.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", r.StatusCode)
	}
	if ss := s.next().GetHeader("Subscription-State").Value(); ss != "terminated;reason=timeout" {
		t.Errorf("after Expires: 0: Subscription-State %q", ss)
	}
	if r := s.send(); r.StatusCode != 481 {
		t.Errorf("refresh after the end: %d, want 481", r.StatusCode)
	}
}

func TestAgentPresence(t *testing.T) {
	st := testpbx.OpenStore(t)
	applyCall(t, st, "old", callstate.Update{Extension: "w1", UserIDs: []string{"w1"}, State: callstate.StateEnded})
	a := startAgent(t, st, Config{})
	s := newPhone(t, a.Addr()).newSub("w1", "presence")
	if r := s.subscribe("desk", "secret", "Accept: application/pidf+xml"); r.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", r.StatusCode)
	}
	status := func() string {
		t.Helper()
		n := s.next()
		if ct := n.GetHeader("Content-Type").Value(); ct != ctPIDF {
			t.Errorf("Content-Type %q", ct)
		}
		pr, err := sip.ParsePresence(n.Body())
		if err != nil {
			t.Fatalf("PIDF does not parse: %v\n%s", err, n.Body())
		}
		return pr.Status()
	}
	if got := status(); got != "idle" {
		t.Errorf("first: %s, want idle", got)
	}
	applyCall(t, st, "p1", callstate.Update{Direction: callstate.DirectionOut, Extension: "w1", UserIDs: []string{"w1"}, State: callstate.StateAnswered})
	if got := status(); got != "busy" {
		t.Errorf("answered: %s, want busy", got)
	}
}

// TestAgentHostile sends what a broken or hostile subscriber sends: each is
// answered, nothing is kept, and the agent goes on serving.
func TestAgentHostile(t *testing.T) {
	st := testpbx.OpenStore(t)
	applyCall(t, st, "old", callstate.Update{Extension: "w0", UserIDs: []string{"w0"}, State: callstate.StateEnded})
	a := startAgent(t, st, Config{MinExpires: time.Minute, MaxExpires: time.Hour, Burst: 1000})
	p := newPhone(t, a.Addr())
	tests := []struct {
		name  string
		user  string
		hdrs  []string
		auth  bool
		want  int
		check func(*sipmsg.Response) string
	}{
		{"NoEvent", "w0", []string{"Event: "}, false, 489, nil},
		{"BadEvent", "w0", []string{"Event: message-summary"}, false, 489, func(r *sipmsg.Response) string {
			if h := r.GetHeader("Allow-Events"); h == nil || h.Value() != allowEvents {
				return "no Allow-Events"
			}
			return ""
		}},
		{"EventGarbage", "w0", []string{"Event: \x01;;;=="}, false, 489, nil},
		{"ExpiresTooBrief", "w0", []string{"Expires: 5"}, false, 423, func(r *sipmsg.Response) string {
			if h := r.GetHeader("Min-Expires"); h == nil || h.Value() != "60" {
				return "no Min-Expires: 60"
			}
			return ""
		}},
		{"ExpiresNotANumber", "w0", []string{"Expires: soon"}, false, 400, nil},
		{"NoCredentials", "w0", nil, false, 401, nil},
		{"ExpiresHuge", "w0", []string{"Expires: 99999999999999999999999999"}, true, 200, func(r *sipmsg.Response) string {
			if r.GetHeader("Expires").Value() != "3600" {
				return "Expires " + r.GetHeader("Expires").Value() + ", want the maximum 3600"
			}
			return ""
		}},
		{"UnknownResource", "nobody", nil, true, 404, nil},
		{"NotAcceptable", "w0", []string{"Accept: text/plain"}, true, 406, nil},
		{"WrongPassword", "w0", []string{"Authorization: Digest username=\"desk\", realm=\"callstate.test\", nonce=\"x.y\", uri=\"sip:w0@callstate.test\", response=\"00\""}, false, 401, nil},
		{"MalformedCredentials", "w0", []string{"Authorization: Digest username"}, false, 403, nil},
		{"NotDigest", "w0", []string{"Authorization: Basic ZGVzazpzZWNyZXQ="}, false, 403, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := p.newSub(tt.user, "dialog")
			var r *sipmsg.Response
			if tt.auth {
				r = s.subscribe("desk", "secret", tt.hdrs...)
			} else {
				r = s.send(tt.hdrs...)
			}
			if r.StatusCode != tt.want {
				t.Fatalf("answered %d %s, want %d", r.StatusCode, r.Reason, tt.want)
			}
			if tt.check != nil {
				if msg := tt.check(r); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
	t.Run("WrongPasswordAfterChallenge", func(t *testing.T) {
		if r := p.newSub("w0", "dialog").subscribe("desk", "guess"); r.StatusCode != 403 {
			t.Errorf("answered %d, want 403", r.StatusCode)
		}
	})
	t.Run("RefreshOfNoSubscription", func(t *testing.T) {
		s := p.newSub("w0", "dialog")
		s.toTag = "madeup"
		if r := s.send(); r.StatusCode != 481 {
			t.Errorf("answered %d, want 481", r.StatusCode)
		}
	})
	if n := a.Stats().Subscriptions; n != 1 {
		t.Errorf("%d subscriptions, want only the one with the huge Expires", n)
	}
}

// TestAgentFlood: past the burst, a source gets 503 with Retry-After, and
// another source is served all the same.
func TestAgentFlood(t *testing.T) {
	st := testpbx.OpenStore(t)
	a := startAgent(t, st, Config{RatePerSecond: 1, Burst: 5})
	p := newPhone(t, a.Addr())
	codes := map[int]int{}
	for range 20 {
		codes[p.newSub("w0", "dialog").send().StatusCode]++
	}
	if codes[401] != 5 || codes[503] != 15 {
		t.Errorf("answers %v, want 5 challenges and 15 refusals", codes)
	}
	if a.Stats().Limited != 15 {
		t.Errorf("Limited = %d", a.Stats().Limited)
	}
	// The limit is per source address; a second socket on 127.0.0.1 shares
	// it, so this only proves the agent still answers once the bucket
	// refills.
	time.Sleep(1100 * time.Millisecond)
	if r := p.newSub("w0", "dialog").send(); r.StatusCode != 401 {
		t.Errorf("after a second: %d, want 401", r.StatusCode)
	}
}

// TestAgentShutdown: stopping ends every subscription with a NOTIFY.
func TestAgentShutdown(t *testing.T) {
	st := testpbx.OpenStore(t)
	applyCall(t, st, "old", callstate.Update{Extension: "w0", UserIDs: []string{"w0"}, State: callstate.StateEnded})
	cfg := Config{ListenAddr: "127.0.0.1:0", Domain: "callstate.test", Source: storeSource{st}, AllowAnonymous: true, Logger: testpbx.Logger(t)}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	followed := follow(ctx, t, st, a)
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	<-a.Ready()
	s := newPhone(t, a.Addr()).newSub("w0", "dialog")
	if r := s.send(); r.StatusCode != 200 {
		t.Fatalf("anonymous SUBSCRIBE: %d", r.StatusCode)
	}
	s.next()
	cancel()
	if ss := s.next().GetHeader("Subscription-State").Value(); ss != "terminated;reason=deactivated" {
		t.Errorf("at shutdown: Subscription-State %q", ss)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
	<-followed
}

// TestAgentSubscriberGone: a NOTIFY answered 481 ends the subscription.
func TestAgentSubscriberGone(t *testing.T) {
	st := testpbx.OpenStore(t)
	applyCall(t, st, "old", callstate.Update{Extension: "w0", UserIDs: []string{"w0"}, State: callstate.StateEnded})
	a := startAgent(t, st, Config{})
	p := newPhone(t, a.Addr())
	p.answer = 481
	if r := p.newSub("w0", "dialog").subscribe("desk", "secret"); r.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", r.StatusCode)
	}
	for deadline := time.Now().Add(5 * time.Second); a.Stats().Subscriptions != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("subscription kept after its NOTIFY was answered 481")
		}
	}
}

// TestAgentResourceList: a SUBSCRIBE with Supported: eventlist to a list
// URI gets multipart/related NOTIFYs with an RLMI document: every member
// first, then only the member that changed.
func TestAgentResourceList(t *testing.T) {
	st := testpbx.OpenStore(t)
	for _, u := range []string{"w0", "w1"} {
		applyCall(t, st, "old-"+u, callstate.Update{Extension: u, UserIDs: []string{u}, State: callstate.StateEnded})
	}
	a := startAgent(t, st, Config{Lists: map[string][]LampRef{"team": {{callstate.SourceSipgate, "w0"}, {callstate.SourceSipgate, "w1"}}}})
	p := newPhone(t, a.Addr())
	if r := p.newSub("team", "dialog").subscribe("desk", "secret"); r.StatusCode != 421 || r.GetHeader("Require").Value() != "eventlist" {
		t.Fatalf("list without Supported: eventlist: %d, want 421 with Require: eventlist", r.StatusCode)
	}
	s := p.newSub("team", "dialog")
	if r := s.subscribe("desk", "secret", "Supported: eventlist"); r.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", r.StatusCode)
	}
	check := func(wantFull string, wantURIs ...string) string {
		t.Helper()
		n := s.next()
		ct := n.GetHeader("Content-Type").Value()
		if !strings.HasPrefix(ct, "multipart/related") || n.GetHeader("Require") == nil {
			t.Fatalf("Content-Type %q, Require %v", ct, n.GetHeader("Require"))
		}
		body := string(n.Body())
		if !strings.Contains(body, `fullState="`+wantFull+`"`) {
			t.Errorf("want fullState=%s:\n%s", wantFull, body)
		}
		if got := strings.Count(body, "<resource "); got != len(wantURIs) {
			t.Errorf("%d resources, want %v:\n%s", got, wantURIs, body)
		}
		for _, u := range wantURIs {
			if !strings.Contains(body, `<resource uri="`+u+`"`) {
				t.Errorf("no resource %s:\n%s", u, body)
			}
		}
		return body
	}
	check("true", "sip:w0@callstate.test", "sip:w1@callstate.test")
	applyCall(t, st, "lc1", callstate.Update{Direction: callstate.DirectionIn, From: "4917012345", UserIDs: []string{"w1"}, State: callstate.StateRinging})
	if b := check("false", "sip:w1@callstate.test"); !strings.Contains(b, "<state>early</state>") {
		t.Errorf("w1 is not ringing:\n%s", b)
	}
	if r := s.send("Supported: eventlist"); r.StatusCode != 200 {
		t.Fatalf("refresh: %d", r.StatusCode)
	}
	check("true", "sip:w0@callstate.test", "sip:w1@callstate.test")
}

// TestAgentNewUser: a user sipgate told of a moment ago, whose call has
// already ended, can be subscribed to at once: an unknown name makes the
// agent read every lamp before it answers 404.
func TestAgentNewUser(t *testing.T) {
	st := testpbx.OpenStore(t)
	a := startAgent(t, st, Config{})
	applyCall(t, st, "n1", callstate.Update{Extension: "w7", UserIDs: []string{"w7"}, State: callstate.StateRinging})
	applyCall(t, st, "n1", callstate.Update{State: callstate.StateEnded})
	p := newPhone(t, a.Addr())
	if r := p.newSub("w7", "dialog").subscribe("desk", "secret"); r.StatusCode != 200 {
		t.Errorf("SUBSCRIBE for the new user: %d, want 200", r.StatusCode)
	}
	if r := p.newSub("w8", "dialog").subscribe("desk", "secret"); r.StatusCode != 404 {
		t.Errorf("SUBSCRIBE for nobody: %d, want 404", r.StatusCode)
	}
}
