package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/callstate/callstate"
)

// DefaultSchedule is the Standard Webhooks schedule: a first try at once,
// then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (a day and more
// in all). Each entry is the wait before a try.
var DefaultSchedule = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// Store is what the sender needs from a store.
type Store interface {
	// MakeDeliveries turns the feed's new events into deliveries with render.
	MakeDeliveries(ctx context.Context, render func(callstate.WebhookEndpoint, callstate.FeedEvent) (callstate.WebhookDelivery, bool)) (int, error)
	// ClaimDeliveries takes and leases due deliveries.
	ClaimDeliveries(ctx context.Context, limit int, lease time.Duration) ([]callstate.ClaimedDelivery, error)
	// FinishDeliveries records the tries' results.
	FinishDeliveries(ctx context.Context, ds []callstate.WebhookDelivery, rs []callstate.WebhookResult) error
}

// Options tune a Sender. The zero value is usable.
type Options struct {
	Schedule     []time.Duration // waits before each try; nil: DefaultSchedule
	Timeout      time.Duration   // one try; 0: 15 s
	AllowPrivate bool            // allow private, loopback and link-local targets
	Workers      int             // deliveries one round takes and sends at once; 0: 64
	Rounds       int             // rounds in flight at once; 0: 4
	Poll         time.Duration   // how often due deliveries are looked for when not told; 0: 250 ms
	Renderer     Renderer
	Logger       *slog.Logger
	Now          func() time.Time // nil: time.Now
}

// Sender makes deliveries from the feed and sends them.
type Sender struct {
	st     Store
	o      Options
	log    *slog.Logger
	client *http.Client
	wake   chan struct{}
	send   chan struct{}

	mu    sync.Mutex
	stats map[int64]*EndpointStats
}

// EndpointStats count one endpoint's tries on this instance.
type EndpointStats struct {
	Delivered, Failed, Disabled atomic.Int64
}

// ErrPrivateTarget is the error of a connection refused because its
// address is private, loopback or link-local.
var ErrPrivateTarget = errors.New("webhook: private, loopback or link-local address refused (EVENTS_WEBHOOK_ALLOW_PRIVATE)")

// New returns a Sender on st. Call Run.
func New(st Store, o Options) *Sender {
	if o.Schedule == nil {
		o.Schedule = DefaultSchedule
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Workers == 0 {
		o.Workers = 64
	}
	if o.Rounds == 0 {
		o.Rounds = 4
	}
	if o.Poll == 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	dialer := &net.Dialer{Timeout: o.Timeout, Control: guard(o.AllowPrivate)}
	tr := &http.Transport{
		Proxy:                 nil, // the address connected to is the one checked
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		MaxIdleConnsPerHost:   o.Workers * o.Rounds,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Sender{st: st, o: o, log: log, wake: make(chan struct{}, 1), send: make(chan struct{}, 1),
		stats: map[int64]*EndpointStats{},
		client: &http.Client{Transport: tr, Timeout: o.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// guard refuses, as each connection is made (after any name was resolved,
// so a name that resolves again to a private address is caught too),
// addresses that are not public unicast.
func guard(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if allowPrivate {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: %s", ErrPrivateTarget, address)
		}
		if !Public(ap.Addr()) {
			return fmt.Errorf("%w: %s", ErrPrivateTarget, ap.Addr())
		}
		return nil
	}
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Public reports whether a is a public unicast address: not private,
// loopback, link-local, unspecified, multicast or shared (CGNAT).
func Public(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() && !a.IsLinkLocalUnicast() && !cgnat.Contains(a)
}

// Notify tells the sender that the feed grew. It never blocks.
func (s *Sender) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Sent tells the sender that deliveries were queued (a test message, a
// replay, an endpoint enabled). It never blocks.
func (s *Sender) Sent() {
	select {
	case s.send <- struct{}{}:
	default:
	}
	s.Notify()
}

// Stats returns the counts of endpoint id on this instance.
func (s *Sender) Stats(id int64) *EndpointStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats[id]
	if st == nil {
		st = &EndpointStats{}
		s.stats[id] = st
	}
	return st
}

// Endpoints returns the ids of the endpoints counted so far.
func (s *Sender) Endpoints() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int64, 0, len(s.stats))
	for id := range s.stats {
		ids = append(ids, id)
	}
	return ids
}

// Run makes and sends deliveries until ctx is done; then it returns nil.
func (s *Sender) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.makeLoop(ctx) })
	// Several rounds at once, so that one slow endpoint's round (up to the
	// timeout) does not hold the others back, and under load the database's
	// work of one round overlaps the sending of another. A leased delivery
	// is not due, so rounds never take the same one.
	for range s.o.Rounds {
		wg.Go(func() { s.sendLoop(ctx) })
	}
	wg.Wait()
	return nil
}

// makeLoop makes deliveries from the feed when told and every second.
func (s *Sender) makeLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
		n, err := s.st.MakeDeliveries(ctx, s.o.Renderer.Render)
		if err != nil && ctx.Err() == nil && time.Since(warned) > time.Minute {
			warned = time.Now()
			s.log.Warn("webhooks: making deliveries failed; trying again", "err", err)
		}
		if n > 0 {
			select {
			case s.send <- struct{}{}:
			default:
			}
		}
	}
}

// sendLoop takes due deliveries, sends them at once and records the
// results, round after round; it waits for new deliveries or Poll when
// there were none.
func (s *Sender) sendLoop(ctx context.Context) {
	t := time.NewTicker(s.o.Poll)
	defer t.Stop()
	var warned time.Time
	// A try ends within Timeout; past the lease, another instance may send
	// the delivery again (this one died).
	lease := s.o.Timeout + 5*time.Second
	for {
		cs, err := s.st.ClaimDeliveries(ctx, s.o.Workers, lease)
		if err != nil && ctx.Err() == nil && time.Since(warned) > time.Minute {
			warned = time.Now()
			s.log.Warn("webhooks: taking deliveries failed; trying again", "err", err)
		}
		if len(cs) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.send:
			case <-t.C:
			}
			continue
		}
		if len(cs) == s.o.Workers {
			select { // more wait: wake another round
			case s.send <- struct{}{}:
			default:
			}
		}
		ds := make([]callstate.WebhookDelivery, len(cs))
		rs := make([]callstate.WebhookResult, len(cs))
		var wg sync.WaitGroup
		for i, c := range cs {
			ds[i] = c.Delivery
			wg.Go(func() { rs[i] = s.try(ctx, c) })
		}
		wg.Wait()
		if ctx.Err() != nil {
			return // the leases run out; another start sends them again
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := s.st.FinishDeliveries(fctx, ds, rs); err != nil {
			s.log.Warn("webhooks: recording tries failed; they are sent again when their lease ends", "err", err)
		}
		cancel()
	}
}

// try sends one delivery once and says what became of it.
func (s *Sender) try(ctx context.Context, c callstate.ClaimedDelivery) callstate.WebhookResult {
	d, ep := c.Delivery, c.Endpoint
	now := s.o.Now()
	st := s.Stats(ep.ID)
	status, retryAfter, err := s.post(ctx, ep, d, now)
	took := s.o.Now().Sub(now)
	r := callstate.WebhookResult{Attempt: callstate.WebhookAttempt{DeliveryID: d.ID, At: now, Status: status, Duration: took}}
	if err == nil && status/100 == 2 {
		r.Delivered = true
		st.Delivered.Add(1)
		return r
	}
	st.Failed.Add(1)
	switch {
	case err != nil:
		r.Attempt.Error = err.Error()
	default:
		r.Attempt.Error = "answered " + strconv.Itoa(status)
	}
	if status == http.StatusGone {
		r.Disable = "the endpoint answered 410 Gone"
		r.NextAt = now // waits, enabled again, to go at once
		st.Disabled.Add(1)
		s.log.Warn("webhooks: endpoint disabled: it answered 410 Gone; enable it again through the API", "endpoint", ep.ID, "url", ep.URL)
		return r
	}
	if d.Attempts >= len(s.o.Schedule) {
		r.Disable = fmt.Sprintf("every try of a message failed over %s; last: %s", total(s.o.Schedule), r.Attempt.Error)
		st.Disabled.Add(1)
		s.log.Warn("webhooks: endpoint disabled: a message failed on every try of the schedule; enable it again through the API",
			"endpoint", ep.ID, "url", ep.URL, "msg_id", d.MsgID, "err", r.Attempt.Error)
		return r // NextAt zero: failed
	}
	wait := s.o.Schedule[d.Attempts]
	if (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && retryAfter > wait {
		wait = min(retryAfter, 24*time.Hour)
	}
	// From the answer, not from the request: Retry-After counts from the
	// response, and a slow receiver would otherwise be tried again early.
	r.NextAt = now.Add(took + wait)
	return r
}

func total(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

// post sends d to ep, signed, and returns the status and Retry-After.
func (s *Sender) post(ctx context.Context, ep callstate.WebhookEndpoint, d callstate.WebhookDelivery, now time.Time) (int, time.Duration, error) {
	var keys [][]byte
	for _, sec := range ep.Secrets {
		k, err := ParseSecret(sec)
		if err != nil {
			return 0, 0, fmt.Errorf("endpoint %d: %w", ep.ID, err)
		}
		keys = append(keys, k)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(d.Body))
	if err != nil {
		return 0, 0, fmt.Errorf("endpoint %d: %w", ep.ID, err)
	}
	req.Header.Set("Content-Type", d.ContentType)
	req.Header.Set("User-Agent", "callstate-webhooks")
	for k, v := range Headers(keys, d.MsgID, now, d.Body) {
		req.Header.Set(k, v)
	}
	res, err := s.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	return res.StatusCode, retryAfter(res.Header.Get("Retry-After"), now), nil
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(min(n, 7*24*3600)) * time.Second // a week at most: no overflow
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
