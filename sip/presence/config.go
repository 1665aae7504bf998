package presence

import (
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sip"
)

// Config configures an Agent, the presence agent: a notifier (RFC
// 6665) that desk phones and web phones SUBSCRIBE to for the lamps
// callstate knows. ListenAddr and Source are required.
type Config struct {
	ListenAddr  string // host:port SUBSCRIBEs arrive on
	Transport   string // udp (default), tcp or tls
	Domain      string // SIP domain of the lamps' URIs; default the listen host
	ContactAddr string // host:port put in Contact and Via; default the listen address
	Realm       string // digest realm; default Domain

	// Accounts are digest accounts, user name to password, besides those
	// Source.AgentAccounts returns.
	Accounts map[string]string
	// AllowAnonymous serves subscribers without credentials. Off, every
	// SUBSCRIBE must authenticate.
	AllowAnonymous bool
	// Aliases are further names of lamps, besides Source.AgentAliases.
	Aliases map[string]LampRef
	// Lists are resource lists (RFC 4662): a SUBSCRIBE to sip:NAME@domain
	// with Supported: eventlist watches every lamp of Lists[NAME].
	Lists map[string][]LampRef

	// MinExpires, MaxExpires and DefaultExpires bound a subscription's
	// lifetime: below MinExpires is answered 423, above MaxExpires is cut
	// to it, none asked for gets DefaultExpires. Defaults 60s, 1h, 1h.
	MinExpires, MaxExpires, DefaultExpires time.Duration
	// RatePerSecond and Burst bound the requests one source address may
	// send; beyond them it is answered 503 with Retry-After. Defaults 20, 100.
	RatePerSecond float64
	Burst         int
	// MaxSubscriptions bounds the subscriptions at once (default 50000);
	// MaxPerSubscriber those of one account, or of one address when
	// anonymous (default 500). Beyond either: 503.
	MaxSubscriptions, MaxPerSubscriber int
	// ReloadInterval is how often accounts, aliases and every lamp are read
	// again besides the change notifications; default 30s.
	ReloadInterval time.Duration
	// NotifyTimeout bounds one NOTIFY transaction; default 10s.
	NotifyTimeout time.Duration

	// WSListenAddr and WSSListenAddr, when set, are further listeners for
	// SIP over WebSocket (RFC 7118), plain and over TLS (TLSConfig), for
	// web phones.
	WSListenAddr, WSSListenAddr string

	TLSConfig *tls.Config // for transport tls and WSS: the server certificate
	Source    LampSource
	Logger    *slog.Logger // nil: slog.Default()
	UserAgent string       // User-Agent header; default "callstate"
}

func (a *Agent) checkConfig() error {
	c, bad := &a.cfg, sip.BadConfig("presence agent")
	a.log = sip.Logger(a.log, "sip-agent")
	if c.Source == nil {
		return bad("no lamp source")
	}
	var ok bool
	if a.transport, ok = sip.ParseTransport(c.Transport); !ok {
		return bad("transport %q: want udp, tcp or tls", c.Transport)
	}
	if a.transport == "TLS" && !hasCert(c.TLSConfig) {
		return bad("transport tls needs a certificate")
	}
	host, _, err := net.SplitHostPort(c.ListenAddr)
	if err != nil {
		return bad("listen address %q: want host:port", c.ListenAddr)
	}
	if c.WSSListenAddr != "" && !hasCert(c.TLSConfig) {
		return bad("a WSS listener needs a certificate")
	}
	for _, addr := range []string{c.WSListenAddr, c.WSSListenAddr} {
		if _, _, err := net.SplitHostPort(addr); addr != "" && err != nil {
			return bad("WebSocket listen address %q: want host:port", addr)
		}
	}
	a.domain = c.Domain
	if a.domain == "" {
		a.domain = host
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			a.domain = "callstate.invalid"
		}
	}
	if !sip.ValidHost(a.domain) {
		return bad("domain %q: want a host name or IP address", a.domain)
	}
	if c.Realm == "" {
		c.Realm = a.domain
	}
	if strings.ContainsAny(c.Realm, "\r\n\x00\"") {
		return bad("realm: control characters or quotes are not allowed")
	}
	for u, p := range c.Accounts {
		if !callstate.ValidSIPUser(u) || strings.ContainsAny(p, "\r\n\x00") {
			return bad("account %q: user name not allowed in a SIP URI, or control characters in the password", u)
		}
	}
	c.MinExpires = cmpOr(c.MinExpires, 60*time.Second)
	c.MaxExpires = cmpOr(c.MaxExpires, time.Hour)
	c.DefaultExpires = cmpOr(c.DefaultExpires, time.Hour)
	if c.MinExpires < time.Second || c.MaxExpires < c.MinExpires {
		return bad("expires: want 1s <= min (%s) <= max (%s)", c.MinExpires, c.MaxExpires)
	}
	c.DefaultExpires = min(max(c.DefaultExpires, c.MinExpires), c.MaxExpires)
	c.RatePerSecond = cmpOr(c.RatePerSecond, 20)
	c.Burst = cmpOr(c.Burst, 100)
	c.MaxSubscriptions = cmpOr(c.MaxSubscriptions, 50000)
	c.MaxPerSubscriber = cmpOr(c.MaxPerSubscriber, 500)
	c.ReloadInterval = cmpOr(c.ReloadInterval, 30*time.Second)
	c.NotifyTimeout = cmpOr(c.NotifyTimeout, 10*time.Second)
	c.UserAgent = cmpOr(c.UserAgent, "callstate")
	if c.ContactAddr != "" && !sip.ValidHostPort(c.ContactAddr) {
		return bad("contact address %q: want host:port", c.ContactAddr)
	}
	return nil
}

func hasCert(c *tls.Config) bool {
	return c != nil && (len(c.Certificates) > 0 || c.GetCertificate != nil)
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
