package watch

import (
	"bytes"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// sockWatch sits on the subscriber's socket and times every NOTIFY from the
// datagram (or the end of its bytes on a stream) that brought it to the
// answer written for it: the answer latency as the PBX sees it, less the
// wire. It counts retransmissions (the same Call-ID and CSeq again) and can
// drop everything that arrives for a while, as a lossy network would.
type sockWatch struct {
	dropUntil atomic.Int64 // unix nanoseconds; datagrams arriving before are dropped

	mu        sync.Mutex
	arrived   map[string]time.Time // by Call-ID and CSeq, first arrival
	answered  map[string]bool
	latencies []time.Duration
	notifies  int // NOTIFY datagrams, retransmissions included
	retrans   int
	dropped   int
	codes     map[int]int // final answers to NOTIFYs by status
	largest   []byte      // the largest NOTIFY, as it arrived
}

func newSockWatch() *sockWatch {
	return &sockWatch{arrived: make(map[string]time.Time), answered: make(map[string]bool), codes: make(map[int]int)}
}

// drop makes the socket drop what arrives for d from now.
func (w *sockWatch) drop(d time.Duration) { w.dropUntil.Store(time.Now().Add(d).UnixNano()) }

func (w *sockWatch) dropping(now time.Time) bool { return now.UnixNano() < w.dropUntil.Load() }

// in records a message that arrived at now.
func (w *sockWatch) in(msg []byte, now time.Time) {
	if !bytes.HasPrefix(msg, []byte("NOTIFY ")) {
		return
	}
	key := msgKey(msg)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.notifies++
	if len(msg) > len(w.largest) {
		w.largest = bytes.Clone(msg)
	}
	if _, ok := w.arrived[key]; ok {
		w.retrans++
		return
	}
	w.arrived[key] = now
}

// out records a message written at now.
func (w *sockWatch) out(msg []byte, now time.Time) {
	if !bytes.HasPrefix(msg, []byte("SIP/2.0 ")) || !bytes.Contains(msg, []byte(" NOTIFY\r\n")) {
		return
	}
	code, _ := strconv.Atoi(string(msg[8:min(11, len(msg))]))
	key := msgKey(msg)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.answered[key] {
		return
	}
	at, ok := w.arrived[key]
	if !ok {
		return
	}
	w.answered[key] = true
	w.codes[code]++
	w.latencies = append(w.latencies, now.Sub(at))
}

// sockStats is what a sockWatch saw.
type sockStats struct {
	Notifies, Distinct, Answered, Retrans, Dropped int
	Largest                                        int // bytes of the largest NOTIFY
	P50, P99, Max                                  time.Duration
	Codes                                          map[int]int
}

func (w *sockWatch) stats() sockStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := slices.Clone(w.latencies)
	slices.Sort(l)
	st := sockStats{Notifies: w.notifies, Distinct: len(w.arrived), Answered: len(l), Retrans: w.retrans, Dropped: w.dropped, Largest: len(w.largest), Codes: make(map[int]int)}
	for c, n := range w.codes {
		st.Codes[c] = n
	}
	if len(l) > 0 {
		st.P50, st.P99, st.Max = l[len(l)/2], l[min(len(l)-1, len(l)*99/100)], l[len(l)-1]
	}
	return st
}

// msgKey is a message's Call-ID and CSeq number.
func msgKey(msg []byte) string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	var callID, cseq []byte
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Call-ID")) || bytes.EqualFold(name, []byte("i")):
			callID = value
		case bytes.EqualFold(name, []byte("CSeq")):
			cseq, _, _ = bytes.Cut(value, []byte(" "))
		}
	}
	return string(callID) + " " + string(cseq)
}

// packetConn is a net.PacketConn whose traffic a sockWatch sees.
type packetConn struct {
	net.PacketConn
	w *sockWatch
}

func (c *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(b)
		if err != nil {
			return n, addr, err
		}
		now := time.Now()
		if c.w.dropping(now) {
			c.w.mu.Lock()
			c.w.dropped++
			c.w.mu.Unlock()
			continue
		}
		c.w.in(b[:n], now)
		return n, addr, err
	}
}

func (c *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.PacketConn.WriteTo(b, addr)
	if err == nil {
		c.w.out(b[:n], time.Now())
	}
	return n, err
}

// listener is a net.Listener whose connections a sockWatch sees.
type listener struct {
	net.Listener
	w *sockWatch
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	return &streamConn{Conn: c, w: l.w}, nil
}

// streamConn frames the SIP messages of a stream (by Content-Length) so
// that each is timed when its last byte arrives.
type streamConn struct {
	net.Conn
	w   *sockWatch
	buf []byte
}

func (c *streamConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		now := time.Now()
		c.buf = append(c.buf, b[:n]...)
		for {
			c.buf = bytes.TrimLeft(c.buf, "\r\n")
			end := bytes.Index(c.buf, []byte("\r\n\r\n"))
			if end < 0 {
				break
			}
			size := end + 4 + contentLength(c.buf[:end])
			if len(c.buf) < size {
				break
			}
			c.w.in(c.buf[:size], now)
			c.buf = c.buf[size:]
		}
	}
	return n, err
}

func (c *streamConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil {
		c.w.out(b[:n], time.Now())
	}
	return n, err
}

func contentLength(head []byte) int {
	for _, line := range bytes.Split(head, []byte("\r\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && (bytes.EqualFold(bytes.TrimSpace(name), []byte("Content-Length")) || bytes.EqualFold(bytes.TrimSpace(name), []byte("l"))) {
			n, _ := strconv.Atoi(string(bytes.TrimSpace(value)))
			return n
		}
	}
	return 0
}
