package presence

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate/sip"
)

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
	seen    map[uint32]string // the NOTIFYs next returned, as sent, by CSeq
	last    uint32            // the CSeq of the last of them
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

// next returns the next NOTIFY of s, each once. Over UDP the agent sends
// a NOTIFY again when the phone's 200 has not reached it within T1
// (500 ms), as it may not on a loaded machine: the copy has the CSeq of a
// NOTIFY returned already and is no new NOTIFY. A NOTIFY that repeats a
// CSeq but differs, or goes back to an earlier one, is an error.
func (s *sub) next() *sipmsg.Request {
	tb := s.p.tb
	tb.Helper()
	for {
		select {
		case n := <-s.p.notifies:
			if string(*n.CallID()) != s.callID {
				continue
			}
			seq, msg := n.CSeq().SeqNo, n.String()
			if first, ok := s.seen[seq]; ok {
				if first != msg {
					tb.Errorf("two NOTIFYs with CSeq %d:\n%s\nand\n%s", seq, first, msg)
				}
				continue
			}
			if s.seen == nil {
				s.seen = map[uint32]string{}
			} else if seq < s.last {
				tb.Errorf("NOTIFY with CSeq %d after one with %d", seq, s.last)
			}
			s.seen[seq], s.last = msg, seq
			return n
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
