package presence

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate/sip"
)

// Stats are the agent's counters.
type Stats struct {
	Subscriptions int    // active now
	Notifies      uint64 // NOTIFYs answered 2xx
	NotifyErrors  uint64 // NOTIFYs not answered, or answered otherwise
	Refused       uint64 // SUBSCRIBEs answered 4xx or 5xx
	Limited       uint64 // requests refused by the rate limit
	FeedID        int64  // the feed's id up to which the lamps are applied
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
	cfg       Config
	log       *slog.Logger
	transport string // UDP, TCP or TLS
	domain    string
	contact   sipmsg.ContactHeader
	laddr     sipmsg.Addr // the UDP socket, so that NOTIFYs leave from it

	ep      *sip.Endpoint
	cli     *sipgo.Client
	nonces  nonces
	limiter *rateLimiter

	ready chan struct{} // closed once the accounts and lamps are read

	accountsRead chan struct{} // closed once the accounts were first read
	accountsOnce sync.Once
	reread       chan chan struct{} // read every lamp now, and say when done
	rereadAt     atomic.Int64       // unix nanoseconds of the last such read asked for

	mu sync.Mutex
	lampCache
	accounts map[string]string // user -> HA1
	subs     map[string]*agentSub
	byLamp   map[LampRef]map[*agentSub]struct{}
	perOwner map[string]int
	closing  bool
	sending  sync.WaitGroup

	sem chan struct{} // NOTIFY transactions at once

	notifies, notifyErrs, refused, limited atomic.Uint64
	feedID                                 atomic.Int64 // Stats.FeedID

	authLog, feedLog logEvery
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

// New checks cfg, opens the listening socket and returns an Agent
// that answers nothing until Run. It returns an error matching sip.ErrConfig
// for a bad Config, and the socket's error when it cannot listen.
func New(cfg Config) (*Agent, error) {
	a := &Agent{
		cfg:          cfg,
		log:          cfg.Logger,
		ready:        make(chan struct{}),
		reread:       make(chan chan struct{}),
		accountsRead: make(chan struct{}),
		lampCache:    newLampCache(),
		accounts:     map[string]string{},
		subs:         map[string]*agentSub{},
		byLamp:       map[LampRef]map[*agentSub]struct{}{},
		perOwner:     map[string]int{},
		sem:          make(chan struct{}, 256),
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

func (a *Agent) listen() error {
	c := a.cfg
	ep, err := sip.Listen(sip.EndpointConfig{
		Name: "sip: presence agent", Transport: a.transport, Addr: c.ListenAddr, WSAddr: c.WSListenAddr, WSSAddr: c.WSSListenAddr,
		ContactAddr: c.ContactAddr, Towards: "192.0.2.1:5060",
		Hostname: a.domain, UserAgent: c.UserAgent, TLSConfig: c.TLSConfig, Log: a.log,
	})
	if err != nil {
		return err
	}
	if a.transport == "UDP" { // NOTIFYs leave from the listening socket
		u := ep.Local.(*net.UDPAddr)
		a.laddr = sipmsg.Addr{IP: u.IP, Port: u.Port}
	}
	a.contact = sipmsg.ContactHeader{Address: ep.Contact("sip", "callstate")}
	cli, err := sipgo.NewClient(ep.UA, sipgo.WithClientHostname(ep.ContactHost), sipgo.WithClientPort(ep.ContactPort), sipgo.WithClientLogger(a.log))
	if err != nil {
		_ = ep.Close()
		return fmt.Errorf("sip: agent client: %w", err)
	}
	a.ep, a.cli = ep, cli
	ep.Server.OnSubscribe(a.onSubscribe)
	ep.Server.OnOptions(a.onOptions)
	ep.Server.OnNoRoute(a.onOther)
	return nil
}

// Addr returns the address the agent listens on.
func (a *Agent) Addr() string {
	return net.JoinHostPort(a.contact.Address.Host, strconv.Itoa(a.contact.Address.Port))
}

// WSAddr and WSSAddr return the addresses of the WebSocket listeners, empty
// for none.
func (a *Agent) WSAddr() string { return a.ep.WSAddr }

func (a *Agent) WSSAddr() string { return a.ep.WSSAddr }

// Stats returns the agent's counters.
func (a *Agent) Stats() Stats {
	a.mu.Lock()
	n := len(a.subs)
	a.mu.Unlock()
	return Stats{Subscriptions: n, Notifies: a.notifies.Load(), NotifyErrors: a.notifyErrs.Load(),
		Refused: a.refused.Load(), Limited: a.limited.Load(), FeedID: a.feedID.Load()}
}

// Ready is closed once the agent has read the lamps and serves
// subscriptions; until then SUBSCRIBEs are answered 503.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Run serves until ctx is done. Then it ends every subscription with a
// NOTIFY saying Subscription-State: terminated;reason=deactivated (the
// subscriber subscribes again at once, to another instance if there is
// one), waits a moment for their answers, and closes the socket. It
// returns nil then, or the error that stopped the server.
func (a *Agent) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.ep.Serve() }()
	a.log.Info("presence agent listening", "addr", a.Addr(), "transport", a.transport, "ws", a.ep.WSAddr, "wss", a.ep.WSSAddr, "domain", a.domain,
		"realm", a.cfg.Realm, "anonymous", a.cfg.AllowAnonymous)
	a.reloadAccounts(ctx)
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
		case <-reload.C:
			a.reloadAccounts(ctx)
		case done := <-a.reread:
			// Every lamp from the lamp view itself: a lamp the feed has
			// not told of yet (its lamps are compared with the view every
			// 50 ms at most) is there already. The feed's events read
			// after it leave each lamp as the last of them says.
			a.load(ctx)
			close(done)
		case now := <-sweep.C:
			a.expire(now)
		}
	}
	a.shutdown()
	_ = a.ep.Close()
	return err
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
