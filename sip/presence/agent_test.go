package presence

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
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

// phone is a SIP subscriber on a UDP socket of its own that writes its
// requests by hand, so that any header can be anything, and answers every
// NOTIFY 200 unless told otherwise.
type phone struct {
	tb    testing.TB
	conn  *net.UDPConn
	agent *net.UDPAddr

	mu       sync.Mutex
	res      map[string]chan *sipmsg.Response // by Call-ID
	notifies chan *sipmsg.Request
	answer   int // status for NOTIFYs; 0 means 200
}

func newPhone(tb testing.TB, agentAddr string) *phone {
	tb.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	ra, err := net.ResolveUDPAddr("udp", agentAddr)
	if err != nil {
		tb.Fatal(err)
	}
	p := &phone{tb: tb, conn: conn, agent: ra, res: map[string]chan *sipmsg.Response{}, notifies: make(chan *sipmsg.Request, 1000)}
	tb.Cleanup(func() { _ = conn.Close() })
	go p.read()
	return p
}

func (p *phone) addr() string { return p.conn.LocalAddr().String() }

func (p *phone) read() {
	buf := make([]byte, 65535)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg, err := sipmsg.ParseMessage(append([]byte(nil), buf[:n]...))
		if err != nil {
			p.tb.Logf("phone: unparsable message: %v", err)
			continue
		}
		switch m := msg.(type) {
		case *sipmsg.Response:
			if from.String() != p.agent.String() {
				p.tb.Errorf("response from %s, not from the agent's socket %s", from, p.agent)
			}
			p.mu.Lock()
			ch := p.res[string(*m.CallID())]
			p.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		case *sipmsg.Request:
			p.mu.Lock()
			code := cmpOr(p.answer, 200)
			p.mu.Unlock()
			res := sipmsg.NewResponseFromRequest(m, code, "Whatever", nil)
			_, _ = p.conn.WriteToUDP([]byte(res.String()), from)
			if from.String() != p.agent.String() {
				p.tb.Errorf("NOTIFY from %s, not from the agent's socket %s", from, p.agent)
			}
			p.notifies <- m
		}
	}
}

// sub is one subscription of the phone: its dialog.
type sub struct {
	p       *phone
	user    string
	callID  string
	fromTag string
	toTag   string
	cseq    int
	event   string
	res     chan *sipmsg.Response
}

func (p *phone) newSub(user, event string) *sub {
	s := &sub{p: p, user: user, callID: "c" + sipmsg.GenerateTagN(12), fromTag: sipmsg.GenerateTagN(8), event: event,
		res: make(chan *sipmsg.Response, 20)}
	p.mu.Lock()
	p.res[s.callID] = s.res
	p.mu.Unlock()
	return s
}

// send sends a SUBSCRIBE in s's dialog with hdrs (name: value lines; an
// empty value leaves the header out) and returns the final response.
func (s *sub) send(hdrs ...string) *sipmsg.Response {
	s.p.tb.Helper()
	s.cseq++
	set := map[string]string{"Event": s.event, "Expires": "600", "Accept": ""}
	var order []string
	for _, h := range hdrs {
		k, v, _ := strings.Cut(h, ":")
		if _, ok := set[k]; !ok {
			order = append(order, k)
		}
		set[k] = strings.TrimSpace(v)
	}
	uri := "sip:" + s.user + "@callstate.test"
	var b strings.Builder
	fmt.Fprintf(&b, "SUBSCRIBE %s SIP/2.0\r\n", uri)
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n", s.p.addr(), sipmsg.GenerateTagN(10))
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:desk@callstate.test>;tag=%s\r\n", s.fromTag)
	if s.toTag != "" {
		fmt.Fprintf(&b, "To: <%s>;tag=%s\r\n", uri, s.toTag)
	} else {
		fmt.Fprintf(&b, "To: <%s>\r\n", uri)
	}
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d SUBSCRIBE\r\n", s.callID, s.cseq)
	fmt.Fprintf(&b, "Contact: <sip:desk@%s>\r\n", s.p.addr())
	for _, k := range append([]string{"Event", "Expires", "Accept"}, order...) {
		if v := set[k]; v != "" {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	if _, err := s.p.conn.WriteToUDP([]byte(b.String()), s.p.agent); err != nil {
		s.p.tb.Fatal(err)
	}
	for {
		select {
		case r := <-s.res:
			if r.StatusCode < 200 {
				continue
			}
			if s.toTag == "" && r.StatusCode/100 == 2 {
				s.toTag, _ = r.To().Params.Get("tag")
			}
			return r
		case <-time.After(5 * time.Second):
			s.p.tb.Fatalf("no response to SUBSCRIBE %s", uri)
			return nil
		}
	}
}

// subscribe sends a SUBSCRIBE, answers the challenge with user and
// password, and returns the final response.
func (s *sub) subscribe(user, password string, hdrs ...string) *sipmsg.Response {
	s.p.tb.Helper()
	r := s.send(hdrs...)
	if r.StatusCode != 401 {
		return r
	}
	return s.send(append(hdrs, "Authorization: "+answerChallenge(r, user, password, "sip:"+s.user+"@callstate.test"))...)
}

var challengeRE = regexp.MustCompile(`(\w+)="?([^",]*)"?`)

func answerChallenge(r *sipmsg.Response, user, password, uri string) string {
	f := map[string]string{}
	for _, m := range challengeRE.FindAllStringSubmatch(r.GetHeader("WWW-Authenticate").Value(), -1) {
		f[m[1]] = m[2]
	}
	ha1 := HA1(user, f["realm"], password)
	resp := md5hex(ha1 + ":" + f["nonce"] + ":00000001:abc:auth:" + md5hex("SUBSCRIBE:"+uri))
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"`,
		user, f["realm"], f["nonce"], uri, resp)
}

// next returns the next NOTIFY of s.
func (s *sub) next() *sipmsg.Request {
	s.p.tb.Helper()
	for {
		select {
		case n := <-s.p.notifies:
			if string(*n.CallID()) == s.callID {
				return n
			}
		case <-time.After(5 * time.Second):
			s.p.tb.Fatalf("no NOTIFY for %s", s.user)
			return nil
		}
	}
}

// dialogStates returns the states of the dialogs of a dialog-info NOTIFY,
// with their direction, e.g. "early/recipient".
func dialogStates(tb testing.TB, n *sipmsg.Request) (states []string, version uint64) {
	tb.Helper()
	di, err := sip.ParseDialogInfo(n.Body())
	if err != nil {
		tb.Fatalf("NOTIFY body does not parse: %v\n%s", err, n.Body())
	}
	for _, d := range di.Dialogs {
		s := d.State
		if d.Direction != "" {
			s += "/" + string(d.Direction)
		}
		states = append(states, s)
	}
	return states, di.Version
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
