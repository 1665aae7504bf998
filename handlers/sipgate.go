package handlers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/xmlresponse"
)

const sourceSipgate = "sipgate"

// SipgatePath is the path of the sipgate.io webhook endpoint, below the
// public URL. Every event is posted here: the console's incoming and
// outgoing URLs, and the onAnswer, onHangup and onData URLs that newCall's
// response subscribes to.
const SipgatePath = "/webhooks/sipgate"

// DefaultMaxBodyBytes bounds a webhook body when SipgateOptions leaves it 0.
const DefaultMaxBodyBytes = 64 << 10

// SipgateOptions configure the sipgate.io webhook endpoint.
type SipgateOptions struct {
	// PublicURL is where sipgate reaches this service, e.g.
	// https://callstate.example.com; SipgatePath is appended to it.
	PublicURL string
	// Verifier checks X-Sipgate-Signature. Nil turns the check off.
	Verifier *SignatureVerifier
	// MaxBodyBytes bounds a request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// NewCallAction is what newCall answers with besides the onAnswer and
	// onHangup subscriptions; nil for none. A Gather without OnData gets
	// the webhook URL.
	NewCallAction xmlresponse.Action
	// WriteTimeout bounds the database write of one event; 0 means 2s.
	// newCall is answered even when the write fails or times out, so that
	// sipgate (which gives up after about 10 s) still gets its XML.
	WriteTimeout time.Duration
	// AllowedNetworks, if any, are the only source networks accepted
	// (the client address as TrustedProxies let it be known); others get 403.
	AllowedNetworks []*net.IPNet
	// PathSecret, if set, is a path segment every webhook URL must end
	// with (/webhooks/sipgate/<secret>): for setups where a proxy re-encodes
	// bodies and signatures cannot be checked. Compared in constant time.
	PathSecret string
	// MaxInflight bounds events handled at once (0 means 512); a quarter
	// more are kept for newCall. AdmissionWait is how long an event waits
	// for a slot before it is answered 503 (0 means 1s).
	MaxInflight   int
	AdmissionWait time.Duration

	// Now is the clock that stamps each event's receive time; nil means
	// time.Now.
	Now func() time.Time

	// Routing, if set, decides newCall's answer per call by rules; with
	// no rule matching, NewCallAction applies. Menus' dtmf are answered
	// by it too.
	Routing *RoutingOptions

	// Wake, if set, wakes the devices of an incoming newCall's users and
	// holds its answer until one reports ready or WakeWait passes
	// (docs/wake.md). Only a call that rings as usual is held: no routing
	// rule answered it and NewCallAction is none.
	Wake     Waker
	WakeWait time.Duration
}

// Waker wakes the devices of a newCall's users.
type Waker interface {
	// Wake pushes to the devices of c's users, unless none has a device
	// or another leg of c's journey was pushed before. It returns nil
	// when there is nothing to wait for, decided in memory (no I/O) for
	// users without devices; else a channel that yields once: HoldReady
	// when a device reported ready, HoldNone when none can (the push
	// found no device or failed). Call done when no longer waiting.
	Wake(ctx context.Context, c WakeCall) (ready <-chan string, done func())
}

// WakeCall is the newCall a Waker pushes.
type WakeCall struct {
	CallID, JourneyID string
	From, To          string
	UserIDs, Users    []string // userId[] and user[], as sipgate sent them
	At                time.Time
}

// WebhookURL returns the URL to paste into the sipgate console, with the
// path secret if there is one.
func (o SipgateOptions) WebhookURL() string {
	u := strings.TrimSuffix(o.PublicURL, "/") + SipgatePath
	if o.PathSecret != "" {
		u += "/" + o.PathSecret
	}
	return u
}

// RedactedWebhookURL is WebhookURL with the path secret masked, for logs.
func (o SipgateOptions) RedactedWebhookURL() string {
	u := strings.TrimSuffix(o.PublicURL, "/") + SipgatePath
	if o.PathSecret != "" {
		u += "/<SIPGATE_PATH_SECRET>"
	}
	return u
}

type sipgateHandler struct {
	store        EventStore
	log          *slog.Logger
	metrics      *metrics.Metrics
	allowed      []*net.IPNet
	secret       string
	admit        *admission
	verifier     *SignatureVerifier
	maxBody      int64
	writeTimeout time.Duration
	newCallXML   []byte // newCall's answer, built once
	dtmfXML      []byte // dtmf's answer: the subscriptions again, no action
	now          func() time.Time
	hook         string          // the webhook's URL, for onAnswer, onHangup and onData
	routing      *RoutingOptions // nil: no routing
	answers      atomic.Pointer[answerCache]
	wake         Waker         // nil: no devices are woken
	wakeWait     time.Duration // how long a held answer waits
	rings        bool          // newCall's default answer lets the call ring as usual
}

func newSipgateHandler(o SipgateOptions, store EventStore, log *slog.Logger, m *metrics.Metrics) (*sipgateHandler, error) {
	u, err := url.Parse(o.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("handlers: public URL %q must be an absolute http(s) URL", o.PublicURL)
	}
	hook := o.WebhookURL()
	action := o.NewCallAction
	if g, ok := action.(xmlresponse.Gather); ok && g.OnData == "" {
		g.OnData = hook
		action = g
	}
	newCall, err := xmlresponse.Response{OnAnswer: hook, OnHangup: hook, Action: action}.Marshal()
	if err != nil {
		return nil, fmt.Errorf("handlers: newCall response: %w", err)
	}
	dtmf, err := xmlresponse.Response{OnHangup: hook}.Marshal()
	if err != nil {
		return nil, fmt.Errorf("handlers: dtmf response: %w", err)
	}
	if strings.ContainsAny(o.PathSecret, "/?#%") {
		return nil, errors.New("handlers: the path secret must not contain / ? # or %")
	}
	wait := o.AdmissionWait
	if wait <= 0 {
		wait = time.Second
	}
	h := &sipgateHandler{
		store: store, log: log, metrics: m, allowed: o.AllowedNetworks, secret: o.PathSecret,
		admit: newAdmission(o.MaxInflight, wait), verifier: o.Verifier,
		maxBody: o.MaxBodyBytes, writeTimeout: o.WriteTimeout,
		newCallXML: newCall, dtmfXML: dtmf, now: o.Now,
		hook: hook, routing: o.Routing,
		wake: o.Wake, wakeWait: o.WakeWait, rings: o.NewCallAction == nil,
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	if h.writeTimeout <= 0 {
		h.writeTimeout = 2 * time.Second
	}
	return h, nil
}

// handle takes one sipgate.io push event. In order: path secret (404),
// source network (403), content type (415), body size (413), signature
// (401/403), form (400), capacity (503); then the event is stored and
// answered. A repeated event is answered as the first was and changes
// nothing.
func (h *sipgateHandler) handle(c echo.Context) error {
	req := c.Request()
	if h.secret != "" && !secretMatches(h.secret, c.Param("secret")) {
		return echo.NewHTTPError(http.StatusNotFound, "not found")
	}
	if !allowedFrom(h.allowed, c.RealIP()) {
		return echo.NewHTTPError(http.StatusForbidden, "source address not allowed")
	}
	if err := checkFormContentType(req.Header.Get(echo.HeaderContentType)); err != nil {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, err.Error())
	}
	body, err := readBody(c.Response(), req, h.maxBody)
	if err != nil {
		return err
	}
	if h.verifier != nil {
		if err := h.verifier.Verify(body, req.Header.Get("X-Sipgate-Signature")); err != nil {
			code := http.StatusForbidden
			if errors.Is(err, ErrSignatureMissing) {
				code = http.StatusUnauthorized
			}
			return echo.NewHTTPError(code, err.Error())
		}
	}
	form, err := parseSipgateForm(body)
	if err != nil {
		h.metrics.Event(sourceSipgate, "", metrics.OutcomeRejected)
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	c.Set(ctxEvent, form.Event)
	c.Set(ctxCallID, form.CallID)
	if err := c.Validate(&form); err != nil {
		h.metrics.Event(sourceSipgate, eventLabel(form.Event), metrics.OutcomeRejected)
		return err
	}

	now := h.now()
	newCallXML := h.newCallXML
	var menuXML []byte  // a menu's answer to its dtmf
	var routedBy string // the rule that answered newCall
	switch form.Event {
	case eventNewCall:
		// Decided in memory before anything is stored: the answer goes
		// out whatever the database does.
		if rr := h.route(req.Context(), form, now); rr.body != nil {
			newCallXML, routedBy = rr.body, rr.rule
		}
	case eventDTMF:
		menuXML, _ = h.routeMenu(req.Context(), c.QueryParams(), form, now)
	}

	release, ok := h.admit.acquire(req.Context(), form.Event == eventNewCall)
	if !ok {
		if form.Event == eventNewCall {
			h.metrics.Event(sourceSipgate, form.Event, metrics.OutcomeLost)
			h.log.Error("overloaded: newCall lost, answered all the same so that its later events come", "call_id", form.CallID)
			return c.Blob(http.StatusOK, xmlresponse.ContentType, newCallXML)
		}
		h.metrics.Event(sourceSipgate, form.Event, metrics.OutcomeShed)
		return overloaded(c)
	}
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	h.metrics.Inflight("webhook", 1)
	defer h.metrics.Inflight("webhook", -1)

	// A call that rings as usual for users with devices: push now, while
	// the event is stored, and hold the answer below.
	var wake <-chan string
	if form.Event == eventNewCall && h.wake != nil && h.rings && routedBy == "" && form.Direction != "out" {
		var done func()
		wake, done = h.wake.Wake(req.Context(), WakeCall{
			CallID: form.CallID, JourneyID: cmp.Or(form.OrigCallID, form.CallID), From: form.From, To: form.To,
			UserIDs: form.UserIDs, Users: form.Users, At: now,
		})
		if done != nil {
			defer done()
		}
	}

	ev := form.event(body, now)
	ev.Update.Rule = routedBy
	ctx, cancel := context.WithTimeout(req.Context(), h.writeTimeout)
	defer cancel()
	applied, err := h.store.Apply(ctx, ev)
	switch {
	case errors.Is(err, callstate.ErrInvalidEvent):
		h.metrics.Event(sourceSipgate, form.Event, metrics.OutcomeRejected)
		return &echo.HTTPError{Code: http.StatusBadRequest, Message: "event refused: data the database cannot store", Internal: err}
	case err != nil && (form.Event == eventNewCall || menuXML != nil):
		// The call goes on with or without us: answer so that sipgate
		// still sends answer and hangup, which make the row without
		// newCall's parties.
		h.metrics.Event(sourceSipgate, form.Event, metrics.OutcomeLost)
		h.log.Error(form.Event+" lost: neither the database nor the spool could keep it; answered all the same so that the call goes on",
			"call_id", form.CallID, "err", err)
	case err != nil:
		h.metrics.Event(sourceSipgate, form.Event, metrics.OutcomeFailed)
		c.Response().Header().Set("Retry-After", "5")
		return &echo.HTTPError{Code: http.StatusServiceUnavailable, Message: "event not stored, try again later", Internal: err}
	case applied:
		h.metrics.Event(sourceSipgate, form.Event, metrics.OutcomeApplied)
	default:
		h.metrics.Event(sourceSipgate, form.Event, metrics.OutcomeDuplicate)
	}

	switch form.Event {
	case eventNewCall:
		if wake != nil {
			// The slot is not needed to wait: others may have it.
			release()
			released = true
			h.hold(req.Context(), form.CallID, wake)
		}
		return c.Blob(http.StatusOK, xmlresponse.ContentType, newCallXML)
	case eventDTMF:
		if menuXML != nil {
			return c.Blob(http.StatusOK, xmlresponse.ContentType, menuXML)
		}
		return c.Blob(http.StatusOK, xmlresponse.ContentType, h.dtmfXML)
	default:
		return c.NoContent(http.StatusOK)
	}
}

// hold waits for a device's ready (or that none can come) at most
// wakeWait, and counts how the hold ended.
func (h *sipgateHandler) hold(ctx context.Context, callID string, wake <-chan string) {
	t := time.NewTimer(h.wakeWait)
	defer t.Stop()
	select {
	case outcome := <-wake:
		h.metrics.WakeHold(outcome)
	case <-t.C:
		h.metrics.WakeHold(metrics.HoldTimeout)
		h.log.Info("wake: no device ready in time; newCall answered", "call_id", callID, "waited", h.wakeWait)
	case <-ctx.Done():
		h.metrics.WakeHold(metrics.HoldGone)
	}
}

// readBody reads the request body up to limit bytes. It answers 413 for a
// larger body (by Content-Length before reading when it is given) and 400
// for a body that breaks off.
func readBody(w http.ResponseWriter, req *http.Request, limit int64) ([]byte, error) {
	if req.ContentLength > limit {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body of %d bytes is over the limit of %d", req.ContentLength, limit))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, limit))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body is over the limit of %d bytes", limit))
	case err != nil:
		return nil, echo.NewHTTPError(http.StatusBadRequest, "could not read body").SetInternal(err)
	case len(body) == 0:
		return nil, echo.NewHTTPError(http.StatusBadRequest, "empty body")
	}
	return body, nil
}
