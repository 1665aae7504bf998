package sip

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// ErrConfig is matched by every error the watcher and the presence agent
// return for a bad configuration.
var ErrConfig = errors.New("sip: bad configuration")

var hostRE = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.:-]{1,253})$`)

// BadConfig returns a function that makes errors matching ErrConfig for
// role's configuration ("" or e.g. "presence agent").
func BadConfig(role string) func(format string, args ...any) error {
	if role != "" {
		role += ": "
	}
	return func(format string, args ...any) error {
		return fmt.Errorf("%w: %s%s", ErrConfig, role, fmt.Sprintf(format, args...))
	}
}

// Logger returns log, or slog.Default() when nil, with the component
// attribute set.
func Logger(log *slog.Logger, component string) *slog.Logger {
	if log == nil {
		log = slog.Default()
	}
	return log.With("component", component)
}

// ValidHost reports whether h is a host name or an IP address (IPv6 in
// brackets) fit for a SIP URI.
func ValidHost(h string) bool { return hostRE.MatchString(h) }

// ValidHostPort reports whether addr is host:port with a host ValidHost
// takes and a port from 1 to 65535.
func ValidHostPort(addr string) bool {
	h, p, err := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return err == nil && ValidHost(h) && n > 0 && n <= 65535
}

// ParseTransport reads a transport setting: "" or udp, tcp, tls in any
// case. It returns "UDP", "TCP" or "TLS", as sipgo names them, or false.
func ParseTransport(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "", "udp":
		return "UDP", true
	case "tcp":
		return "TCP", true
	case "tls":
		return "TLS", true
	}
	return "", false
}

// Clip shortens a value quoted in an error message or a log line, so that
// a hostile peer cannot make them large.
func Clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// EndpointConfig says where and how an Endpoint listens.
type EndpointConfig struct {
	Name      string // for messages and errors: "sip", "sip: presence agent"
	Transport string // UDP, TCP or TLS (see ParseTransport)
	Addr      string // host:port of the listening socket
	// WSAddr and WSSAddr, when set, are further listeners for SIP over
	// WebSocket (RFC 7118), plain and over TLS (TLSConfig).
	WSAddr, WSSAddr string
	// ContactAddr is the host:port put in Contact and Via; empty: the
	// socket's address, with the local IP that routes to Towards when
	// the socket listens on every interface.
	ContactAddr string
	Towards     string
	Hostname    string      // the UA's host name
	UserAgent   string      // User-Agent header
	TLSConfig   *tls.Config // the UA's, and the listener's for TLS and WSS
	Log         *slog.Logger
	// GrowUDPBuffer asks the kernel for a large UDP receive buffer (see
	// UDPReadBuffer) and warns, with GrowUDPHint, when it grants less.
	GrowUDPBuffer bool
	GrowUDPHint   string
	// Tests see the socket's traffic through these.
	WrapPacketConn func(net.PacketConn) net.PacketConn
	WrapListener   func(net.Listener) net.Listener
}

// Endpoint is a SIP user agent with its listening sockets: sipgo's UA and
// server built once, with callstate's parser limits and transport log.
// Serve runs it; Close closes the sockets and the UA.
type Endpoint struct {
	UA     *sipgo.UserAgent
	Server *sipgo.Server
	// Local is the listening socket's address; ContactHost and ContactPort
	// are what Contact and Via carry.
	Local       net.Addr
	ContactHost string
	ContactPort int
	// WSAddr and WSSAddr are the WebSocket listeners' addresses, empty for
	// none.
	WSAddr, WSSAddr string

	transport string
	serves    []func() error
	close     func() error
}

// Listen builds the UA and server and opens the sockets c names. It
// returns the socket's error when it cannot listen.
func Listen(c EndpointConfig) (*Endpoint, error) {
	log := c.Log
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(c.UserAgent), sipgo.WithUserAgentHostname(c.Hostname),
		sipgo.WithUserAgenTLSConfig(c.TLSConfig), sipgo.WithUserAgentParser(newParser()),
		sipgo.WithUserAgentTransportLayerOptions(sipmsg.WithTransportLayerLogger(newTransportLogger(log.Handler(), time.Minute))),
		// A response that finds its transaction ended (the answer to a
		// retransmission of ours, typically) is normal under load: debug,
		// not a line for each on the default logger.
		sipgo.WithUserAgentTransactionLayerOptions(sipmsg.WithTransactionLayerLogger(log),
			sipmsg.WithTransactionLayerUnhandledResponseHandler(func(r *sipmsg.Response) {
				log.Debug(c.Name+": response to no transaction; a retransmission's, most likely", "status", r.StatusCode, "call_id", CallIDOf(r))
			})))
	if err != nil {
		return nil, fmt.Errorf("%s: user agent: %w", c.Name, err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		_ = ua.Close()
		return nil, fmt.Errorf("%s: server: %w", c.Name, err)
	}
	e := &Endpoint{UA: ua, Server: srv, transport: c.Transport}
	closeAll := func() error { return nil }
	fail := func(err error) (*Endpoint, error) {
		_ = closeAll()
		_ = ua.Close()
		return nil, err
	}
	switch c.Transport {
	case "UDP":
		pc, err := net.ListenPacket("udp", c.Addr)
		if err != nil {
			return fail(fmt.Errorf("%s: listen udp %s: %w", c.Name, c.Addr, err))
		}
		e.Local, closeAll = pc.LocalAddr(), pc.Close
		if c.GrowUDPBuffer {
			growReadBuffer(pc, log, c.GrowUDPHint)
		}
		if c.WrapPacketConn != nil {
			pc = c.WrapPacketConn(pc)
		}
		e.serves = append(e.serves, func() error { return srv.ServeUDP(pc) })
	default:
		ln, err := net.Listen("tcp", c.Addr)
		if err != nil {
			return fail(fmt.Errorf("%s: listen tcp %s: %w", c.Name, c.Addr, err))
		}
		e.Local, closeAll = ln.Addr(), ln.Close
		if c.WrapListener != nil {
			ln = c.WrapListener(ln)
		}
		if c.Transport == "TLS" {
			conf := c.TLSConfig
			if conf == nil {
				conf = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			ln = tls.NewListener(ln, conf)
			e.serves = append(e.serves, func() error { return srv.ServeTLS(ln) })
		} else {
			e.serves = append(e.serves, func() error { return srv.ServeTCP(ln) })
		}
	}
	for _, l := range []struct {
		addr string
		wss  bool
	}{{c.WSAddr, false}, {c.WSSAddr, true}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fail(fmt.Errorf("%s: listen websocket %s: %w", c.Name, l.addr, err))
		}
		prev := closeAll
		closeAll = func() error { return errors.Join(ln.Close(), prev()) }
		if l.wss {
			tl := tls.NewListener(ln, c.TLSConfig)
			e.serves = append(e.serves, func() error { return srv.ServeWSS(tl) })
			e.WSSAddr = ln.Addr().String()
		} else {
			e.serves = append(e.serves, func() error { return srv.ServeWS(ln) })
			e.WSAddr = ln.Addr().String()
		}
	}
	e.close = closeAll
	h, p, _ := net.SplitHostPort(e.Local.String())
	if c.ContactAddr != "" {
		h, p, _ = net.SplitHostPort(c.ContactAddr)
	} else if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		h = localIPFor(c.Towards)
	}
	e.ContactHost = h
	e.ContactPort, _ = strconv.Atoi(p)
	return e, nil
}

// Contact returns the URI of user at the endpoint's contact address, with
// the transport parameter for a stream transport. scheme is sip, or sips
// for a contact that must be reached over TLS.
func (e *Endpoint) Contact(scheme, user string) sipmsg.Uri {
	u := sipmsg.Uri{Scheme: scheme, User: user, Host: e.ContactHost, Port: e.ContactPort}
	if e.transport != "UDP" {
		u.UriParams = sipmsg.NewParams()
		u.UriParams.Add("transport", strings.ToLower(e.transport))
	}
	return u
}

// Serve serves every listener until the first stops (the others stop when
// the sockets are closed), and returns its error.
func (e *Endpoint) Serve() error {
	errc := make(chan error, len(e.serves))
	for _, f := range e.serves {
		go func() { errc <- f() }()
	}
	return <-errc
}

// CloseListeners closes the listening sockets; Serve returns then.
func (e *Endpoint) CloseListeners() error { return e.close() }

// Close closes the listening sockets and the UA.
func (e *Endpoint) Close() error {
	return errors.Join(e.close(), e.UA.Close())
}

// WaitUDP waits until sipgo has registered the UDP socket, which ServeUDP
// does asynchronously: until then a client bound to the socket's address
// would open a second socket on it.
func (e *Endpoint) WaitUDP(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := e.UA.TransportLayer().GetConnection("udp", e.Local.String()); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("sip: listening socket was not registered in time")
		}
		time.Sleep(time.Millisecond)
	}
}

// UDPReadBuffer is the receive buffer asked for on a UDP socket. A busy
// extension's full dialog document is tens of kilobytes, and the kernel's
// default buffer (208 KB on Linux) holds only a few of them: when the
// process is busy for a moment, the kernel drops the rest, and the PBX's
// retransmissions with them, until the PBX gives the NOTIFY up and ends
// the subscription. Linux caps the buffer at net.core.rmem_max.
const UDPReadBuffer = 8 << 20

// growReadBuffer asks for UDPReadBuffer on pc and warns, with hint, when
// the kernel grants much less.
func growReadBuffer(pc net.PacketConn, log *slog.Logger, hint string) {
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		return
	}
	if err := conn.SetReadBuffer(UDPReadBuffer); err != nil {
		log.Warn("sip: could not size the UDP receive buffer", "err", err)
		return
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	got := 0
	_ = raw.Control(func(fd uintptr) {
		got, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	})
	// Linux reports twice what it grants for payload (bookkeeping).
	if got > 0 && got/2 < UDPReadBuffer/2 {
		log.Warn("sip: the kernel gave the UDP socket a small receive buffer; "+hint,
			"bytes", got/2, "wanted", UDPReadBuffer)
	}
}

// localIPFor returns the local IP that routes to addr, for the Contact of
// an endpoint listening on every interface. Nothing is sent.
func localIPFor(addr string) string {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return "127.0.0.1"
	}
	defer conn.Close()
	h, _, _ := net.SplitHostPort(conn.LocalAddr().String())
	return h
}

// CallIDOf returns m's Call-ID, or "".
func CallIDOf(m sipmsg.Message) string {
	if h := m.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

// HeaderValue returns the value of req's first header name, or "".
func HeaderValue(req *sipmsg.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}
