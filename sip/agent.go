package sip

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate"
)

// AgentConfig configures an Agent, the presence agent: a notifier (RFC
// 6665) that desk phones and web phones SUBSCRIBE to for the lamps
// callstate knows. ListenAddr and Source are required.
type AgentConfig struct {
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

// AgentStats are the agent's counters.
type AgentStats struct {
	Subscriptions int    // active now
	Notifies      uint64 // NOTIFYs answered 2xx
	NotifyErrors  uint64 // NOTIFYs not answered, or answered otherwise
	Refused       uint64 // SUBSCRIBEs answered 4xx or 5xx
	Limited       uint64 // requests refused by the rate limit
}

// sipgo refuses to send a UDP datagram over 1,300 bytes (RFC 3261 section
// 18.1.1 wants TCP then). A resource-list NOTIFY is larger with a few
// members, and a phone that subscribed over UDP has no other way to get
// it: it goes as one datagram, which IP fragments on the way (phones on
// a LAN take it; over the internet, subscribe over TCP or TLS). Like
// TransportBufferReadSize, it is a package variable of sipgo's, set once.
func init() {
	sipmsg.UDPMTUSize = 65535
}

// The event packages the agent serves.
const (
	pkgDialog   = "dialog"
	pkgPresence = "presence"
)

const allowEvents = "dialog, presence"

// Agent is the presence agent. New opens its socket; Run serves.
type Agent struct {
	cfg       AgentConfig
	log       *slog.Logger
	transport string // UDP, TCP or TLS
	domain    string
	contact   sipmsg.ContactHeader
	laddr     sipmsg.Addr // the UDP socket, so that NOTIFYs leave from it

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client

	serve    func() error
	listener func() error
	wsAddr   string // the WebSocket listeners' addresses, if any
	wssAddr  string
	nonces   nonces
	limiter  *rateLimiter

	wake     chan struct{}
	ready    chan struct{}      // closed once accounts and lamps are read
	reread   chan chan struct{} // read every lamp now, and say when done
	rereadAt atomic.Int64       // unix nanoseconds of the last such read asked for

	pmu         sync.Mutex
	pendingIDs  map[int64]struct{} // calls changed since the last read
	pendingFull bool               // read every lamp again

	mu       sync.Mutex
	loaded   bool
	views    map[LampRef]*lampView
	live     map[int64]callstate.Call // the calls that light lamps, by store id
	res      *resolver
	accounts map[string]string // user -> HA1
	subs     map[string]*agentSub
	byLamp   map[LampRef]map[*agentSub]struct{}
	perOwner map[string]int
	closing  bool
	sending  sync.WaitGroup

	sem chan struct{} // NOTIFY transactions at once

	notifies, notifyErrs, refused, limited atomic.Uint64

	authLog logEvery
}

// agentSub is one subscription: a dialog the agent is the notifier of.
type agentSub struct {
	key       string // Call-ID and the subscriber's tag
	event     string
	eventHdr  string // Event header value to send back (with its id)
	ref       LampRef
	entity    string
	owner     string
	callID    string
	localTag  string
	from      sipmsg.Uri // ours: the SUBSCRIBE's To
	to        sipmsg.Uri // theirs: the SUBSCRIBE's From
	toName    string
	remoteTag string
	target    sipmsg.Uri // the SUBSCRIBE's Contact
	routes    []string   // its Record-Route, in order
	dest      string     // where its SUBSCRIBE came from
	transport string

	// guarded by Agent.mu
	cseq    uint32
	version uint32
	expires time.Time
	ended   []agentDialog // dialogs ended since the last NOTIFY

	// A resource-list subscription (RFC 4662) watches list, not ref.
	list     []LampRef
	listURI  string
	changed  map[LampRef][]agentDialog // members changed since the last NOTIFY, with their ended dialogs
	listFull bool                      // the next NOTIFY has every member
	versions map[LampRef]uint32        // each member's dialog-info version
	final    string                    // reason of the terminating NOTIFY, once due
	running  bool                      // a NOTIFY loop runs for it
	dirty    bool                      // send again after the current one
	gone     bool                      // removed from the tables
}

// NewAgent checks cfg, opens the listening socket and returns an Agent
// that answers nothing until Run. It returns an error matching ErrConfig
// for a bad AgentConfig, and the socket's error when it cannot listen.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Logger,
		wake:       make(chan struct{}, 1),
		ready:      make(chan struct{}),
		views:      map[LampRef]*lampView{},
		live:       map[int64]callstate.Call{},
		pendingIDs: map[int64]struct{}{},
		res:        newResolver(nil, nil),
		accounts:   map[string]string{},
		subs:       map[string]*agentSub{},
		byLamp:     map[LampRef]map[*agentSub]struct{}{},
		perOwner:   map[string]int{},
		sem:        make(chan struct{}, 256),
	}
	if err := a.checkConfig(); err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	a.nonces = nonces{key: key}
	a.limiter = newRateLimiter(a.cfg.RatePerSecond, a.cfg.Burst)
	if err := a.listen(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) checkConfig() error {
	c := &a.cfg
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: presence agent: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	if c.Source == nil {
		return bad("no lamp source")
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("component", "sip-agent")
	host, _, err := net.SplitHostPort(c.ListenAddr)
	if err != nil {
		return bad("listen address %q: want host:port", c.ListenAddr)
	}
	switch strings.ToLower(c.Transport) {
	case "", "udp":
		a.transport = "UDP"
	case "tcp":
		a.transport = "TCP"
	case "tls":
		a.transport = "TLS"
		if !hasCert(c.TLSConfig) {
			return bad("transport tls needs a certificate")
		}
	default:
		return bad("transport %q: want udp, tcp or tls", c.Transport)
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
	if !hostRE.MatchString(a.domain) {
		return bad("domain %q: want a host name or IP address", a.domain)
	}
	if c.Realm == "" {
		c.Realm = a.domain
	}
	if strings.ContainsAny(c.Realm, "\r\n\x00\"") {
		return bad("realm: control characters or quotes are not allowed")
	}
	for u, p := range c.Accounts {
		if !userRE.MatchString(u) || strings.ContainsAny(p, "\r\n\x00") {
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
	if c.ContactAddr != "" {
		h, p, err := net.SplitHostPort(c.ContactAddr)
		if n, _ := strconv.Atoi(p); err != nil || !hostRE.MatchString(h) || n <= 0 || n > 65535 {
			return bad("contact address %q: want host:port", c.ContactAddr)
		}
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

func (a *Agent) listen() error {
	c := a.cfg
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(c.UserAgent), sipgo.WithUserAgentHostname(a.domain),
		sipgo.WithUserAgenTLSConfig(c.TLSConfig), sipgo.WithUserAgentParser(newParser()),
		sipgo.WithUserAgentTransportLayerOptions(sipmsg.WithTransportLayerLogger(newTransportLogger(a.log.Handler(), time.Minute))),
		// A subscriber's late 200 to a NOTIFY retransmitted under load
		// finds its transaction ended: debug, not a line for each on the
		// default logger.
		sipgo.WithUserAgentTransactionLayerOptions(sipmsg.WithTransactionLayerLogger(a.log),
			sipmsg.WithTransactionLayerUnhandledResponseHandler(func(r *sipmsg.Response) {
				a.log.Debug("presence agent: response to no transaction; a retransmission's, most likely", "status", r.StatusCode)
			})))
	if err != nil {
		return fmt.Errorf("sip: agent user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(a.log))
	if err != nil {
		_ = ua.Close()
		return fmt.Errorf("sip: agent server: %w", err)
	}
	var local net.Addr
	switch a.transport {
	case "UDP":
		pc, err := net.ListenPacket("udp", c.ListenAddr)
		if err != nil {
			_ = ua.Close()
			return fmt.Errorf("sip: agent: listen udp %s: %w", c.ListenAddr, err)
		}
		local, a.listener = pc.LocalAddr(), pc.Close
		a.serve = func() error { return srv.ServeUDP(pc) }
		ua := pc.LocalAddr().(*net.UDPAddr)
		a.laddr = sipmsg.Addr{IP: ua.IP, Port: ua.Port}
	default:
		ln, err := net.Listen("tcp", c.ListenAddr)
		if err != nil {
			_ = ua.Close()
			return fmt.Errorf("sip: agent: listen tcp %s: %w", c.ListenAddr, err)
		}
		local, a.listener = ln.Addr(), ln.Close
		if a.transport == "TLS" {
			ln = tls.NewListener(ln, c.TLSConfig)
			a.serve = func() error { return srv.ServeTLS(ln) }
		} else {
			a.serve = func() error { return srv.ServeTCP(ln) }
		}
	}
	closeAll := a.listener
	serves := []func() error{a.serve}
	for _, l := range []struct {
		addr string
		wss  bool
	}{{c.WSListenAddr, false}, {c.WSSListenAddr, true}} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			_ = closeAll()
			_ = ua.Close()
			return fmt.Errorf("sip: agent: listen websocket %s: %w", l.addr, err)
		}
		prev := closeAll
		closeAll = func() error { return errors.Join(ln.Close(), prev()) }
		if l.wss {
			tl := tls.NewListener(ln, c.TLSConfig)
			serves = append(serves, func() error { return srv.ServeWSS(tl) })
			a.wssAddr = ln.Addr().String()
		} else {
			serves = append(serves, func() error { return srv.ServeWS(ln) })
			a.wsAddr = ln.Addr().String()
		}
	}
	a.listener = closeAll
	a.serve = func() error {
		errc := make(chan error, len(serves))
		for _, f := range serves {
			go func() { errc <- f() }()
		}
		return <-errc // the first to stop; the others stop when the listeners close
	}
	h, p, _ := net.SplitHostPort(local.String())
	if c.ContactAddr != "" {
		h, p, _ = net.SplitHostPort(c.ContactAddr)
	} else if ip := net.ParseIP(h); ip != nil && ip.IsUnspecified() {
		h = localIPFor("192.0.2.1:5060")
	}
	uri := sipmsg.Uri{Scheme: "sip", User: "callstate", Host: h, Port: agentPort(p)}
	if a.transport != "UDP" {
		uri.UriParams = sipmsg.NewParams()
		uri.UriParams.Add("transport", strings.ToLower(a.transport))
	}
	a.contact = sipmsg.ContactHeader{Address: uri}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname(h), sipgo.WithClientPort(agentPort(p)), sipgo.WithClientLogger(a.log))
	if err != nil {
		_ = a.listener()
		_ = ua.Close()
		return fmt.Errorf("sip: agent client: %w", err)
	}
	a.ua, a.srv, a.cli = ua, srv, cli
	srv.OnSubscribe(a.onSubscribe)
	srv.OnOptions(a.onOptions)
	srv.OnNoRoute(a.onOther)
	return nil
}

// Addr returns the address the agent listens on.
func (a *Agent) Addr() string {
	return net.JoinHostPort(a.contact.Address.Host, strconv.Itoa(a.contact.Address.Port))
}

// WSAddr and WSSAddr return the addresses of the WebSocket listeners, empty
// for none.
func (a *Agent) WSAddr() string  { return a.wsAddr }
func (a *Agent) WSSAddr() string { return a.wssAddr }

// Stats returns the agent's counters.
func (a *Agent) Stats() AgentStats {
	a.mu.Lock()
	n := len(a.subs)
	a.mu.Unlock()
	return AgentStats{Subscriptions: n, Notifies: a.notifies.Load(), NotifyErrors: a.notifyErrs.Load(),
		Refused: a.refused.Load(), Limited: a.limited.Load()}
}

// Ready is closed once the agent has read the lamps and serves
// subscriptions; until then SUBSCRIBEs are answered 503.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Changed tells the agent that lamps may have changed: it reads them all
// again and notifies the subscribers of those that did. It never blocks.
func (a *Agent) Changed() {
	a.pmu.Lock()
	a.pendingFull = true
	a.pmu.Unlock()
	a.poke()
}

// CallChanged tells the agent that the call with store id id was written:
// it reads that call and the lamps it lights. It never blocks.
func (a *Agent) CallChanged(id int64) {
	a.pmu.Lock()
	if len(a.pendingIDs) < 10000 {
		a.pendingIDs[id] = struct{}{}
	} else {
		a.pendingFull = true
	}
	a.pmu.Unlock()
	a.poke()
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run serves until ctx is done. Then it ends every subscription with a
// NOTIFY saying Subscription-State: terminated;reason=deactivated (the
// subscriber subscribes again at once, to another instance if there is
// one), waits a moment for their answers, and closes the socket. It
// returns nil then, or the error that stopped the server.
func (a *Agent) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.serve() }()
	a.log.Info("presence agent listening", "addr", a.Addr(), "transport", a.transport, "ws", a.wsAddr, "wss", a.wssAddr, "domain", a.domain,
		"realm", a.cfg.Realm, "anonymous", a.cfg.AllowAnonymous)
	a.reloadAll(ctx)
	reload := time.NewTicker(a.cfg.ReloadInterval)
	defer reload.Stop()
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err = <-errc:
			if err != nil {
				err = fmt.Errorf("sip: agent: %w", err)
			}
			break loop
		case <-a.wake:
			a.pmu.Lock()
			full, ids := a.pendingFull, a.pendingIDs
			a.pendingFull, a.pendingIDs = false, map[int64]struct{}{}
			a.pmu.Unlock()
			a.mu.Lock()
			loaded := a.loaded
			a.mu.Unlock()
			if full || !loaded {
				a.refresh(ctx)
			} else if len(ids) > 0 {
				a.refreshCalls(ctx, ids)
			}
		case <-reload.C:
			a.reloadAll(ctx)
		case done := <-a.reread:
			a.refresh(ctx)
			close(done)
		case now := <-sweep.C:
			a.expire(now)
		}
	}
	a.shutdown()
	_ = a.listener()
	_ = a.ua.Close()
	return err
}

// reloadAll reads accounts, aliases and lamps again.
func (a *Agent) reloadAll(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	accts, err := a.cfg.Source.AgentAccounts(rctx, a.cfg.Realm)
	if err != nil {
		a.log.Warn("presence agent: reading accounts failed; keeping the previous ones", "err", err)
	} else {
		for u, p := range a.cfg.Accounts {
			accts[u] = HA1(u, a.cfg.Realm, p)
		}
		a.mu.Lock()
		a.accounts = accts
		a.mu.Unlock()
	}
	aliases, err := a.cfg.Source.AgentAliases(rctx)
	if err != nil {
		a.log.Warn("presence agent: reading aliases failed; keeping the previous ones", "err", err)
		aliases = nil
	} else {
		for k, v := range a.cfg.Aliases {
			aliases[k] = v
		}
	}
	a.refreshWith(rctx, aliases, err == nil)
}

// refresh reads every lamp and notifies the subscribers of those that
// changed.
func (a *Agent) refresh(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a.refreshWith(rctx, nil, false)
}

func (a *Agent) refreshWith(ctx context.Context, aliases map[string]LampRef, newAliases bool) {
	lamps, calls, err := a.cfg.Source.LampsAndCalls(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("presence agent: reading lamps failed; trying again at the next change", "err", err)
		}
		return
	}
	views := buildViews(lamps, calls, a.domain)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.loaded {
		close(a.ready)
	}
	if !newAliases {
		aliases = a.res.aliases
	}
	a.res = newResolver(views, aliases)
	old := a.views
	a.views, a.loaded = views, true
	clear(a.live)
	for _, c := range calls {
		if live(&c) {
			a.live[c.ID] = c
		}
	}
	for ref, subs := range a.byLamp {
		if views[ref] == nil {
			for s := range subs {
				if s.list == nil { // a list goes on without the member
					a.finishLocked(s, "noresource")
				}
			}
			continue
		}
		a.notifyChangeLocked(ref, old[ref])
	}
}

// notifyChangeLocked notifies the subscribers of ref if its view changed
// from old, the ended dialogs sent once as terminated.
func (a *Agent) notifyChangeLocked(ref LampRef, old *lampView) {
	v := a.views[ref]
	subs := a.byLamp[ref]
	if v == nil || len(subs) == 0 || v.same(old) {
		return
	}
	var ended []agentDialog
	if old != nil {
		for _, d := range old.dialogs {
			if !hasDialog(v.dialogs, d.id) {
				ended = append(ended, d)
			}
		}
	}
	for s := range subs {
		if s.list != nil {
			s.changed[ref] = append(s.changed[ref], ended...)
		} else {
			s.ended = append(s.ended, ended...)
		}
		a.kickLocked(s)
	}
}

// refreshCalls reads the calls ids and the lamps they light or lit, and
// notifies the subscribers of those that changed: the cheap path for a
// change of one call, instead of reading every lamp. A sipgate user's lamp
// follows from its calls (the user_lamp view's rule); a PBX extension's
// lamp is read, for it depends on the subscription and presence too.
func (a *Agent) refreshCalls(ctx context.Context, ids map[int64]struct{}) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list := make([]int64, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	calls, err := a.cfg.Source.CallsByID(rctx, list)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("presence agent: reading changed calls failed; reading every lamp instead", "err", err)
			a.Changed()
		}
		return
	}
	a.mu.Lock()
	affected := map[LampRef]bool{}
	for id := range ids {
		if old, ok := a.live[id]; ok {
			for _, r := range callRefs(&old) {
				affected[r] = true
			}
			delete(a.live, id)
		}
	}
	newUsers := false
	for _, c := range calls {
		for _, r := range callRefs(&c) {
			affected[r] = true
		}
		if c.Source == callstate.SourceSipgate {
			// A user not seen before has a lamp now, even when the call
			// that told of it has ended by the time it is read.
			for _, u := range append([]string{c.Extension}, c.UserIDs...) {
				if u != "" && a.views[LampRef{Source: c.Source, Extension: u}] == nil {
					newUsers = true
				}
			}
		}
		if live(&c) {
			a.live[c.ID] = c
		}
	}
	var exts []string
	for r := range affected {
		if r.Source == callstate.SourceSIP && a.views[r] != nil {
			exts = append(exts, r.Extension)
		}
	}
	a.mu.Unlock()
	if newUsers {
		// A user not seen before: read every lamp, which gives its name.
		a.refresh(ctx)
		return
	}
	sipLamps := map[string]string{}
	if len(exts) > 0 {
		ls, err := a.cfg.Source.SIPLamps(rctx, exts)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("presence agent: reading PBX lamps failed; reading every lamp instead", "err", err)
				a.Changed()
			}
			return
		}
		for _, l := range ls {
			sipLamps[l.Extension] = l.Lamp
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var lives []callstate.Call // the live calls of the affected lamps
	for _, c := range a.live {
		for _, r := range callRefs(&c) {
			if affected[r] {
				lives = append(lives, c)
				break
			}
		}
	}
	slices.SortFunc(lives, func(x, y callstate.Call) int { return cmp.Compare(x.ID, y.ID) })
	for r := range affected {
		old := a.views[r]
		if old == nil {
			continue
		}
		lamp := old.lamp
		if r.Source == callstate.SourceSIP {
			if l, ok := sipLamps[r.Extension]; ok {
				lamp = l
			}
		}
		v := buildViews([]callstate.LampStatus{{Source: r.Source, Extension: r.Extension, Name: old.name, Lamp: lamp}},
			lives, a.domain)[r]
		if r.Source == callstate.SourceSipgate {
			v.lamp = sipgateLamp(v.dialogs)
		}
		a.views[r] = v
		a.notifyChangeLocked(r, old)
	}
}

func hasDialog(ds []agentDialog, id string) bool {
	for _, d := range ds {
		if d.id == id {
			return true
		}
	}
	return false
}

// expire ends the subscriptions whose time is up.
func (a *Agent) expire(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.subs {
		if s.final == "" && now.After(s.expires) {
			a.finishLocked(s, "timeout")
		}
	}
}

// shutdown sends every subscriber its terminating NOTIFY and waits for
// the answers, two seconds at most.
func (a *Agent) shutdown() {
	a.mu.Lock()
	a.closing = true
	n := len(a.subs)
	for _, s := range a.subs {
		a.finishLocked(s, "deactivated")
	}
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { a.sending.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		a.log.Warn("presence agent: stopping before every subscriber answered its last NOTIFY")
	}
	if n > 0 {
		a.log.Info("presence agent: ended the subscriptions", "subscriptions", n)
	}
}

// finishLocked marks s to end with a NOTIFY saying reason.
func (a *Agent) finishLocked(s *agentSub, reason string) {
	if s.final == "" {
		s.final = reason
	}
	a.kickLocked(s)
}

// kickLocked makes sure a NOTIFY with s's current state goes out.
func (a *Agent) kickLocked(s *agentSub) {
	if s.gone {
		return
	}
	if s.running {
		s.dirty = true
		return
	}
	s.running = true
	a.sending.Add(1)
	go a.notifyLoop(s)
}

// removeLocked takes s out of the tables.
func (a *Agent) removeLocked(s *agentSub) {
	if s.gone {
		return
	}
	s.gone = true
	delete(a.subs, s.key)
	for _, ref := range s.refs() {
		if m := a.byLamp[ref]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(a.byLamp, ref)
			}
		}
	}
	if a.perOwner[s.owner]--; a.perOwner[s.owner] <= 0 {
		delete(a.perOwner, s.owner)
	}
}

// missingLocked reports whether a lamp of refs is not known.
func (a *Agent) missingLocked(refs []LampRef) bool {
	for _, r := range refs {
		if a.views[r] == nil {
			return true
		}
	}
	return false
}

// refs returns the lamps s watches.
func (s *agentSub) refs() []LampRef {
	if s.list != nil {
		return s.list
	}
	return []LampRef{s.ref}
}

// listBodyLocked renders s's next resource-list NOTIFY: every member the
// first time and after a refresh, else the members that changed.
func (a *Agent) listBodyLocked(s *agentSub) []byte {
	full := s.listFull || s.version == 1
	var parts []rlmiPart
	for _, ref := range s.list {
		ended, changed := s.changed[ref]
		if !full && !changed {
			continue
		}
		v := a.views[ref]
		if v == nil {
			continue
		}
		uri := "sip:" + ref.Extension + "@" + a.domain
		p := rlmiPart{uri: uri, name: cmpOr(v.name, ref.Extension)}
		if s.event == pkgPresence {
			p.ct, p.body = ctPIDF, pidfBody(uri, v)
		} else {
			if full {
				ended = nil
			}
			p.ct, p.body = ctDialogInfo, dialogInfoBody(uri, s.versions[ref], v, ended)
			s.versions[ref]++
		}
		parts = append(parts, p)
	}
	clear(s.changed)
	s.listFull = false
	return rlmiBody(s.listURI, s.version-1, full, parts)
}

// notifyLoop sends s's NOTIFYs, one at a time, until none is due.
func (a *Agent) notifyLoop(s *agentSub) {
	defer a.sending.Done()
	for {
		a.sem <- struct{}{}
		a.mu.Lock()
		s.dirty = false
		s.cseq++
		s.version++
		final := s.final
		state := "active;expires=" + strconv.Itoa(max(0, int(time.Until(s.expires).Seconds())))
		if final != "" {
			state = "terminated;reason=" + final
		}
		var body []byte
		ct := ctDialogInfo
		if s.list != nil {
			body, ct = a.listBodyLocked(s), ctRLMI
		} else if v := a.views[s.ref]; v != nil {
			if s.event == pkgPresence {
				body, ct = pidfBody(s.entity, v), ctPIDF
			} else {
				body = dialogInfoBody(s.entity, s.version-1, v, s.ended)
			}
		}
		s.ended = nil
		req := a.notifyRequest(s, state, ct, body)
		a.mu.Unlock()

		code, err := a.send(req)
		<-a.sem
		ok := err == nil && code/100 == 2
		if ok {
			a.notifies.Add(1)
		} else {
			a.notifyErrs.Add(1)
		}
		a.mu.Lock()
		if !ok {
			if final == "" {
				a.log.Info("presence agent: subscriber did not take a NOTIFY; subscription ended",
					"resource", s.entity, "subscriber", s.owner, "code", code, "err", err)
			}
			a.removeLocked(s)
		} else if final != "" {
			a.removeLocked(s)
		}
		if s.gone || !s.dirty {
			s.running = false
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
	}
}

// notifyRequest builds s's next NOTIFY.
func (a *Agent) notifyRequest(s *agentSub, state, ct string, body []byte) *sipmsg.Request {
	req := sipmsg.NewRequest(sipmsg.NOTIFY, s.target)
	req.SetTransport(s.transport)
	req.SetDestination(s.dest)
	if s.transport == "UDP" {
		req.Laddr = a.laddr
	}
	from := &sipmsg.FromHeader{Address: s.from, Params: sipmsg.NewParams()}
	from.Params.Add("tag", s.localTag)
	to := &sipmsg.ToHeader{DisplayName: s.toName, Address: s.to, Params: sipmsg.NewParams()}
	if s.remoteTag != "" {
		to.Params.Add("tag", s.remoteTag)
	}
	callID := sipmsg.CallIDHeader(s.callID)
	mf := sipmsg.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: s.cseq, MethodName: sipmsg.NOTIFY})
	req.AppendHeader(&mf)
	for _, r := range s.routes {
		req.AppendHeader(sipmsg.NewHeader("Route", r))
	}
	req.AppendHeader(a.contact.Clone())
	req.AppendHeader(sipmsg.NewHeader("Event", s.eventHdr))
	req.AppendHeader(sipmsg.NewHeader("Subscription-State", state))
	req.AppendHeader(sipmsg.NewHeader("User-Agent", a.cfg.UserAgent))
	if body != nil {
		req.AppendHeader(sipmsg.NewHeader("Content-Type", ct))
	}
	if s.list != nil {
		req.AppendHeader(sipmsg.NewHeader("Require", "eventlist"))
	}
	req.SetBody(body)
	return req
}

// send runs one NOTIFY transaction and returns the final status code.
func (a *Agent) send(req *sipmsg.Request) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.NotifyTimeout)
	defer cancel()
	tx, err := a.cli.TransactionRequest(ctx, req)
	if err != nil {
		return 0, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return int(res.StatusCode), nil
		case <-tx.Done():
			return 0, tx.Err()
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// onOptions answers OPTIONS with what the agent takes.
func (a *Agent) onOptions(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if !a.allow(req, tx) {
		return
	}
	res := sipmsg.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sipmsg.NewHeader("Allow", "SUBSCRIBE, OPTIONS"))
	res.AppendHeader(sipmsg.NewHeader("Allow-Events", allowEvents))
	_ = tx.Respond(res)
}

// onOther answers every other method 405.
func (a *Agent) onOther(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if req.IsAck() || !a.allow(req, tx) {
		return
	}
	res := sipmsg.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
	res.AppendHeader(sipmsg.NewHeader("Allow", "SUBSCRIBE, OPTIONS"))
	_ = tx.Respond(res)
}

// allow applies the rate limit to req's source. Over the limit it answers
// 503 with Retry-After and returns false.
func (a *Agent) allow(req *sipmsg.Request, tx sipmsg.ServerTransaction) bool {
	host, _, _ := net.SplitHostPort(req.Source())
	if a.limiter.allow(host, time.Now()) {
		return true
	}
	a.limited.Add(1)
	if a.authLog.due(time.Now(), time.Minute) {
		a.log.Warn("presence agent: requests over the rate limit answered 503", "source", host,
			"limited_total", a.limited.Load())
	}
	res := sipmsg.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
	res.AppendHeader(sipmsg.NewHeader("Retry-After", "5"))
	_ = tx.Respond(res)
	return false
}

// refuse answers req with code and counts it.
func (a *Agent) refuse(req *sipmsg.Request, tx sipmsg.ServerTransaction, code int, reason string, hdrs ...sipmsg.Header) {
	a.refused.Add(1)
	res := sipmsg.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

// parseEvent returns the package of an Event header value and the value
// to echo in NOTIFYs (with its id parameter, RFC 6665 section 8.2.1).
func parseEvent(v string) (pkg, echo string) {
	pkg, params, _ := strings.Cut(strings.TrimSpace(v), ";")
	pkg = strings.ToLower(strings.TrimSpace(pkg))
	if !validToken(pkg) {
		return "", ""
	}
	echo = pkg
	for _, p := range strings.Split(params, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "id") && validToken(strings.TrimSpace(val)) {
			echo += ";id=" + strings.TrimSpace(val)
		}
	}
	return pkg, echo
}

func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-.!%*_+`'~", r)) {
			return false
		}
	}
	return true
}

var errExpires = errors.New("bad Expires")

// parseExpires reads an Expires value: seconds. A number too large for an
// int is taken as the longest there is (and cut to the maximum after).
func parseExpires(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 64 {
		return 0, errExpires
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return 0, errExpires
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > int64(100*365*24*3600) {
		return 100 * 365 * 24 * time.Hour, nil
	}
	return time.Duration(n) * time.Second, nil
}

// acceptsType reports whether an Accept header value (empty: none sent)
// takes ct.
func acceptsType(accept, ct string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for _, t := range strings.Split(accept, ",") {
		t, _, _ = strings.Cut(strings.TrimSpace(t), ";")
		t = strings.ToLower(strings.TrimSpace(t))
		if t == ct || t == "*/*" || t == "application/*" {
			return true
		}
	}
	return false
}

func (a *Agent) onSubscribe(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if !a.allow(req, tx) {
		return
	}
	pkg, echo := parseEvent(headerValue(req, "Event"))
	if pkg != pkgDialog && pkg != pkgPresence {
		a.refuse(req, tx, 489, "Bad Event", sipmsg.NewHeader("Allow-Events", allowEvents))
		return
	}
	expires := a.cfg.DefaultExpires
	if v := headerValue(req, "Expires"); v != "" {
		d, err := parseExpires(v)
		if err != nil {
			a.refuse(req, tx, 400, "Bad Expires")
			return
		}
		expires = d
	}
	if expires != 0 && expires < a.cfg.MinExpires {
		a.refuse(req, tx, 423, "Interval Too Brief",
			sipmsg.NewHeader("Min-Expires", strconv.Itoa(int(a.cfg.MinExpires.Seconds()))))
		return
	}
	expires = min(expires, a.cfg.MaxExpires)
	from, to, callID := req.From(), req.To(), req.CallID()
	if from == nil || to == nil || callID == nil {
		a.refuse(req, tx, 400, "Missing From, To or Call-ID")
		return
	}
	fromTag, _ := from.Params.Get("tag")
	key := string(*callID) + "\x00" + fromTag
	if toTag, ok := to.Params.Get("tag"); ok && toTag != "" {
		a.refreshSub(req, tx, key, toTag, pkg, expires)
		return
	}
	ct := ctDialogInfo
	if pkg == pkgPresence {
		ct = ctPIDF
	}
	if !acceptsType(headerValue(req, "Accept"), ct) {
		a.refuse(req, tx, 406, "Not Acceptable", sipmsg.NewHeader("Accept", ct))
		return
	}
	contact := req.Contact()
	if contact == nil || contact.Address.Host == "" {
		a.refuse(req, tx, 400, "Missing Contact")
		return
	}
	select {
	case <-a.ready:
	default:
		a.refuse(req, tx, 503, "Lamps Not Read Yet", sipmsg.NewHeader("Retry-After", "5"))
		return
	}
	owner, ok := a.authenticate(req, tx)
	if !ok {
		return
	}
	list, isList := a.cfg.Lists[req.Recipient.User]
	a.mu.Lock()
	if _, known := a.res.resolve(req.Recipient.User); !known && !isList || isList && a.missingLocked(list) {
		a.mu.Unlock()
		a.rereadNow()
		a.mu.Lock()
	}
	if isList && !hasOption(req, "Supported", "eventlist") {
		a.mu.Unlock()
		a.refuse(req, tx, 421, "Extension Required", sipmsg.NewHeader("Require", "eventlist"))
		return
	}
	ref, found := a.res.resolve(req.Recipient.User)
	if isList {
		ref, found = LampRef{}, true
	}
	if !found {
		a.mu.Unlock()
		a.log.Info("presence agent: SUBSCRIBE for an unknown resource answered 404", "user", clip(req.Recipient.User), "subscriber", owner)
		a.refuse(req, tx, 404, "Not Found")
		return
	}
	if a.closing || len(a.subs) >= a.cfg.MaxSubscriptions || a.perOwner[owner] >= a.cfg.MaxPerSubscriber {
		a.mu.Unlock()
		if a.authLog.due(time.Now(), time.Minute) {
			a.log.Warn("presence agent: too many subscriptions; SUBSCRIBE answered 503", "subscriber", owner,
				"total", len(a.subs))
		}
		a.refuse(req, tx, 503, "Too Many Subscriptions", sipmsg.NewHeader("Retry-After", "60"))
		return
	}
	if old := a.subs[key]; old != nil {
		// A repeat of the SUBSCRIBE (a retransmission outlived its
		// transaction): the subscription stands.
		a.mu.Unlock()
		a.respondOK(req, tx, old.localTag, expires)
		return
	}
	s := &agentSub{
		key: key, event: pkg, eventHdr: echo, ref: ref, owner: owner, callID: string(*callID),
		localTag: sipmsg.GenerateTagN(16), from: uriOnly(to.Address), to: uriOnly(from.Address), toName: from.DisplayName,
		remoteTag: fromTag, target: contact.Address, dest: req.Source(), transport: req.Transport(),
		expires: time.Now().Add(expires),
	}
	entity := uriOnly(req.Recipient)
	s.entity = entity.String()
	for _, h := range req.GetHeaders("Record-Route") {
		s.routes = append(s.routes, h.Value())
	}
	if isList {
		s.list, s.listURI = list, s.entity
		s.changed, s.versions = map[LampRef][]agentDialog{}, map[LampRef]uint32{}
	}
	if expires > 0 {
		a.subs[key] = s
		for _, r := range s.refs() {
			if a.byLamp[r] == nil {
				a.byLamp[r] = map[*agentSub]struct{}{}
			}
			a.byLamp[r][s] = struct{}{}
		}
		a.perOwner[owner]++
	} else {
		s.final = "timeout" // a fetch (RFC 6665 section 4.4.3): one NOTIFY
		a.perOwner[owner]++
	}
	a.mu.Unlock()
	a.respondOK(req, tx, s.localTag, expires)
	a.log.Debug("presence agent: subscription", "resource", s.entity, "lamp", ref.String(), "event", pkg,
		"subscriber", owner, "expires", expires)
	a.mu.Lock()
	a.kickLocked(s)
	a.mu.Unlock()
}

// refreshSub handles a SUBSCRIBE within a subscription's dialog: a refresh,
// or with Expires: 0 the end of it. Either is followed by a NOTIFY with
// the full state.
func (a *Agent) refreshSub(req *sipmsg.Request, tx sipmsg.ServerTransaction, key, toTag, pkg string, expires time.Duration) {
	a.mu.Lock()
	s := a.subs[key]
	if s == nil || s.localTag != toTag || s.event != pkg || s.final != "" {
		a.mu.Unlock()
		a.refuse(req, tx, 481, "Subscription Does Not Exist")
		return
	}
	if expires == 0 {
		s.final = "timeout"
	} else {
		s.expires = time.Now().Add(expires)
	}
	a.mu.Unlock()
	a.respondOK(req, tx, toTag, expires)
	a.mu.Lock()
	s.ended = nil
	s.listFull = true
	a.kickLocked(s)
	a.mu.Unlock()
}

// rereadNow reads every lamp before a SUBSCRIBE for a resource not known
// is answered 404: a user sipgate told of a moment ago, an extension
// just added. It does so at most once a second, so that a flood of
// unknown names costs one read a second, and waits two seconds at most.
func (a *Agent) rereadNow() {
	now := time.Now().UnixNano()
	last := a.rereadAt.Load()
	if now-last < int64(time.Second) || !a.rereadAt.CompareAndSwap(last, now) {
		return
	}
	done := make(chan struct{})
	select {
	case a.reread <- done:
	case <-time.After(2 * time.Second):
		return
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// hasOption reports whether the option tag opt is in req's header name
// (Supported, Require), case-insensitively.
func hasOption(req *sipmsg.Request, name, opt string) bool {
	for _, h := range req.GetHeaders(name) {
		for _, o := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(o), opt) {
				return true
			}
		}
	}
	return false
}

func (a *Agent) respondOK(req *sipmsg.Request, tx sipmsg.ServerTransaction, tag string, expires time.Duration) {
	res := sipmsg.NewResponseFromRequest(req, 200, "OK", nil)
	if to := res.To(); to != nil { // sipgo put a tag of its own there
		if to.Params == nil {
			to.Params = sipmsg.NewParams()
		}
		to.Params.Remove("tag")
		to.Params.Add("tag", tag)
	}
	res.AppendHeader(sipmsg.NewHeader("Expires", strconv.Itoa(int(expires.Seconds()))))
	res.AppendHeader(a.contact.Clone())
	_ = tx.Respond(res)
}

// authenticate checks req's credentials. It returns the subscriber's name
// for the limits and the log (the account, or the source address when
// anonymous), or answers 401 (or 403) and returns false.
func (a *Agent) authenticate(req *sipmsg.Request, tx sipmsg.ServerTransaction) (string, bool) {
	host, _, _ := net.SplitHostPort(req.Source())
	if a.cfg.AllowAnonymous {
		return host, true
	}
	now := time.Now()
	h := req.GetHeader("Authorization")
	if h == nil {
		a.challenge(req, tx, false)
		return "", false
	}
	c, err := parseDigest(h.Value())
	if err != nil {
		a.authFailed(req, tx, host, "", "malformed credentials")
		return "", false
	}
	valid, stale := a.nonces.check(c.nonce, now)
	if !valid {
		a.challenge(req, tx, false)
		return "", false
	}
	a.mu.Lock()
	ha1, known := a.accounts[c.username]
	a.mu.Unlock()
	if !known || c.realm != a.cfg.Realm || !digestOK(c, string(req.Method), ha1) {
		a.authFailed(req, tx, host, c.username, "wrong user name or password")
		return "", false
	}
	if stale {
		a.challenge(req, tx, true)
		return "", false
	}
	return c.username, true
}

func (a *Agent) challenge(req *sipmsg.Request, tx sipmsg.ServerTransaction, stale bool) {
	v := `Digest realm="` + a.cfg.Realm + `", nonce="` + a.nonces.make(time.Now()) + `", algorithm=MD5, qop="auth"`
	if stale {
		v += ", stale=true"
	}
	res := sipmsg.NewResponseFromRequest(req, 401, "Unauthorized", nil)
	res.AppendHeader(sipmsg.NewHeader("WWW-Authenticate", v))
	_ = tx.Respond(res)
}

// authFailed answers 403 and logs the attempt (never the credentials'
// response, let alone a password), at most once a minute per reason.
func (a *Agent) authFailed(req *sipmsg.Request, tx sipmsg.ServerTransaction, host, user, why string) {
	if a.authLog.due(time.Now(), 10*time.Second) {
		a.log.Warn("presence agent: SUBSCRIBE with bad credentials answered 403", "source", host,
			"user", clip(user), "why", why)
	}
	a.refuse(req, tx, 403, "Forbidden")
}

func headerValue(req *sipmsg.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// uriOnly returns u without URI parameters or headers other than those of
// the address itself.
func uriOnly(u sipmsg.Uri) sipmsg.Uri {
	return sipmsg.Uri{Scheme: cmpOr(u.Scheme, "sip"), User: u.User, Host: u.Host, Port: u.Port}
}

// logEvery lets a log line through at most once per interval.
type logEvery struct {
	mu   sync.Mutex
	last time.Time
}

func (l *logEvery) due(now time.Time, every time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) < every {
		return false
	}
	l.last = now
	return true
}

// rateLimiter is a token bucket per source address.
type rateLimiter struct {
	mu      sync.Mutex
	rate    float64
	burst   float64
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

func (l *rateLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= 100_000 { // forget the idle ones
			for k, o := range l.buckets {
				if now.Sub(o.at) > time.Minute {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// localIPFor returns the local IP that routes to addr, for the Contact of
// an agent listening on all interfaces. Nothing is sent.
func localIPFor(addr string) string {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return "127.0.0.1"
	}
	defer conn.Close()
	h, _, _ := net.SplitHostPort(conn.LocalAddr().String())
	return h
}

func agentPort(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
