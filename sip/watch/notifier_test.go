package watch

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// fakeNotifier is a PBX's notifier built with sipgo, for offline tests and
// the benchmark: it answers SUBSCRIBE as onSubscribe says and sends NOTIFYs
// on request.
type fakeNotifier struct {
	tb   testing.TB
	addr string
	cli  *sipgo.Client

	// onSubscribe returns the status for a SUBSCRIBE (0: 200) and the
	// expiry to grant; a 503 or 480 comes with Retry-After: 2.
	onSubscribe func(req *sipmsg.Request) (status int, expires int)

	mu     sync.Mutex
	subs   map[string]*fakeSub // by extension
	counts map[string]int      // SUBSCRIBEs by extension
	cseqs  map[string]uint32   // last NOTIFY CSeq by subscription Call-ID
	wake   chan struct{}
}

// fakeSub is the notifier's side of one subscription dialog.
type fakeSub struct {
	ext, callID, theirTag, ourTag string
	contact                       sipmsg.Uri
	expires                       int
}

func startNotifier(tb testing.TB, onSubscribe func(req *sipmsg.Request) (status int, expires int)) *fakeNotifier {
	tb.Helper()
	return startNotifierOn(tb, "udp", onSubscribe, nil)
}

// startNotifierOn is startNotifier listening on network, udp or tcp;
// setup, when not nil, adds handlers to the server before it serves.
func startNotifierOn(tb testing.TB, network string, onSubscribe func(req *sipmsg.Request) (status int, expires int), setup func(*sipgo.Server)) *fakeNotifier {
	tb.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("fakepbx"))
	if err != nil {
		tb.Fatal(err)
	}
	srv, _ := sipgo.NewServer(ua)
	n := &fakeNotifier{tb: tb, subs: map[string]*fakeSub{}, counts: map[string]int{}, cseqs: map[string]uint32{}, wake: make(chan struct{}, 1), onSubscribe: onSubscribe}
	srv.OnSubscribe(n.handle)
	if setup != nil {
		setup(srv)
	}
	if network == "tcp" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		n.addr = ln.Addr().String()
		n.cli, _ = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
		go func() { _ = srv.ServeTCP(ln) }()
		tb.Cleanup(func() { _ = ua.Close(); _ = ln.Close() })
		return n
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	n.addr = pc.LocalAddr().String()
	n.cli, _ = sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientConnectionAddr(n.addr))
	go func() { _ = srv.ServeUDP(pc) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := ua.TransportLayer().GetConnection("udp", n.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatal("notifier socket not registered")
		}
		time.Sleep(time.Millisecond)
	}
	tb.Cleanup(func() { _ = ua.Close(); _ = pc.Close() })
	return n
}

func (n *fakeNotifier) handle(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	status, expires := 0, 60
	if n.onSubscribe != nil {
		status, expires = n.onSubscribe(req)
	}
	if v := req.GetHeader("Expires"); v != nil && v.Value() == "0" {
		expires = 0
	}
	ext := req.To().Address.User
	n.mu.Lock()
	n.counts[ext]++
	sub := n.subs[ext]
	callID := req.CallID().Value()
	if status == 0 && (sub == nil || sub.callID != callID) {
		tag, _ := req.From().Params.Get("tag")
		sub = &fakeSub{ext: ext, callID: callID, theirTag: tag, ourTag: sipmsg.GenerateTagN(8), contact: req.Contact().Address}
		n.subs[ext] = sub
	}
	if sub != nil {
		sub.expires = expires
	}
	n.mu.Unlock()
	if status == 0 {
		status = 200
	}
	res := sipmsg.NewResponseFromRequest(req, status, "Fake", nil)
	if status == sipmsg.StatusServiceUnavailable || status == sipmsg.StatusTemporarilyUnavailable {
		res.AppendHeader(sipmsg.NewHeader("Retry-After", "2"))
	}
	if status == 200 {
		res.To().Params.Add("tag", sub.ourTag)
		res.AppendHeader(sipmsg.NewHeader("Expires", strconv.Itoa(expires)))
		res.AppendHeader(&sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", Host: "127.0.0.1", Port: atoi(portOf(n.addr))}})
	}
	_ = tx.Respond(res)
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func (n *fakeNotifier) sub(ext string) *fakeSub {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s := n.subs[ext]; s != nil {
		c := *s
		return &c
	}
	return nil
}

func (n *fakeNotifier) subscribes(ext string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.counts[ext]
}

// notify sends a NOTIFY in sub's dialog, with the dialog's next CSeq, and
// returns the status it got.
func (n *fakeNotifier) notify(ctx context.Context, sub *fakeSub, state, body string) (int, error) {
	n.mu.Lock()
	n.cseqs[sub.callID]++
	cseq := n.cseqs[sub.callID]
	n.mu.Unlock()
	return n.notifyAt(ctx, sub, cseq, state, body)
}

// nextCSeq returns the CSeq that notify would send next in sub's dialog.
func (n *fakeNotifier) nextCSeq(sub *fakeSub) uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cseqs[sub.callID] + 1
}

// notifyAt sends a NOTIFY in sub's dialog with CSeq cseq (later NOTIFYs
// go on from the highest sent) and returns the status it got.
func (n *fakeNotifier) notifyAt(ctx context.Context, sub *fakeSub, cseq uint32, state, body string) (int, error) {
	req := sipmsg.NewRequest(sipmsg.NOTIFY, sub.contact)
	n.mu.Lock()
	n.cseqs[sub.callID] = max(n.cseqs[sub.callID], cseq)
	n.mu.Unlock()
	from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: "sip", User: sub.ext, Host: "pbx.test"}, Params: sipmsg.NewParams()}
	from.Params.Add("tag", sub.ourTag)
	to := &sipmsg.ToHeader{Address: sipmsg.Uri{Scheme: "sip", User: "callstate", Host: "pbx.test"}, Params: sipmsg.NewParams()}
	to.Params.Add("tag", sub.theirTag)
	cid := sipmsg.CallIDHeader(sub.callID)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: cseq, MethodName: sipmsg.NOTIFY})
	req.AppendHeader(sipmsg.NewHeader("Event", "dialog"))
	req.AppendHeader(sipmsg.NewHeader("Subscription-State", state))
	if body != "" {
		ct := sipmsg.ContentTypeHeader("application/dialog-info+xml")
		req.AppendHeader(&ct)
		req.SetBody([]byte(body))
	}
	res, err := n.cli.Do(ctx, req)
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

// dialogDoc returns a full dialog-info document for ext with one dialog in
// state, or none when id is empty.
func dialogDoc(ext string, version int, id, state string) string {
	d := ""
	if id != "" {
		d = fmt.Sprintf(`<dialog id="%s" call-id="%s@pbx" direction="recipient"><state>%s</state>`+
			`<remote><identity>sip:200@pbx.test</identity></remote><local><identity>sip:%s@pbx.test</identity></local></dialog>`,
			id, id, state, ext)
	}
	return fmt.Sprintf(`<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="%d" state="full" entity="sip:%s@pbx.test">%s</dialog-info>`,
		version, ext, d)
}
