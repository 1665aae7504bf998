package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/routing"
	"github.com/callstate/callstate/xmlresponse"
)

// LampView is the live view of the lamps routing rules look at. It is kept
// in memory and up to date by its owner, so that reading it costs no
// database round trip.
type LampView interface {
	// Lamps returns every lamp known now: a PBX extension ("100"), a
	// sipgate user id ("w0"), a user's lower-case name, and "sip/100" and
	// "sipgate/w0", each to its lamp (idle, ringing, busy, hold,
	// unavailable). The map is shared and must not be changed.
	Lamps(ctx context.Context) map[string]string
}

// RoutingOptions turn newCall's answer into a decision per call, by rules
// (see the routing package and docs/routing.md).
type RoutingOptions struct {
	// Rules returns the rules in force; nil (or a nil function) routes
	// nothing and every newCall gets SipgateOptions.NewCallAction. It is
	// called for each newCall, so that a reload takes effect at once.
	Rules func() *routing.Rules
	// Lamps is the live view of the lamps; nil: every lamp is unknown
	// (unavailable).
	Lamps LampView
	// Phonebook gives the caller's contact and groups; nil: no caller is
	// a contact.
	Phonebook *Phonebook
	// Secret signs the menu state in a Gather's onData URL. Every
	// instance needs the same one; a menu's dtmf with a signature it did
	// not make gets the default answer.
	Secret []byte
	// Now is the clock rules see; nil means the event's receive time.
	Now func() time.Time
}

// routeResult is one routing decision with its answer.
type routeResult struct {
	rule string // "" when no rule matched
	body []byte // the XML; nil: the default answer
}

// route decides newCall's answer for a validated form. It never fails:
// when the rules give no valid answer (or panic) the default answer goes
// out, with a log line and a metric.
func (h *sipgateHandler) route(ctx context.Context, f sipgateForm, at time.Time) (res routeResult) {
	o := h.routing
	if o == nil || o.Rules == nil {
		return routeResult{}
	}
	rules := o.Rules()
	if rules == nil {
		return routeResult{}
	}
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("routing: evaluation failed; the default answer went out", "call_id", f.CallID, "panic", fmt.Sprint(p))
			h.metrics.RouteFailed(metrics.RouteFailEvaluation)
			res = routeResult{}
		}
	}()
	d := rules.Evaluate(h.routeCall(f, at), h.routeEnv(ctx))
	if !d.Matched {
		h.metrics.Routed("")
		return routeResult{}
	}
	body, err := h.answerFor(rules, f.CallID, d)
	if err != nil {
		h.log.Error("routing: the rule's answer is not valid for sipgate; the default answer went out",
			"call_id", f.CallID, "rule", d.Rule, "err", err)
		h.metrics.RouteFailed(metrics.RouteFailEvaluation)
		return routeResult{}
	}
	h.metrics.Routed(d.Rule)
	h.log.Debug("routed", "call_id", f.CallID, "rule", d.Rule, "action", d.Action.Kind())
	return routeResult{rule: d.Rule, body: body}
}

// routeMenu answers a menu's dtmf: the rules of the menu named in the
// onData URL, with the digits pressed. ok is false when the request is no
// menu's (no menu parameter); a menu's with a bad signature, or of a menu
// the rules no longer have, gets the plain dtmf answer with a log line and
// a metric.
func (h *sipgateHandler) routeMenu(ctx context.Context, q url.Values, f sipgateForm, at time.Time) (body []byte, ok bool) {
	menu := q.Get(routing.MenuParam)
	if menu == "" || h.routing == nil {
		return nil, false
	}
	if !routing.VerifyMenu(h.routing.Secret, f.CallID, menu, q.Get(routing.SigParam)) {
		h.log.Warn("routing: a dtmf for a menu whose signature does not hold (another ROUTING_SECRET, or not ours); plain answer",
			"call_id", f.CallID)
		h.metrics.RouteFailed(metrics.RouteFailSignature)
		return nil, false
	}
	var rules *routing.Rules
	if h.routing.Rules != nil {
		rules = h.routing.Rules()
	}
	defer func() {
		if p := recover(); p != nil {
			h.log.Error("routing: menu evaluation failed; plain answer", "call_id", f.CallID, "menu", menu, "panic", fmt.Sprint(p))
			h.metrics.RouteFailed(metrics.RouteFailEvaluation)
			body, ok = nil, false
		}
	}()
	d, found := rules.EvaluateMenu(menu, h.routeCall(f, at), h.routeEnv(ctx))
	switch {
	case !found:
		h.log.Warn("routing: a dtmf for a menu the rules no longer have; plain answer", "call_id", f.CallID, "menu", menu)
		h.metrics.RouteFailed(metrics.RouteFailMenu)
		return nil, false
	case !d.Matched:
		h.metrics.Routed("")
		return nil, false
	}
	b, err := h.answerFor(rules, f.CallID, d)
	if err != nil {
		h.log.Error("routing: the menu rule's answer is not valid for sipgate; plain answer", "call_id", f.CallID, "rule", d.Rule, "err", err)
		h.metrics.RouteFailed(metrics.RouteFailEvaluation)
		return nil, false
	}
	h.metrics.Routed(d.Rule)
	h.log.Debug("routed menu", "call_id", f.CallID, "menu", menu, "digits", f.DTMF, "rule", d.Rule, "action", d.Action.Kind())
	return b, true
}

func (h *sipgateHandler) routeCall(f sipgateForm, at time.Time) routing.Call {
	if h.routing.Now != nil {
		at = h.routing.Now()
	}
	c := routing.Call{Direction: callstate.Direction(f.Direction), From: f.From, To: f.To,
		UserIDs: f.UserIDs, Users: f.Users, At: at, Digits: f.DTMF}
	if f.UserID != "" {
		c.UserIDs = append(c.UserIDs, f.UserID)
	}
	if f.User != "" {
		c.Users = append(c.Users, f.User)
	}
	return c
}

func (h *sipgateHandler) routeEnv(ctx context.Context) routing.Env {
	var env routing.Env
	if h.routing.Lamps != nil {
		env.Lamps = h.routing.Lamps.Lamps(ctx)
	}
	if pb := h.routing.Phonebook; pb != nil {
		env.Contact = pb.Contact
	}
	return env
}

// answer writes the XML of action with the subscriptions newCall's answer
// carries (onAnswer and onHangup; a menu's dial is answered after the
// menu, and its answer event says who took the call); a Gather's onData
// is the webhook with the signed menu state.
func (h *sipgateHandler) answer(callID string, a routing.Action) ([]byte, error) {
	onData := ""
	if a.Gather != nil {
		onData = routing.MenuURL(h.hook, h.routing.Secret, callID, a.Gather.Menu)
	}
	return xmlresponse.Response{OnAnswer: h.hook, OnHangup: h.hook, Action: a.Response(onData)}.Marshal()
}

// LampMap turns lamp statuses into what LampView.Lamps returns: each lamp
// under its extension or user id, "source/extension", and its user's
// lower-case name. Should a PBX extension and a sipgate user share a key,
// the busier lamp wins.
func LampMap(ls []callstate.LampStatus) map[string]string {
	m := make(map[string]string, 3*len(ls))
	put := func(k, lamp string) {
		if old, ok := m[k]; !ok || lampRank(lamp) > lampRank(old) {
			m[k] = lamp
		}
	}
	for _, l := range ls {
		m[string(l.Source)+"/"+l.Extension] = l.Lamp
		put(l.Extension, l.Lamp)
		if l.Name != "" {
			put(strings.ToLower(l.Name), l.Lamp)
		}
	}
	return m
}

func lampRank(l string) int {
	switch l {
	case callstate.LampBusy:
		return 4
	case callstate.LampHold:
		return 3
	case callstate.LampRinging:
		return 2
	case callstate.LampIdle:
		return 1
	}
	return 0
}

// answerCache keeps the answers of one version of the rules, by rule name
// (unique in a file): written and checked once, not for every call.
type answerCache struct {
	rules *routing.Rules
	m     sync.Map // rule name -> []byte
}

// answerFor is answer, kept per rule for the rules in force; a Gather's
// answer names the call in its onData and is written each time.
func (h *sipgateHandler) answerFor(rules *routing.Rules, callID string, d routing.Decision) ([]byte, error) {
	if d.Action.Gather != nil {
		return h.answer(callID, d.Action)
	}
	c := h.answers.Load()
	if c == nil || c.rules != rules {
		c = &answerCache{rules: rules}
		h.answers.Store(c)
	}
	if b, ok := c.m.Load(d.Rule); ok {
		return b.([]byte), nil
	}
	b, err := h.answer(callID, d.Action)
	if err != nil {
		return nil, err
	}
	c.m.Store(d.Rule, b)
	return b, nil
}

// RouteAnswer is the dry run of routing: the rule that matched a call and
// the XML sipgate would get.
type RouteAnswer struct {
	Rule   string // "" when none matched
	Line   int    // the rule's line in the file
	Action string // dial, voicemail, play, gather, reject, hangup; "" for the default
	XML    []byte
}

// ErrNoMenu is returned by DryRun for a menu the rules do not have.
var ErrNoMenu = errors.New("no such menu")

// DryRun routes a made-up newCall as the webhook with options o would,
// with the given rules, lamps and phonebook (nil for none), and returns
// the rule and the answer; with menu set, the dtmf of c.Digits in that
// menu (ErrNoMenu, wrapped, for a menu the rules lack). It writes nothing.
// Nil rules answer as with no rules: the default.
func DryRun(o SipgateOptions, rules *routing.Rules, lamps map[string]string, pb *Phonebook, menu string, c routing.Call) (RouteAnswer, error) {
	h, err := newSipgateHandler(o, nil, nil, nil)
	if err != nil {
		return RouteAnswer{}, err
	}
	if h.routing == nil {
		h.routing = &RoutingOptions{}
	}
	return h.dryRun(rules, lamps, pb, menu, c)
}

func (h *sipgateHandler) dryRun(rules *routing.Rules, lamps map[string]string, pb *Phonebook, menu string, c routing.Call) (RouteAnswer, error) {
	env := routing.Env{Lamps: lamps}
	if pb != nil {
		env.Contact = pb.Contact
	}
	var d routing.Decision
	plain := h.newCallXML
	if menu != "" {
		var ok bool
		if d, ok = rules.EvaluateMenu(menu, c, env); !ok {
			return RouteAnswer{}, fmt.Errorf("%w %q", ErrNoMenu, menu)
		}
		plain = h.dtmfXML
	} else {
		d = rules.Evaluate(c, env)
	}
	if !d.Matched {
		return RouteAnswer{XML: plain}, nil
	}
	body, err := h.answer("dry-run", d.Action)
	if err != nil {
		return RouteAnswer{}, fmt.Errorf("rule %q (line %d): %w", d.Rule, d.Line, err)
	}
	return RouteAnswer{Rule: d.Rule, Line: d.Line, Action: d.Action.Kind(), XML: body}, nil
}

// routeQuery is GET /api/route's query string.
type routeQuery struct {
	From      string `query:"from" validate:"omitempty,max=64,text"`
	To        string `query:"to" validate:"omitempty,max=64,text"`
	At        string `query:"at" validate:"omitempty,datetime=2006-01-02T15:04:05Z07:00"`
	User      string `query:"user" validate:"omitempty,max=1000,text"`
	Direction string `query:"direction" validate:"omitempty,oneof=in out"`
	Menu      string `query:"menu" validate:"omitempty,max=64,text"`
	Digits    string `query:"digits" validate:"omitempty,max=32,dtmf"`
}

// routeJSON is GET /api/route's answer.
type routeJSON struct {
	Rule    string    `json:"rule"`
	Line    int       `json:"line,omitempty"`
	Action  string    `json:"action"`
	Default bool      `json:"default"`
	At      time.Time `json:"at"`
	XML     string    `json:"xml"`
}

// route is GET /api/route: the dry run of routing for a call from, to, at
// (RFC 3339; now if left out), offered to users (comma-separated ids or
// names), with the lamps as the database has them now.
func (a *api) route(h *sipgateHandler) echo.HandlerFunc {
	return func(c echo.Context) error {
		var q routeQuery
		if err := bindQuery(c, &q); err != nil {
			return err
		}
		call := routing.Call{Direction: callstate.DirectionIn, From: q.From, To: q.To, At: time.Now(), Digits: q.Digits}
		if q.Direction != "" {
			call.Direction = callstate.Direction(q.Direction)
		}
		if q.At != "" {
			t, err := time.Parse(time.RFC3339, q.At)
			if err != nil {
				return echo.NewHTTPError(http.StatusBadRequest, "at must be a time in RFC 3339, e.g. 2026-12-07T19:30:00+01:00").SetInternal(err)
			}
			call.At = t
		}
		for _, u := range strings.Split(q.User, ",") {
			if u = strings.TrimSpace(u); u != "" {
				call.UserIDs, call.Users = append(call.UserIDs, u), append(call.Users, u)
			}
		}
		ctx, cancel := a.queryContext(c)
		defer cancel()
		ls, err := a.store.LampStatuses(ctx)
		if err != nil {
			return err
		}
		ans, err := h.dryRun(h.routing.Rules(), LampMap(ls), h.routing.Phonebook, q.Menu, call)
		if errors.Is(err, ErrNoMenu) {
			return echo.NewHTTPError(http.StatusBadRequest, err.Error()+": the rules have no such menu")
		}
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, routeJSON{Rule: ans.Rule, Line: ans.Line, Action: ans.Action, Default: ans.Rule == "",
			At: call.At, XML: string(ans.XML)})
	}
}

// LampStore is what LiveLamps reads the lamps from: the durable feed's
// lamp events (store.Store.FollowLamps).
type LampStore interface {
	// FollowLamps calls fn with every lamp as the feed tells it, once
	// they are read and again after each chunk of lamp.changed and
	// lamp.updated events, until ctx is done; wake nudges it when the
	// feed may have grown. It returns nil when ctx is done.
	FollowLamps(ctx context.Context, wake <-chan struct{}, fn func(lamps []callstate.LampStatus, evs []callstate.FeedEvent)) error
}

// LiveLamps is the lamps as this instance knows them now, kept in memory
// for routing from the feed's lamp.changed and lamp.updated events, the
// same events the stream and the webhooks carry: no lamp is worked out
// again here. It implements LampView. Call Changed when the feed may have
// grown (the store's change notifications) and run Run.
type LiveLamps struct {
	st   LampStore
	log  *slog.Logger
	cur  atomic.Pointer[map[string]string]
	poke chan struct{}
	read atomic.Int64 // updates of the view, for tests and metrics
}

// NewLiveLamps returns a view of st's lamps; call Run to fill it. A nil
// log means slog.Default().
func NewLiveLamps(st LampStore, log *slog.Logger) *LiveLamps {
	if log == nil {
		log = slog.Default()
	}
	return &LiveLamps{st: st, log: log, poke: make(chan struct{}, 1)}
}

// Lamps returns the lamps as last read; nil before the first read.
func (l *LiveLamps) Lamps(context.Context) map[string]string {
	if p := l.cur.Load(); p != nil {
		return *p
	}
	return nil
}

// Changed says that the feed may have grown: Run reads it.
func (l *LiveLamps) Changed() {
	select {
	case l.poke <- struct{}{}:
	default:
	}
}

// Reads returns how many times the view was made: once from the lamps
// read at the start, then once per chunk of lamp events.
func (l *LiveLamps) Reads() int64 { return l.read.Load() }

// Run keeps the view up to date from the feed until ctx is done; it
// returns nil then. While the feed cannot be read, rules see the last
// lamps read.
func (l *LiveLamps) Run(ctx context.Context) error {
	err := l.st.FollowLamps(ctx, l.poke, func(ls []callstate.LampStatus, _ []callstate.FeedEvent) {
		m := LampMap(ls)
		l.cur.Store(&m)
		l.read.Add(1)
	})
	if err != nil {
		return fmt.Errorf("routing: lamps from the feed: %w", err)
	}
	return nil
}
