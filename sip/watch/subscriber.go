package watch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sip"
)

// Store is what the subscriber needs from the call-state store.
type Store interface {
	// Keep keeps evs, the dialog changes of one NOTIFY, and returns once
	// they are safe: committed to the journal, or on local disk on their
	// way there (a spool). A 200 to the NOTIFY waits for it, up to
	// Config.AnswerWithin, so it should take no database round trip. All
	// of evs are kept or none; an error
	// wrapping callstate.ErrInvalidEvent says that trying again is in
	// vain.
	Keep(ctx context.Context, evs []callstate.Event) error
	// ActiveCalls returns the ringing or answered calls of source for ext.
	ActiveCalls(ctx context.Context, source callstate.Source, ext string) ([]callstate.Call, error)
	// Extensions returns the extensions to watch.
	Extensions(ctx context.Context) ([]string, error)
	// SetSubscriptions records the states of dialog subscriptions, in one
	// statement: exts[i] (no repeats) is pending, active, retrying,
	// refused or terminated (states[i]), and why (reasons[i]). An error
	// wrapping callstate.ErrInvalidEvent says that trying again is in
	// vain; after any other the subscriber tries again until it lands.
	SetSubscriptions(ctx context.Context, exts, states, reasons []string) error
	// SetPresences records presence statuses and notes, like
	// SetSubscriptions.
	SetPresences(ctx context.Context, exts, statuses, notes []string) error
}

// DefaultReloadInterval is how often a Subscriber reads the list of
// extensions from the store unless told otherwise (SIP_RELOAD_INTERVAL's
// default too).
const DefaultReloadInterval = 5 * time.Second

// DefaultAnswerWithin is how long a NOTIFY's answer waits for its changes
// to be kept unless told otherwise (SIP_NOTIFY_ANSWER_WITHIN's default
// too): under 500 ms, RFC 3261's T1, so that a PBX on UDP does not send
// the NOTIFY again while the disk is slow, and far under any PBX's
// transaction timer.
const DefaultAnswerWithin = 400 * time.Millisecond

// Config configures a Subscriber. PBXAddr and Store are required.
type Config struct {
	PBXAddr   string // host:port the PBX receives SIP on; every request goes there
	Transport string // udp (default), tcp or tls
	Domain    string // SIP domain of the extensions; default PBXAddr's host

	ListenAddr  string // local host:port NOTIFYs arrive on; default 0.0.0.0:5060
	ContactAddr string // host:port put in Contact and Via (NAT); default the listen address

	Username     string // our user: From of every request, and REGISTER's AOR
	Password     string // digest password; empty: 401/407 are not answered
	AuthUsername string // digest user name; default Username
	Realm        string // when set, only challenges of this realm are answered

	Expires  time.Duration // subscription (and registration) lifetime asked for; default 10m
	Register bool          // REGISTER Username before subscribing
	Presence bool          // also subscribe to the presence event package

	// StuckDialogTimeout: a dialog that has not changed for this long makes
	// the subscriber ask for full state. Zero disables the check.
	StuckDialogTimeout time.Duration
	// MessageURI, when set, receives a SIP MESSAGE with {"entity","status"}
	// after every lamp change.
	MessageURI string
	// ReloadInterval is how often the list of extensions is read from the
	// store; default DefaultReloadInterval.
	ReloadInterval time.Duration
	// RetryMin and RetryMax bound the back-off between attempts to
	// re-subscribe; defaults 1s and 5m.
	RetryMin, RetryMax time.Duration
	// RequestTimeout bounds each SUBSCRIBE, REGISTER and MESSAGE
	// transaction; default 10s.
	RequestTimeout time.Duration
	// StoreTimeout bounds the store writes of one NOTIFY; default 5s.
	StoreTimeout time.Duration
	// AnswerWithin is how long the answer to a NOTIFY waits for its
	// changes to be kept (Store.Keep): a Keep slower than this is
	// answered 200 anyway and goes on (see subscription.onNotify).
	// Default DefaultAnswerWithin.
	AnswerWithin time.Duration
	// SubscribeRate is how many new subscriptions a second are started
	// when many extensions are new at once (all of them at start): their
	// first SUBSCRIBEs are spread over a window of that many a second, at
	// most a quarter of Expires. Default 500.
	SubscribeRate int
	// Keepalive is how often OPTIONS goes to the PBX, to notice within
	// seconds that it went away or restarted; each round also refreshes
	// one dialog subscription. Zero turns it off.
	Keepalive time.Duration

	TLSConfig *tls.Config // for transport tls; nil uses the system roots
	Store     Store
	Logger    *slog.Logger // nil: slog.Default()
	UserAgent string       // User-Agent header; default "callstate"

	// Tests see the socket's traffic through these.
	wrapPacketConn func(net.PacketConn) net.PacketConn
	wrapListener   func(net.Listener) net.Listener
	// Tests hold NOTIFYs in order through these: heldForTurn hears of
	// each NOTIFY that starts to wait for an earlier one (called with the
	// subscription's lock held: it must not block), and holdFor, when
	// set, is how long a NOTIFY waits for an earlier one, arrived or not
	// (see waitTurn).
	heldForTurn func(cseq uint32)
	holdFor     time.Duration
	// maxEarly, when set, replaces the package's maxEarly.
	maxEarly int
}

// Subscriber watches PBX extensions with SUBSCRIBE (Event: dialog, and
// presence when configured) and writes what the NOTIFYs say into the store.
type Subscriber struct {
	cfg       Config
	log       *slog.Logger
	transport string // UDP, TCP or TLS
	domain    string
	contact   sipmsg.Uri
	message   *sipmsg.Uri

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client

	mu      sync.Mutex
	byCall  map[string]*subscription // by SUBSCRIBE Call-ID
	watched map[string]*watch        // by extension

	registered chan struct{} // closed after the first REGISTER, or at once without it
	messages   chan lampMessage
	wg         sync.WaitGroup
	closeOnce  sync.Once
	listener   func() error  // closes the socket
	stray      atomic.Uint64 // requests outside any subscription
	subscribes atomic.Uint64 // SUBSCRIBEs sent, refreshes and un-subscribes included
	opened     atomic.Uint64 // subscription dialogs opened (out-of-dialog SUBSCRIBEs)
	bigWarned  atomic.Int64  // unix nanoseconds of the last warning that UDP documents grow too big
	earlyTotal atomic.Uint64 // NOTIFYs answered before their changes were kept (AnswerWithin)
	early      atomic.Int64  // of them, those whose Keep has not returned yet
	earlyWarn  atomic.Int64  // unix nanoseconds of the last warning about them
	states     *stateWriter
	sched      *scheduler
	expires    atomic.Int64 // time.Duration: cfg.Expires, raised by a 423 (see expiry)

	pbxMu      sync.Mutex
	pbx        pbxState
	check      chan string   // reasons to check the PBX at once, for keepalive
	reregister chan struct{} // REGISTER again at once, for registerLoop
}

// watch is one watched extension: its subscriptions.
type watch struct {
	subs []*subscription
}

// New checks cfg, opens the listening socket and returns a Subscriber that
// does nothing until Run. It returns an error matching sip.ErrConfig for a bad
// Config, and the socket's error when it cannot listen.
func New(cfg Config) (*Subscriber, error) {
	s := &Subscriber{
		cfg:        cfg,
		log:        cfg.Logger,
		byCall:     make(map[string]*subscription),
		watched:    make(map[string]*watch),
		registered: make(chan struct{}),
		messages:   make(chan lampMessage, 1024),
		check:      make(chan string, 1),
		reregister: make(chan struct{}, 1),
		sched:      newScheduler(),
	}
	if err := s.checkConfig(); err != nil {
		return nil, err
	}
	s.expires.Store(int64(s.cfg.Expires))
	s.states = newStateWriter(cfg.Store, s.log, s.cfg.StoreTimeout)
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Subscriber) checkConfig() error {
	c, bad := &s.cfg, sip.BadConfig("")
	s.log = sip.Logger(s.log, "sip")
	if c.Store == nil {
		return bad("no store")
	}
	host, _, err := net.SplitHostPort(c.PBXAddr)
	if err != nil || host == "" {
		return bad("PBX address %q: want host:port", c.PBXAddr)
	}
	var ok bool
	if s.transport, ok = sip.ParseTransport(c.Transport); !ok {
		return bad("transport %q: want udp, tcp or tls", c.Transport)
	}
	s.domain = c.Domain
	if s.domain == "" {
		s.domain = host
	}
	if !sip.ValidHost(s.domain) {
		return bad("domain %q: want a host name or IP address", s.domain)
	}
	if c.Username == "" {
		c.Username = "callstate"
	}
	if !callstate.ValidSIPUser(c.Username) {
		return bad("username %q: not allowed in a SIP URI", c.Username)
	}
	for name, v := range map[string]string{"password": c.Password, "auth username": c.AuthUsername, "realm": c.Realm, "user agent": c.UserAgent} {
		if strings.ContainsAny(v, "\r\n\x00\"") {
			return bad("%s: control characters or quotes are not allowed", name)
		}
	}
	if c.AuthUsername == "" {
		c.AuthUsername = c.Username
	}
	if c.ListenAddr == "" {
		c.ListenAddr = "0.0.0.0:5060"
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return bad("listen address %q: want host:port", c.ListenAddr)
	}
	if c.ContactAddr != "" && !sip.ValidHostPort(c.ContactAddr) {
		return bad("contact address %q: want host:port", c.ContactAddr)
	}
	if c.MessageURI != "" {
		var u sipmsg.Uri
		if strings.ContainsAny(c.MessageURI, "\r\n\x00 <>\"") || sipmsg.ParseUri(c.MessageURI, &u) != nil ||
			(u.Scheme != "sip" && u.Scheme != "sips") || u.Host == "" {
			return bad("message URI %q: want a sip: URI", c.MessageURI)
		}
		s.message = &u
	}
	if c.Expires == 0 {
		c.Expires = 10 * time.Minute
	}
	if c.Expires < 10*time.Second {
		return bad("expires %s: want at least 10s", c.Expires)
	}
	if c.ReloadInterval <= 0 {
		c.ReloadInterval = DefaultReloadInterval
	}
	if c.RetryMin <= 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(5*time.Minute, c.RetryMin)
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 5 * time.Second
	}
	if c.AnswerWithin <= 0 {
		c.AnswerWithin = DefaultAnswerWithin
	}
	if c.maxEarly <= 0 {
		c.maxEarly = maxEarly
	}
	if c.SubscribeRate < 0 {
		return bad("subscribe rate %d: want 0 (the default, 500) or more", c.SubscribeRate)
	}
	if c.SubscribeRate == 0 {
		c.SubscribeRate = 500
	}
	if c.Keepalive < 0 {
		return bad("keepalive %s: want 0 (off) or more", c.Keepalive)
	}
	if c.UserAgent == "" {
		c.UserAgent = "callstate"
	}
	return nil
}

// listen opens the socket NOTIFYs arrive on and builds the UA around it.
// Over UDP, requests leave from the same socket, as a phone's do, so the
// PBX can answer the address it saw.
func (s *Subscriber) listen() error {
	c := s.cfg
	ep, err := sip.Listen(sip.EndpointConfig{
		Name: "sip", Transport: s.transport, Addr: c.ListenAddr, ContactAddr: c.ContactAddr, Towards: c.PBXAddr,
		Hostname: s.domain, UserAgent: c.UserAgent, TLSConfig: c.TLSConfig, Log: s.log,
		GrowUDPBuffer:  true,
		GrowUDPHint:    "busy extensions' NOTIFYs may be dropped: raise net.core.rmem_max (sysctl), or use SIP_TRANSPORT=tcp",
		WrapPacketConn: c.wrapPacketConn, WrapListener: c.wrapListener,
	})
	if err != nil {
		return err
	}
	scheme := "sip"
	if s.transport == "TLS" {
		scheme = "sips"
	}
	s.contact = ep.Contact(scheme, c.Username)
	opts := []sipgo.ClientOption{sipgo.WithClientLogger(s.log), sipgo.WithClientHostname(ep.ContactHost)}
	if s.transport == "UDP" {
		opts = append(opts, sipgo.WithClientConnectionAddr(ep.Local.String()))
	}
	cli, err := sipgo.NewClient(ep.UA, opts...)
	if err != nil {
		_ = ep.Close()
		return fmt.Errorf("sip: client: %w", err)
	}
	s.ua, s.srv, s.cli, s.listener = ep.UA, ep.Server, cli, ep.CloseListeners
	s.srv.OnNotify(s.onNotify)
	s.srv.OnNoRoute(s.onStray)
	s.srv.OnOptions(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		_ = tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusOK, "OK", nil))
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := ep.Serve(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("sip listener stopped", "err", err)
		}
	}()
	if s.transport == "UDP" {
		if err := ep.WaitUDP(5 * time.Second); err != nil {
			s.Close()
			return err
		}
	}
	s.log.Info("sip listening", "transport", s.transport, "addr", ep.Local.String(), "contact", s.contact.String())
	return nil
}

// Contact returns the URI the subscriber puts in its Contact header.
func (s *Subscriber) Contact() string { return s.contact.String() }

// Run watches the store's extensions until ctx is done, then un-subscribes
// every extension (Expires: 0, each within the request timeout), closes the
// socket and returns nil. It returns an error only if the first read of the
// extensions fails.
func (s *Subscriber) Run(ctx context.Context) error {
	defer s.Close()
	exts, err := s.cfg.Store.Extensions(ctx)
	if err != nil {
		return fmt.Errorf("sip: read extensions: %w", err)
	}
	s.states.start()
	// Subscriptions are stepped once the first REGISTER was tried.
	s.wg.Go(func() { s.sched.run(ctx, s.registered) })
	if s.cfg.Register {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.registerLoop(ctx)
		}()
	} else {
		close(s.registered)
	}
	if s.message != nil {
		s.wg.Go(func() { s.sendMessages(ctx) })
	}
	if s.cfg.Keepalive > 0 {
		s.wg.Go(func() { s.keepalive(ctx) })
	}
	s.sync(ctx, exts)
	t := time.NewTicker(s.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.stopAll()
			return nil
		case <-t.C:
			exts, err := s.cfg.Store.Extensions(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("sip: reading extensions failed; keeping the current ones", "err", err)
				}
				continue
			}
			s.sync(ctx, exts)
		}
	}
}

// sync starts watching extensions that are new in exts and stops (and
// un-subscribes) those no longer listed.
func (s *Subscriber) sync(ctx context.Context, exts []string) {
	want := make(map[string]bool, len(exts))
	for _, ext := range exts {
		if !callstate.ValidExtension(ext) {
			s.log.Warn("sip: ignoring extension with characters not allowed in a SIP URI", "extension", ext)
			continue
		}
		want[ext] = true
	}
	s.mu.Lock()
	fresh := 0
	for ext := range want {
		if _, ok := s.watched[ext]; !ok {
			fresh++
		}
	}
	// The first SUBSCRIBEs of many new extensions (all of them at start)
	// are spread over a window that grows with their number
	// (cfg.SubscribeRate).
	window := startWindow(fresh, s.cfg.SubscribeRate, s.expiry())
	now := time.Now()
	var stop []*subscription
	for ext, w := range s.watched {
		if !want[ext] {
			stop = append(stop, w.subs...)
			delete(s.watched, ext)
			s.log.Info("sip: extension removed; un-subscribing", "extension", ext)
		}
	}
	for ext := range want {
		if _, ok := s.watched[ext]; ok {
			continue
		}
		w := &watch{}
		w.subs = append(w.subs, s.newSubscription(ext, eventDialog))
		if s.cfg.Presence {
			w.subs = append(w.subs, s.newSubscription(ext, eventPresence))
		}
		s.watched[ext] = w
		at := now
		if window > 0 {
			at = now.Add(rand.N(window))
		}
		for _, sub := range w.subs {
			sub.mu.Lock()
			sub.resubAt = at
			sub.mu.Unlock()
			s.sched.add(sub, at)
		}
	}
	s.mu.Unlock()
	s.stopSubscriptions(stop)
}

// stopParallel bounds how many subscriptions un-subscribe at once.
const stopParallel = 256

// stopSubscriptions takes subs out of the schedule, waits for the steps
// that run to end and un-subscribes each (stopParallel at a time).
func (s *Subscriber) stopSubscriptions(subs []*subscription) {
	sem := make(chan struct{}, stopParallel)
	var wg sync.WaitGroup
	for _, sub := range subs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.sched.remove(sub)
			sub.stop()
		})
	}
	wg.Wait()
}

// stopAll stops every watch and waits until each has un-subscribed.
func (s *Subscriber) stopAll() {
	s.mu.Lock()
	var subs []*subscription
	for ext, w := range s.watched {
		subs = append(subs, w.subs...)
		delete(s.watched, ext)
	}
	s.mu.Unlock()
	s.stopSubscriptions(subs)
}

// Close releases the socket and the UA. Run calls it on its way out.
func (s *Subscriber) Close() {
	s.closeOnce.Do(func() {
		s.stopAll()
		s.states.close()
		if s.listener != nil {
			_ = s.listener()
		}
		_ = s.ua.Close()
		s.wg.Wait()
	})
}

// Stats is a snapshot of the subscriber's subscriptions.
type Stats struct {
	Watched int    // extensions watched
	Active  int    // subscriptions the PBX has granted and not ended
	Stray   uint64 // requests that belonged to no subscription (answered 481) since start
	// Subscribes counts the SUBSCRIBEs sent since start: new
	// subscriptions, refreshes and un-subscribes, each once however often
	// the transport sent it.
	Subscribes uint64
	// Opened counts the subscription dialogs opened since start: one per
	// extension and package, and one more each time a subscription was
	// lost and made again.
	Opened uint64
	// AnsweredEarly counts the NOTIFYs answered 200 before the store had
	// kept their changes, because keeping them took longer than
	// Config.AnswerWithin.
	AnsweredEarly uint64
}

// onStray answers a request of a method the subscriber does not serve:
// it belongs to no subscription, so 481, counted and not stored.
func (s *Subscriber) onStray(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	s.stray.Add(1)
	s.log.Debug("sip: request outside any subscription", "method", req.Method, "call_id", sip.CallIDOf(req))
	if req.IsAck() {
		return
	}
	if err := tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist", nil)); err != nil {
		s.log.Debug("sip: answering a stray request failed", "err", err)
	}
}

// Stats returns how many extensions are watched and subscriptions active.
func (s *Subscriber) Stats() Stats {
	subs := s.subscriptions()
	s.mu.Lock()
	st := Stats{Watched: len(s.watched), Stray: s.stray.Load(), Subscribes: s.subscribes.Load(), Opened: s.opened.Load(), AnsweredEarly: s.earlyTotal.Load()}
	s.mu.Unlock()
	// Not under s.mu: a subscription's lock may be held while a NOTIFY is
	// written to the store, and new subscriptions need s.mu meanwhile.
	for _, sub := range subs {
		if sub.isActive() {
			st.Active++
		}
	}
	return st
}

func (s *Subscriber) register(callID string, sub *subscription) {
	s.mu.Lock()
	s.byCall[callID] = sub
	s.mu.Unlock()
}

func (s *Subscriber) unregister(callID string) {
	s.mu.Lock()
	delete(s.byCall, callID)
	s.mu.Unlock()
}

// onNotify finds the subscription a NOTIFY belongs to and lets it handle
// the request; unknown subscriptions get 481.
func (s *Subscriber) onNotify(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	code, reason := sipmsg.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist"
	if n := len(req.Body()); n > sip.MaxDialogBodySize {
		s.log.Warn("sip: NOTIFY body too large; answered 413", "bytes", n, "max", sip.MaxDialogBodySize, "call_id", sip.Clip(sip.CallIDOf(req)))
		code, reason = statusTooLarge, "Request Entity Too Large"
	} else if cid := req.CallID(); cid != nil {
		if n := len(req.Body()); s.transport == "UDP" && n > udpBodyWarn {
			s.warnBigDatagram(n, req)
		}
		s.mu.Lock()
		sub := s.byCall[cid.Value()]
		s.mu.Unlock()
		if sub != nil {
			code, reason = sub.onNotify(req)
		}
	}
	if code == sipmsg.StatusCallTransactionDoesNotExists {
		s.stray.Add(1)
		s.log.Debug("sip: NOTIFY for an unknown subscription", "call_id", sip.CallIDOf(req), "from", req.From())
	}
	if err := tx.Respond(sipmsg.NewResponseFromRequest(req, code, reason, nil)); err != nil {
		s.log.Debug("sip: answering NOTIFY failed", "err", err)
	}
	// The transaction, request and response, is let go at once: a repeat
	// of the NOTIFY is answered by its subscription (see repeated), and
	// one for no subscription gets 481 again.
	tx.Terminate()
}

// maxEarly bounds the NOTIFYs answered before their changes were kept
// whose Keep has not returned yet (see subscription.onNotify): half a
// minute of NOTIFYs at 25 calls/s (TestBusyHour); beyond, answers wait for the disk again.
const maxEarly = 4096

// answerEarly reports whether a NOTIFY whose Keep takes longer than
// AnswerWithin is answered before it returns: yes, and counted, while
// fewer than maxEarly are on their way (the caller then calls
// early.Add(-1) when its Keep returns). It warns at most once a minute
// that the store (the spool's disk) is slower than the PBX can wait.
func (s *Subscriber) answerEarly(events int) bool {
	if s.early.Add(1) > int64(s.cfg.maxEarly) {
		s.early.Add(-1)
		return false
	}
	n := s.earlyTotal.Add(1)
	now := time.Now().UnixNano()
	last := s.earlyWarn.Load()
	if last != 0 && time.Duration(now-last) < time.Minute || !s.earlyWarn.CompareAndSwap(last, now) {
		return true
	}
	s.log.Warn("sip: keeping a NOTIFY's dialog changes takes longer than SIP_NOTIFY_ANSWER_WITHIN; answered 200 before they were on disk, so that the PBX keeps the subscription (is the machine or the spool's disk overloaded?)",
		"answer_within", s.cfg.AnswerWithin, "events", events, "answered_early_total", n, "on_their_way", s.early.Load())
	return true
}

// udpBodyWarn is the NOTIFY body size over UDP from which the subscriber
// warns: a datagram carries at most 65,507 bytes, and a PBX cannot send a
// larger document over UDP at all, so the extension's lamp stops
// following its calls (Kamailio only logs that the send failed).
const udpBodyWarn = 48 << 10

// warnBigDatagram says, at most once every ten minutes, that dialog
// documents are close to what UDP can carry.
func (s *Subscriber) warnBigDatagram(n int, req *sipmsg.Request) {
	now := time.Now().UnixNano()
	last := s.bigWarned.Load()
	if last != 0 && time.Duration(now-last) < 10*time.Minute || !s.bigWarned.CompareAndSwap(last, now) {
		return
	}
	ext := ""
	if f := req.From(); f != nil {
		ext = f.Address.User
	}
	s.log.Warn("sip: a NOTIFY body over UDP is close to the 64 KB a datagram carries; the PBX cannot send this extension's larger documents over UDP, and its lamp would stop following its calls: set SIP_TRANSPORT=tcp",
		"bytes", n, "extension", sip.Clip(ext))
}

// statusTooLarge is 413 Request Entity Too Large (RFC 3261 section
// 21.4.11).
const statusTooLarge = 413
