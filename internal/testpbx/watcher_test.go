package testpbx

import (
	"bytes"
	"cmp"
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// watcher is a minimal dialog-event subscriber built with sipgo: it
// SUBSCRIBEs to extensions and answers every NOTIFY with 200, keeping the
// parsed requests and the raw datagrams.
type watcher struct {
	tb   testing.TB
	ua   *sipgo.UserAgent
	cli  *sipgo.Client
	conn *recordingConn
	port int

	mu       sync.Mutex
	notifies []*sipmsg.Request
	changed  chan struct{}
}

func newWatcher(tb testing.TB) *watcher {
	tb.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("testpbx-watcher"), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		tb.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	w := &watcher{
		tb:      tb,
		ua:      ua,
		conn:    &recordingConn{PacketConn: pc},
		port:    pc.LocalAddr().(*net.UDPAddr).Port,
		changed: make(chan struct{}, 1),
	}
	// Requests go out from the listening socket, like a phone's: Via,
	// Contact and source address are the same.
	w.cli, err = sipgo.NewClient(ua,
		sipgo.WithClientHostname("127.0.0.1"),
		sipgo.WithClientConnectionAddr(pc.LocalAddr().String()),
	)
	if err != nil {
		tb.Fatal(err)
	}
	srv.OnNotify(w.onNotify)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.ServeUDP(w.conn)
	}()
	// ServeUDP registers the socket asynchronously; until then the client
	// would try to bind a second socket to the same address.
	for deadline := time.Now().Add(2 * time.Second); ; {
		if _, err := ua.TransportLayer().GetConnection("udp", pc.LocalAddr().String()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatal("watcher: sipgo did not register the listening socket")
		}
		time.Sleep(time.Millisecond)
	}
	tb.Cleanup(func() {
		_ = ua.Close()
		_ = pc.Close()
		<-served
	})
	return w
}

func (w *watcher) onNotify(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if err := tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusOK, "OK", nil)); err != nil {
		w.tb.Logf("watcher: respond to NOTIFY: %v", err)
	}
	w.mu.Lock()
	w.notifies = append(w.notifies, req)
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// subscribe sends SUBSCRIBE (Event: dialog) for ext to Kamailio and fails
// the test unless it gets a 2xx.
func (w *watcher) subscribe(k *Kamailio, ext string) {
	w.tb.Helper()
	var uri sipmsg.Uri
	if err := sipmsg.ParseUri(k.URI(ext), &uri); err != nil {
		w.tb.Fatal(err)
	}
	req := sipmsg.NewRequest(sipmsg.SUBSCRIBE, uri)
	req.SetDestination(k.Addr())
	req.AppendHeader(&sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "watcher", Host: "127.0.0.1", Port: w.port}})
	req.AppendHeader(sipmsg.NewHeader("Event", "dialog"))
	req.AppendHeader(sipmsg.NewHeader("Accept", "application/dialog-info+xml"))
	req.AppendHeader(sipmsg.NewHeader("Expires", "120"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := w.cli.Do(ctx, req)
	if err != nil {
		w.tb.Fatalf("SUBSCRIBE %s: %v", ext, err)
	}
	if res.StatusCode/100 != 2 {
		w.tb.Fatalf("SUBSCRIBE %s: got %d %s", ext, res.StatusCode, res.Reason)
	}
}

// notifiesFor returns the NOTIFYs received so far for the subscription to
// ext, in CSeq order (sipgo may hand them over out of order), with their
// bodies parsed.
func (w *watcher) notifiesFor(ext string) []notify {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []notify
	for _, req := range w.notifies {
		n := notify{req: req}
		if from := req.From(); from == nil || from.Address.User != ext {
			continue
		}
		if body := req.Body(); len(bytes.TrimSpace(body)) > 0 {
			var di dialogInfo
			if err := xml.Unmarshal(body, &di); err != nil {
				n.err = err
			} else {
				n.info = &di
			}
		}
		out = append(out, n)
	}
	slices.SortStableFunc(out, func(a, b notify) int {
		return cmp.Compare(a.req.CSeq().SeqNo, b.req.CSeq().SeqNo)
	})
	return out
}

// waitStates waits until the dialog states seen for ext contain want in
// order, or fails the test after timeout.
func (w *watcher) waitStates(ext string, want []string, timeout time.Duration) []notify {
	w.tb.Helper()
	deadline := time.After(timeout)
	for {
		ns := w.notifiesFor(ext)
		got := dialogStates(ns)
		if containsInOrder(got, want) {
			return ns
		}
		select {
		case <-w.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			w.tb.Fatalf("extension %s: dialog states %v, want %v in this order; NOTIFYs:\n%s", ext, got, want, describe(ns))
		}
	}
}

// notify is one NOTIFY received by the watcher.
type notify struct {
	req  *sipmsg.Request
	info *dialogInfo // nil if the body was empty
	err  error       // body did not parse
}

// dialogInfo is the part of an RFC 4235 document the test looks at.
type dialogInfo struct {
	XMLName xml.Name `xml:"urn:ietf:params:xml:ns:dialog-info dialog-info"`
	Version int      `xml:"version,attr"`
	State   string   `xml:"state,attr"`
	Entity  string   `xml:"entity,attr"`
	Dialogs []struct {
		ID        string `xml:"id,attr"`
		CallID    string `xml:"call-id,attr"`
		Direction string `xml:"direction,attr"`
		State     string `xml:"state"`
	} `xml:"dialog"`
}

// dialogStates lists the states of the dialogs in ns, dropping repeats.
// The states before an answer (trying, proceeding, early) count as one,
// early: Kamailio 5.6 sometimes reports the caller's side as "Trying" until
// the call is answered, skipping early.
func dialogStates(ns []notify) []string {
	var states []string
	for _, n := range ns {
		if n.info == nil {
			continue
		}
		for _, d := range n.info.Dialogs {
			st := strings.ToLower(d.State)
			if st == "trying" || st == "proceeding" {
				st = "early"
			}
			if len(states) == 0 || states[len(states)-1] != st {
				states = append(states, st)
			}
		}
	}
	return states
}

func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func describe(ns []notify) string {
	var b strings.Builder
	for i, n := range ns {
		fmt.Fprintf(&b, "--- NOTIFY %d (Subscription-State: %s) ---\n%s\n", i, header(n.req, "Subscription-State"), n.req.Body())
	}
	return b.String()
}

func header(req *sipmsg.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// recordingConn keeps a copy of every datagram read, so tests can save the
// NOTIFYs exactly as Kamailio sent them.
type recordingConn struct {
	net.PacketConn
	mu  sync.Mutex
	raw [][]byte
}

func (c *recordingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if n > 0 {
		c.mu.Lock()
		c.raw = append(c.raw, bytes.Clone(b[:n]))
		c.mu.Unlock()
	}
	return n, addr, err
}

// rawNotifies returns the distinct NOTIFY datagrams received (retransmissions
// dropped) for ext's subscription, in CSeq order.
func (c *recordingConn) rawNotifies(ext string) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out [][]byte
	seen := map[string]bool{}
	for _, m := range c.raw {
		if !bytes.HasPrefix(m, []byte("NOTIFY ")) || seen[string(m)] {
			continue
		}
		seen[string(m)] = true
		if from := rawHeader(m, "from", "f"); strings.Contains(from, "sip:"+ext+"@") {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b []byte) int {
		return cmp.Compare(rawCSeq(a), rawCSeq(b))
	})
	return out
}

// rawHeader returns the value of the first header of m with one of names
// (lower case, long or compact form).
func rawHeader(m []byte, names ...string) string {
	head, _ := splitMessage(m)
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		name, value, ok := strings.Cut(line, ":")
		if ok && slices.Contains(names, strings.ToLower(strings.TrimSpace(name))) {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

func rawCSeq(m []byte) int {
	num, _, _ := strings.Cut(rawHeader(m, "cseq"), " ")
	n, _ := strconv.Atoi(num)
	return n
}

// splitMessage returns the head (start line and headers) and body of a raw
// SIP message.
func splitMessage(m []byte) (head, body []byte) {
	head, body, _ = bytes.Cut(m, []byte("\r\n\r\n"))
	return head, body
}

// newSubscribe builds an initial SUBSCRIBE (Event: dialog) for ext@domain,
// to be sent to addr.
func (w *watcher) newSubscribe(domain, ext, addr string, expires int) *sipmsg.Request {
	req := sipmsg.NewRequest(sipmsg.SUBSCRIBE, sipmsg.Uri{Scheme: "sip", User: ext, Host: domain})
	req.SetDestination(addr)
	w.addSubscribeHeaders(req, expires)
	return req
}

func (w *watcher) addSubscribeHeaders(req *sipmsg.Request, expires int) {
	req.AppendHeader(&sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", User: "watcher", Host: "127.0.0.1", Port: w.port}})
	req.AppendHeader(sipmsg.NewHeader("Event", "dialog"))
	req.AppendHeader(sipmsg.NewHeader("Accept", "application/dialog-info+xml"))
	req.AppendHeader(sipmsg.NewHeader("Expires", strconv.Itoa(expires)))
}

// do sends req and returns the final response, failing the test on a
// transport or transaction error.
func (w *watcher) do(req *sipmsg.Request) *sipmsg.Response {
	w.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := w.cli.Do(ctx, req)
	if err != nil {
		w.tb.Fatalf("%s %s: %v", req.Method, req.Recipient.String(), err)
	}
	return res
}

// waitCallID waits until n NOTIFYs of the subscription with callID have
// arrived and returns them in CSeq order, or fails the test after timeout.
func (w *watcher) waitCallID(callID string, n int, timeout time.Duration) []*sipmsg.Request {
	w.tb.Helper()
	deadline := time.After(timeout)
	for {
		var got []*sipmsg.Request
		w.mu.Lock()
		for _, req := range w.notifies {
			if id := req.CallID(); id != nil && id.Value() == callID {
				got = append(got, req)
			}
		}
		w.mu.Unlock()
		if len(got) >= n {
			// sipgo may hand NOTIFYs over out of order.
			slices.SortFunc(got, func(a, b *sipmsg.Request) int {
				return cmp.Compare(a.CSeq().SeqNo, b.CSeq().SeqNo)
			})
			return got
		}
		select {
		case <-w.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			w.tb.Fatalf("subscription %s: %d NOTIFYs, want %d", callID, len(got), n)
		}
	}
}
