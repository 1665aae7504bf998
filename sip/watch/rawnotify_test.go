package watch

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/sip"
	"github.com/callstate/callstate/store"
)

// rawPeer sends NOTIFYs written by hand in a subscription's dialog over a
// socket of its own, UDP or TCP, and collects the responses by CSeq: a
// notifier that puts any body, any size, in any order on the wire.
type rawPeer struct {
	tb      testing.TB
	network string
	conn    net.Conn
	sub     *fakeSub
	from    string // the notifier's address, for Contact

	mu    sync.Mutex
	got   map[uint32]int
	wake  chan struct{}
	close sync.Once
}

func newRawPeer(tb testing.TB, network string, n *fakeNotifier, sub *fakeSub) *rawPeer {
	tb.Helper()
	addr := net.JoinHostPort(sub.contact.Host, strconv.Itoa(sub.contact.Port))
	conn, err := net.Dial(network, addr)
	if err != nil {
		tb.Fatal(err)
	}
	p := &rawPeer{tb: tb, network: network, conn: conn, sub: sub, from: n.addr, got: map[uint32]int{}, wake: make(chan struct{}, 1)}
	tb.Cleanup(func() { _ = conn.Close() })
	go p.read()
	return p
}

// read collects responses until the socket closes.
func (p *rawPeer) read() {
	var r *bufio.Reader
	buf := make([]byte, 65535)
	if p.network == "tcp" {
		r = bufio.NewReader(p.conn)
	}
	for {
		if p.network != "tcp" {
			n, err := p.conn.Read(buf)
			if err != nil {
				return
			}
			r = bufio.NewReader(bytes.NewReader(buf[:n]))
		}
		tp := textproto.NewReader(r)
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		h, err := tp.ReadMIMEHeader()
		if err != nil && len(h) == 0 {
			return
		}
		if n, _ := strconv.Atoi(h.Get("Content-Length")); n > 0 {
			if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
				return
			}
		}
		parts := strings.SplitN(line, " ", 3)
		code, _ := strconv.Atoi(parts[min(1, len(parts)-1)])
		seq, _, _ := strings.Cut(h.Get("CSeq"), " ")
		cseq, _ := strconv.Atoi(seq)
		p.mu.Lock()
		p.got[uint32(cseq)] = code
		p.mu.Unlock()
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// message returns a NOTIFY numbered cseq with body, whose Content-Length
// says length (the body's own when negative).
func (p *rawPeer) message(cseq uint32, body string, length int) []byte {
	if length < 0 {
		length = len(body)
	}
	local := p.conn.LocalAddr().String()
	var b strings.Builder
	fmt.Fprintf(&b, "NOTIFY %s SIP/2.0\r\n", p.sub.contact.String())
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=z9hG4bK-raw-%d-%d;rport\r\n", strings.ToUpper(p.network), local, cseq, rand.Uint32())
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:%s@pbx.test>;tag=%s\r\n", p.sub.ext, p.sub.ourTag)
	fmt.Fprintf(&b, "To: <sip:callstate@pbx.test>;tag=%s\r\n", p.sub.theirTag)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", p.sub.callID)
	fmt.Fprintf(&b, "CSeq: %d NOTIFY\r\n", cseq)
	fmt.Fprintf(&b, "Contact: <sip:%s>\r\n", p.from)
	b.WriteString("Event: dialog\r\nSubscription-State: active;expires=60\r\n")
	b.WriteString("Content-Type: application/dialog-info+xml\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", length, body)
	return []byte(b.String())
}

func (p *rawPeer) send(msg []byte) {
	p.tb.Helper()
	if _, err := p.conn.Write(msg); err != nil {
		p.tb.Fatalf("send NOTIFY: %v", err)
	}
}

// status waits up to timeout for the response to cseq; 0 if none came.
func (p *rawPeer) status(cseq uint32, timeout time.Duration) int {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		code := p.got[cseq]
		p.mu.Unlock()
		if code != 0 {
			return code
		}
		select {
		case <-p.wake:
		case <-deadline:
			return 0
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// bigDoc returns a full dialog-info document of about size bytes: one
// early dialog id and, to make up the size, an element of another
// namespace, which the parser skips.
func bigDoc(ext string, version int, id string, size int) string {
	doc := dialogDoc(ext, version, id, "early")
	pad := `<x:pad xmlns:x="urn:example:pad">` + strings.Repeat("0123456789", max(size-len(doc)-50, 0)/10) + `</x:pad>`
	return strings.Replace(doc, "</dialog-info>", pad+"</dialog-info>", 1)
}

// subscribed starts a subscriber for extension ext against a fake
// notifier on network and returns the notifier's side of the dialog.
func subscribed(t *testing.T, network, ext string, log *slog.Logger) (*fakeNotifier, *fakeSub, *store.Store) {
	t.Helper()
	n, sub, st, _ := subscribedWith(t, network, ext, log, nil, nil)
	return n, sub, st
}

// subscribedWith is subscribed with seed, when not nil, run on the store
// before the subscriber starts, and configure on the subscriber's Config.
func subscribedWith(t *testing.T, network, ext string, log *slog.Logger, seed func(*store.Store), configure func(*Config)) (*fakeNotifier, *fakeSub, *store.Store, *Subscriber) {
	t.Helper()
	n := startNotifierOn(t, network, nil, nil)
	st := testpbx.OpenStore(t)
	if seed != nil {
		seed(st)
	}
	if err := st.AddExtensions(t.Context(), []string{ext}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{PBXAddr: n.addr, Transport: network, Domain: "pbx.test", Store: st, Expires: time.Minute, Logger: log}
	if configure != nil {
		configure(&cfg)
	}
	s := startSubscriber(t, cfg)
	var sub *fakeSub
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if sub = n.sub(ext); sub == nil || s.Stats().Active != 1 {
			return "no subscription up for " + ext
		}
		return ""
	})
	return n, sub, st, s
}

// TestBigNotify sends NOTIFYs of 60 KB over UDP and TCP: both are answered
// 200 and their dialog recorded. Over TCP, a 300 KB one (a busy extension's
// full document, too big for a datagram) is answered 200 too, one over
// sip.MaxDialogBodySize is answered 413, and the connection stays usable.
func TestBigNotify(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(strings.ToUpper(network), func(t *testing.T) {
			t.Parallel()
			sink := &logSink{}
			n, sub, st := subscribed(t, network, "130", slog.New(sink))
			p := newRawPeer(t, network, n, sub)
			cseq := n.nextCSeq(sub)
			body := bigDoc("130", 1, "big1", 60_000)
			if len(body) < 59_000 || len(body) > 64<<10 {
				t.Fatalf("body of %d bytes", len(body))
			}
			p.send(p.message(cseq, body, -1))
			if code := p.status(cseq, 5*time.Second); code != 200 {
				t.Fatalf("60 KB NOTIFY over %s answered %d, want 200", network, code)
			}
			if c, err := st.Call(t.Context(), callstate.SourceSIP, "130/big1~"+callHash("big1@pbx")); err != nil || c.State != callstate.StateRinging {
				t.Errorf("call of the 60 KB NOTIFY: %+v, %v; want ringing", c, err)
			}
			// Over UDP, a document this close to a datagram's limit is
			// worth a warning that says to use TCP.
			if warned := len(sink.matching("SIP_TRANSPORT=tcp")) > 0; warned != (network == "udp") {
				t.Errorf("over %s: warned to use TCP %v, want %v", network, warned, network == "udp")
			}
			if network == "tcp" {
				large := bigDoc("130", 2, "big1", 300_000)
				p.send(p.message(cseq+1, large, -1))
				if code := p.status(cseq+1, 5*time.Second); code != 200 {
					t.Fatalf("300 KB NOTIFY over TCP answered %d, want 200", code)
				}
				huge := bigDoc("130", 3, "big2", sip.MaxDialogBodySize+10_000)
				p.send(p.message(cseq+2, huge, -1))
				if code := p.status(cseq+2, 5*time.Second); code != statusTooLarge {
					t.Fatalf("%d KB NOTIFY over TCP answered %d, want %d", len(huge)>>10, code, statusTooLarge)
				}
				p.send(p.message(cseq+3, dialogDoc("130", 4, "big1", "confirmed"), -1))
				if code := p.status(cseq+3, 5*time.Second); code != 200 {
					t.Fatalf("NOTIFY after the 413 answered %d, want 200", code)
				}
			}
		})
	}
}

// logSink keeps the records a logger writes, for tests of what is logged.
type logSink struct {
	mu      sync.Mutex
	records []string
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	l.mu.Lock()
	l.records = append(l.records, b.String())
	l.mu.Unlock()
	return nil
}
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }

func (l *logSink) matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if strings.Contains(r, s) {
			out = append(out, r)
		}
	}
	return out
}

// TestCutNotifyOverUDP sends datagrams that do not parse, NOTIFYs whose
// Content-Length promises more than the datagram holds: each is dropped,
// and the log gets one short line for all of them, not a copy of each.
func TestCutNotifyOverUDP(t *testing.T) {
	t.Parallel()
	sink := &logSink{}
	n, sub, _ := subscribed(t, "udp", "131", slog.New(sink))
	p := newRawPeer(t, "udp", n, sub)
	cseq := n.nextCSeq(sub)
	body := bigDoc("131", 1, "cut", 40_000)
	for i := range uint32(5) {
		p.send(p.message(cseq+i, body, len(body)+30_000))
	}
	// A good one after them is answered: nothing is stuck.
	p.send(p.message(cseq, dialogDoc("131", 1, "ok", "early"), -1))
	if code := p.status(cseq, 5*time.Second); code != 200 {
		t.Fatalf("NOTIFY after the cut ones answered %d, want 200", code)
	}
	lines := sink.matching("does not parse")
	if len(lines) != 1 {
		t.Fatalf("%d log lines about the cut datagrams, want 1: %q", len(lines), lines)
	}
	if len(lines[0]) > 500 || !strings.Contains(lines[0], "bytes=") {
		t.Errorf("log line of %d bytes: %.300q", len(lines[0]), lines[0])
	}
	for _, r := range sink.matching("") {
		if len(r) > 2000 {
			t.Errorf("a log line of %d bytes: %.200q", len(r), r)
		}
	}
}

// TestNotifyBurstOutOfOrder hands the subscriber 30 NOTIFYs of 10 calls,
// each ringing, answered and hung up, in a shuffled order within about
// 80 ms, and two of the answers only 300 ms later, when the documents
// after them have long been applied. Every call must be recorded answered
// and ended, with the PBX's cause, and the lamp end idle.
func TestNotifyBurstOutOfOrder(t *testing.T) {
	t.Parallel()
	n, sub, st := subscribed(t, "udp", "132", nil)
	p := newRawPeer(t, "udp", n, sub)
	first := n.nextCSeq(sub)
	type notify struct {
		cseq uint32
		body string
	}
	var all []notify
	for i := range 10 {
		id := fmt.Sprintf("b%d", i)
		for j, state := range []string{"early", "confirmed", "terminated"} {
			v := 1 + 3*i + j
			doc := dialogDoc("132", v, id, state)
			if state == "terminated" {
				doc = strings.Replace(doc, "<state>terminated</state>", `<state event="remote-bye">terminated</state>`, 1)
			}
			all = append(all, notify{cseq: first + uint32(v-1), body: doc})
		}
	}
	late := map[uint32]bool{all[4].cseq: true, all[22].cseq: true} // answers of calls 1 and 7
	order := rand.Perm(len(all))
	start := time.Now()
	for k, i := range order {
		if late[all[i].cseq] {
			continue
		}
		p.send(p.message(all[i].cseq, all[i].body, -1))
		time.Sleep(time.Until(start.Add(time.Duration(k+1) * 80 * time.Millisecond / time.Duration(len(all)))))
	}
	time.Sleep(300 * time.Millisecond)
	for c := range late {
		p.send(p.message(c, all[c-first].body, -1))
	}
	for _, nt := range all {
		if code := p.status(nt.cseq, 10*time.Second); code != 200 {
			t.Fatalf("NOTIFY %d answered %d, want 200", nt.cseq, code)
		}
	}
	for i := range 10 {
		key := fmt.Sprintf("132/b%d~%s", i, callHash(fmt.Sprintf("b%d@pbx", i)))
		c, err := st.Call(t.Context(), callstate.SourceSIP, key)
		if err != nil || c.State != callstate.StateEnded || c.AnsweredAt.IsZero() || c.Cause != "remote-bye" ||
			c.AnsweredAt.Before(c.StartedAt) || c.EndedAt.Before(c.AnsweredAt) {
			t.Errorf("call %d: %+v, %v; want answered, then ended by remote-bye", i, c, err)
		}
	}
	testpbx.WaitFor(t, 5*time.Second, func() string {
		if l := lampOf(t, st, "132"); l.Lamp != callstate.LampIdle {
			return fmt.Sprintf("lamp %+v, want idle", l)
		}
		return ""
	})
}

// callDoc returns a full dialog-info document with one dialog of the given
// id and call-id, in state, ended by event when it is terminated.
func callDoc(ext string, version int, id, callID, state, event string) string {
	doc := strings.Replace(dialogDoc(ext, version, id, state), `call-id="`+id+`@pbx"`, `call-id="`+callID+`"`, 1)
	if event != "" {
		doc = strings.Replace(doc, "<state>", `<state event="`+event+`">`, 1)
	}
	return doc
}

// TestReusedDialogID gives a dialog id to a second call after the first
// ended: the second call gets a row of its own, and a full document that
// ends it later leaves the first call's cause and end as they were.
func TestReusedDialogID(t *testing.T) {
	t.Parallel()
	n, sub, st := subscribed(t, "udp", "140", nil)
	p := newRawPeer(t, "udp", n, sub)
	cseq := n.nextCSeq(sub)
	for i, doc := range []string{
		callDoc("140", 1, "d1", "first@pbx", "confirmed", ""),
		callDoc("140", 2, "d1", "first@pbx", "terminated", "remote-bye"),
		callDoc("140", 3, "d1", "second@pbx", "early", ""),
		dialogDoc("140", 4, "", ""),
	} {
		c := cseq + uint32(i)
		p.send(p.message(c, doc, -1))
		if code := p.status(c, 5*time.Second); code != 200 {
			t.Fatalf("NOTIFY %d answered %d", i, code)
		}
	}
	calls := sipCalls(t, st, "140")
	if len(calls) != 2 {
		t.Fatalf("calls %+v, want two", calls)
	}
	first, second := calls[0], calls[1]
	if first.CallID != "first@pbx" || first.Cause != "remote-bye" || first.AnsweredAt.IsZero() || !first.EndedAt.Before(second.StartedAt) {
		t.Errorf("first call %+v, want answered and ended by remote-bye before the second began", first)
	}
	if second.CallID != "second@pbx" || second.State != callstate.StateEnded || second.Cause != callstate.CauseVanished || !second.AnsweredAt.IsZero() {
		t.Errorf("second call %+v, want a ringing call ended as vanished", second)
	}
	j, err := st.Journal(t.Context(), callstate.SourceSIP, second.Key)
	if err != nil || len(j) != 2 || j[1].Type != "dialog-"+callstate.CauseVanished {
		t.Errorf("second call's journal %+v, %v; want its ringing and an end of type dialog-%s", j, err, callstate.CauseVanished)
	}
}

// TestEmptyFirstNotify checks that an empty body on the first NOTIFY of a
// subscription is the PBX's full state with no dialogs: a call left active
// in the table ends (what Kamailio sends after a restart), while an empty
// body later in the subscription changes nothing.
func TestEmptyFirstNotify(t *testing.T) {
	t.Parallel()
	// The call was left active before the subscriber started: it reads
	// the extension's active calls before it subscribes.
	stale := "141/old~" + callHash("old@pbx")
	n, sub, st, _ := subscribedWith(t, "udp", "141", nil, func(st *store.Store) {
		if _, err := st.Apply(t.Context(), callstate.Event{Source: callstate.SourceSIP, Type: eventDialog, DedupKey: "seed-141",
			ReceivedAt: time.Now().Add(-time.Minute), Payload: []byte("seed"),
			Update: callstate.Update{Key: stale, CallID: "old@pbx", Extension: "141", State: callstate.StateAnswered}}); err != nil {
			t.Fatal(err)
		}
	}, nil)
	p := newRawPeer(t, "udp", n, sub)
	cseq := n.nextCSeq(sub)
	for i, body := range []string{"", dialogDoc("141", 1, "d2", "early"), ""} {
		c := cseq + uint32(i)
		p.send(p.message(c, body, -1))
		if code := p.status(c, 5*time.Second); code != 200 {
			t.Fatalf("NOTIFY %d answered %d", i, code)
		}
	}
	c, err := st.Call(t.Context(), callstate.SourceSIP, stale)
	if err != nil || c.State != callstate.StateEnded || c.Cause != callstate.CauseVanished {
		t.Errorf("stale call %+v, %v; want ended as vanished by the empty first NOTIFY", c, err)
	}
	c, err = st.Call(t.Context(), callstate.SourceSIP, "141/d2~"+callHash("d2@pbx"))
	if err != nil || c.State != callstate.StateRinging {
		t.Errorf("call d2 %+v, %v; want still ringing after a later empty NOTIFY", c, err)
	}
	// The subscription's state is written within the state writer's flush.
	testpbx.WaitFor(t, 5*time.Second, func() string {
		if l := lampOf(t, st, "141"); l.Lamp != callstate.LampRinging {
			return fmt.Sprintf("lamp %+v, want ringing", l)
		}
		return ""
	})
}

// TestNewRemoteTagResubscribesAll sends a NOTIFY in one subscription's
// dialog but from another remote tag, as a PBX that restarted with its
// subscriptions kept but its dialogs new would: it is answered 481, and
// every extension of the PBX is subscribed again, not only that one.
func TestNewRemoteTagResubscribesAll(t *testing.T) {
	t.Parallel()
	n := startNotifier(t, nil)
	st := testpbx.OpenStore(t)
	exts := []string{"150", "151"}
	if err := st.AddExtensions(t.Context(), exts); err != nil {
		t.Fatal(err)
	}
	s := startSubscriber(t, Config{PBXAddr: n.addr, Domain: "pbx.test", Store: st, Expires: time.Minute})
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if s.Stats().Active != 2 {
			return "subscriptions not up"
		}
		return ""
	})
	before := map[string]string{}
	for _, ext := range exts {
		before[ext] = n.sub(ext).callID
	}
	sub := n.sub("150")
	other := *sub
	other.ourTag = "restarted"
	p := newRawPeer(t, "udp", n, &other)
	cseq := n.nextCSeq(sub)
	p.send(p.message(cseq, dialogDoc("150", 1, "", ""), -1))
	if code := p.status(cseq, 5*time.Second); code != 481 {
		t.Fatalf("NOTIFY from a new remote tag answered %d, want 481", code)
	}
	for _, ext := range exts {
		testpbx.WaitFor(t, 10*time.Second, func() string {
			if got := n.sub(ext).callID; got == before[ext] {
				return fmt.Sprintf("extension %s: still subscription %s, want a new one", ext, got)
			}
			if l := lampOf(t, st, ext); l.Subscription != callstate.SubscriptionActive {
				return fmt.Sprintf("extension %s: lamp %+v, want active again", ext, l)
			}
			return ""
		})
	}
}

// TestKeepaliveWithoutOptions runs the keepalive against a PBX that drops
// OPTIONS, as some do: it is never taken for unreachable, the subscription
// stays up, and each round still refreshes it.
func TestKeepaliveWithoutOptions(t *testing.T) {
	t.Parallel()
	n := startNotifierOn(t, "udp", nil, func(srv *sipgo.Server) {
		srv.OnOptions(func(*sipmsg.Request, sipmsg.ServerTransaction) {})
	})
	st := testpbx.OpenStore(t)
	if err := st.AddExtensions(t.Context(), []string{"160"}); err != nil {
		t.Fatal(err)
	}
	startSubscriber(t, Config{PBXAddr: n.addr, Domain: "pbx.test", Store: st, Expires: time.Minute, Keepalive: 200 * time.Millisecond})
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if l := lampOf(t, st, "160"); l.Subscription != callstate.SubscriptionActive {
			return fmt.Sprintf("lamp %+v, want active", l)
		}
		return ""
	})
	callID, before := n.sub("160").callID, n.subscribes("160")
	time.Sleep(3 * time.Second)
	if l := lampOf(t, st, "160"); l.Subscription != callstate.SubscriptionActive || l.Lamp != callstate.LampIdle {
		t.Errorf("lamp %+v, want idle and active", l)
	}
	if got := n.sub("160").callID; got != callID {
		t.Errorf("subscribed again (%s, was %s); want the one subscription kept", got, callID)
	}
	if got := n.subscribes("160"); got < before+2 {
		t.Errorf("%d SUBSCRIBEs in 3s after %d, want refreshes by the keepalive", got, before)
	}
}

// TestRepeatedNotify sends a NOTIFY twice, byte for byte, as a PBX does
// when our 200 was lost: the subscriber no longer holds the transaction
// after answering, so the repeat reaches the subscription, which answers
// it 200 again without applying it again (as a NOTIFY that came late,
// which would ask the PBX for full state).
func TestRepeatedNotify(t *testing.T) {
	t.Parallel()
	sink := &logSink{}
	n, sub, st := subscribed(t, "udp", "142", slog.New(sink))
	p := newRawPeer(t, "udp", n, sub)
	cseq := n.nextCSeq(sub)
	msg := p.message(cseq, dialogDoc("142", 1, "r1", "early"), -1)
	p.send(msg)
	if code := p.status(cseq, 5*time.Second); code != 200 {
		t.Fatalf("NOTIFY answered %d, want 200", code)
	}
	for range 2 {
		p.mu.Lock()
		delete(p.got, cseq)
		p.mu.Unlock()
		p.send(msg)
		if code := p.status(cseq, 5*time.Second); code != 200 {
			t.Fatalf("repeated NOTIFY answered %d, want 200", code)
		}
	}
	if lines := sink.matching("came after later ones"); len(lines) != 0 {
		t.Errorf("the repeat was applied as a late NOTIFY: %q", lines)
	}
	if j, err := st.Journal(t.Context(), callstate.SourceSIP, "142/r1~"+callHash("r1@pbx")); err != nil || len(j) != 1 {
		t.Errorf("journal %+v, %v; want the ringing once", j, err)
	}
}
