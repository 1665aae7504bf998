package webpush

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/callstate/callstate/webhook"
)

// Urgency values (RFC 8030 section 5.3).
const (
	UrgencyHigh   = "high"
	UrgencyNormal = "normal"
)

// Message is one push to one subscription.
type Message struct {
	Endpoint string // the subscription's push resource
	P256dh   []byte // the subscription's public key (keys.p256dh)
	Auth     []byte // its authentication secret (keys.auth)
	Payload  []byte // plaintext, at most MaxPayload bytes
	TTL      time.Duration
	Urgency  string
	// Topic, if set, lets the push service replace a message of the same
	// topic not yet delivered (RFC 8030 section 5.4): at most 32
	// characters of the base64url alphabet.
	Topic string
}

// Result is the push service's answer.
type Result struct {
	Status int // the HTTP status; 0 when none came
	// Gone: the subscription no longer exists (404 or 410): delete it.
	Gone bool
	// RetryAfter: the push service asked to wait (429, 503); the client
	// sends nothing to its origin until then.
	RetryAfter time.Duration
}

// Errors of Send.
var (
	ErrRejected    = errors.New("webpush: push service refused the message")
	ErrThrottled   = errors.New("webpush: push service asked to wait (Retry-After)")
	ErrNotHTTPS    = errors.New("webpush: push endpoint must be an https URL (WAKE_ALLOW_HTTP lifts this)")
	ErrPrivate     = errors.New("webpush: push endpoint resolves to a private, loopback or link-local address (WAKE_ALLOW_HTTP lifts this)")
	ErrBadTopic    = errors.New("webpush: topic must be 1 to 32 characters of the base64url alphabet")
	ErrBadEndpoint = errors.New("webpush: bad push endpoint")
)

// Options tune a Client.
type Options struct {
	// AllowHTTP lets endpoints be http and private addresses: for tests
	// with a push service on localhost.
	AllowHTTP bool
	Timeout   time.Duration    // one request; 0: 5 s
	Now       func() time.Time // nil: time.Now
	// Throttle shares the waits push services ask for with the other
	// senders (the service's other instances); nil: this Client's alone.
	Throttle Throttle
}

// throttleTimeout bounds a look at, or a write to, the Throttle: a push
// must not wait on a slow database.
const throttleTimeout = 250 * time.Millisecond

// Throttle keeps, per push service origin, the time before which nothing
// is sent there, as a 429 or 503 with Retry-After asked. The Client keeps
// the waits it was told in memory besides, and sends when the Throttle
// cannot be read: a wait missed costs one refused push, a push held back
// by a broken database could cost a call.
type Throttle interface {
	PushesHeldUntil(ctx context.Context, origin string) (time.Time, error)
	HoldPushes(ctx context.Context, origin string, until time.Time) error
}

// Client sends messages, signed by one VAPID identity.
type Client struct {
	o      Options
	vapid  *VAPID
	client *http.Client

	mu      sync.Mutex
	waitFor map[string]time.Time // origin → no sends before
}

// New returns a Client that signs with v.
func New(v *VAPID, o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	dialer := &net.Dialer{Timeout: o.Timeout, Control: guard(o.AllowHTTP)}
	tr := &http.Transport{
		Proxy:                 nil, // the address connected to is the one checked
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Client{o: o, vapid: v, waitFor: map[string]time.Time{},
		client: &http.Client{Transport: tr, Timeout: o.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// VAPID is the identity the client signs with.
func (c *Client) VAPID() *VAPID { return c.vapid }

// guard refuses, as each connection is made (after name resolution),
// addresses that are not public unicast, as the webhook sender does.
func guard(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if allowPrivate {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil || !webhook.Public(ap.Addr()) {
			return fmt.Errorf("%w: %s", ErrPrivate, address)
		}
		return nil
	}
}

// CheckEndpoint reports whether endpoint may be pushed to: an absolute
// https URL (http too with allowHTTP) of at most 2048 bytes, whose host,
// if an address, is public (names are checked as they are connected to).
func CheckEndpoint(endpoint string, allowHTTP bool) error {
	if len(endpoint) > 2048 {
		return fmt.Errorf("%w: longer than 2048 bytes", ErrBadEndpoint)
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%w: not an absolute URL without credentials or fragment", ErrBadEndpoint)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && allowHTTP:
	default:
		return ErrNotHTTPS
	}
	if allowHTTP {
		return nil
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil && !webhook.Public(a) {
		return ErrPrivate
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return ErrPrivate
	}
	return nil
}

// validTopic: RFC 8030 section 5.4.
func validTopic(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Send encrypts m's payload and posts it to its endpoint. It returns the
// push service's answer: a 201 (or other 2xx) is success; 404 and 410
// report the subscription gone (Result.Gone) with ErrRejected; 429 and 503
// with Retry-After make the client hold back sends to that origin for that
// long (ErrThrottled, also for sends in that time). Any error says why.
func (c *Client) Send(ctx context.Context, m Message) (Result, error) {
	if m.Topic != "" && !validTopic(m.Topic) {
		return Result{}, ErrBadTopic
	}
	if err := CheckEndpoint(m.Endpoint, c.o.AllowHTTP); err != nil {
		return Result{}, err
	}
	u, _ := url.Parse(m.Endpoint) // checked
	origin := u.Scheme + "://" + u.Host
	now := c.o.Now()
	c.mu.Lock()
	until, wait := c.waitFor[origin]
	if wait && !now.Before(until) {
		delete(c.waitFor, origin)
		wait = false
	}
	c.mu.Unlock()
	if !wait && c.o.Throttle != nil {
		tctx, cancel := context.WithTimeout(ctx, throttleTimeout)
		t, err := c.o.Throttle.PushesHeldUntil(tctx, origin)
		cancel()
		if err == nil && now.Before(t) {
			until, wait = t, true
		}
	}
	if wait {
		return Result{RetryAfter: until.Sub(now)}, fmt.Errorf("%w: %s until %s", ErrThrottled, origin, until.Format(time.RFC3339))
	}
	body, err := Encrypt(m.Payload, m.P256dh, m.Auth)
	if err != nil {
		return Result{}, err
	}
	auth, err := c.vapid.Authorization(m.Endpoint, now)
	if err != nil {
		return Result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.Endpoint, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrBadEndpoint, err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Encoding", "aes128gcm")
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("TTL", strconv.Itoa(int(m.TTL/time.Second)))
	if m.Urgency != "" {
		req.Header.Set("Urgency", m.Urgency)
	}
	if m.Topic != "" {
		req.Header.Set("Topic", m.Topic)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if errors.Is(err, ErrPrivate) {
			return Result{}, ErrPrivate
		}
		return Result{}, fmt.Errorf("webpush: post: %w", err)
	}
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	r := Result{Status: resp.StatusCode}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return r, nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		r.Gone = true
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		if d, ok := ParseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
			r.RetryAfter = d
			c.mu.Lock()
			c.waitFor[origin] = now.Add(d)
			c.mu.Unlock()
			if c.o.Throttle != nil {
				tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), throttleTimeout)
				_ = c.o.Throttle.HoldPushes(tctx, origin, now.Add(d)) // kept in memory besides
				cancel()
			}
			return r, fmt.Errorf("%w: %s answered %d, Retry-After %s", ErrThrottled, origin, resp.StatusCode, d)
		}
	}
	return r, fmt.Errorf("%w: %s answered %d: %s", ErrRejected, origin, resp.StatusCode, strings.TrimSpace(string(text)))
}

// maxRetryAfter bounds a Retry-After honoured: a push service's hour-long
// ask should not silence calls for a day.
const maxRetryAfter = time.Hour

// ParseRetryAfter reads a Retry-After header (RFC 9110 section 10.2.3):
// delay-seconds or an HTTP-date, as a wait from now, at most an hour. ok
// is false for anything else.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return min(time.Duration(n)*time.Second, maxRetryAfter), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxRetryAfter), true
}
