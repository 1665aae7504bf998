package handlers

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/metrics"
)

// DashboardStore is what the API, the live stream and the board need from a
// store.
type DashboardStore interface {
	// ListCalls returns a page of calls, newest first, and the next page's
	// cursor ("" after the last). A cursor it did not make is
	// callstate.ErrBadCursor.
	ListCalls(ctx context.Context, f callstate.CallFilter) ([]callstate.Call, string, error)
	// CallByID returns a call and its journal, oldest first, or
	// callstate.ErrNotFound.
	CallByID(ctx context.Context, id int64) (callstate.Call, []callstate.JournalEntry, error)
	// LampStatuses returns the lamp of every extension and user.
	LampStatuses(ctx context.Context) ([]callstate.LampStatus, error)
	// RecentCalls returns the active calls and the n last changed, by Seq.
	RecentCalls(ctx context.Context, n int) ([]callstate.ChangedCall, error)
	// TeamDay returns the team's numbers of the day of now.
	TeamDay(ctx context.Context, now time.Time) (callstate.TeamDay, error)
}

// DashboardOptions configure the API, the stream and the board. With a nil
// Store, none of them is served.
type DashboardOptions struct {
	Store  DashboardStore
	Stream *Stream // nil: no /api/stream

	// Phonebook names callers and formats numbers in the API and serves
	// /api/contacts; nil: numbers formatted for DE, no names, no
	// /api/contacts. Give the Stream the same one (StreamOptions).
	Phonebook *Phonebook

	// BearerToken and BasicUser/BasicPassword, when set, protect the API,
	// the stream and the board: a request needs one of them. Webhooks and
	// health checks keep their own checks.
	BearerToken   string
	BasicUser     string
	BasicPassword string

	// CORSOrigins are the origins allowed to call the API and the stream
	// from a browser ("*" for any); empty turns CORS off.
	CORSOrigins []string

	// MaxInflight bounds API requests served at once (0 means 64); past it
	// they are answered 503 with Retry-After at once.
	MaxInflight int

	// QueryTimeout bounds the store's answer to an API request (0 means
	// DefaultQueryTimeout); past it the request is answered 503.
	QueryTimeout time.Duration

	// Now is the clock of /api/today's day and of the marks of calls to
	// return (nil: time.Now).
	Now func() time.Time

	// Board holds the board's thresholds and sound.
	Board BoardOptions

	// Webhooks serves /api/webhooks; nil: none.
	Webhooks *WebhookOptions

	// Devices serves /api/devices (waking phones, docs/wake.md); nil: none.
	Devices *DeviceOptions
}

// DefaultQueryTimeout is DashboardOptions.QueryTimeout's default.
const DefaultQueryTimeout = 3 * time.Second

// DefaultAPIMaxInflight is how many API requests are served at once
// unless told otherwise (API_MAX_INFLIGHT's default too).
const DefaultAPIMaxInflight = 64

// registerDashboard adds the API, the stream and the board to e.
func registerDashboard(e *echo.Echo, o DashboardOptions, m *metrics.Metrics, log *slog.Logger, sg *sipgateHandler) {
	if o.Store == nil {
		return
	}
	isDashboard := func(c echo.Context) bool {
		p := c.Request().URL.Path
		return (p == "/" || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/board/")) &&
			(o.Devices == nil || !devicePath(p)) // the device API has CORS of its own
	}
	if len(o.CORSOrigins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			Skipper:       func(c echo.Context) bool { return !isDashboard(c) },
			AllowOrigins:  o.CORSOrigins,
			AllowMethods:  []string{http.MethodGet, http.MethodHead, http.MethodOptions},
			AllowHeaders:  []string{echo.HeaderAuthorization, "Last-Event-ID", echo.HeaderAccept},
			ExposeHeaders: []string{"Link"},
			MaxAge:        3600,
		}))
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	api := &api{store: o.Store, log: log, timeout: cmp.Or(o.QueryTimeout, DefaultQueryTimeout), phonebook: o.Phonebook,
		now: now, board: o.Board}
	auth := accessCheck(o)
	if o.Devices != nil {
		registerDevices(e, *o.Devices, o, m, log)
	}
	g := e.Group("/api", auth)
	// API callers can come back: past the bound they get a fast 503 with
	// Retry-After instead of queueing (the stream has its own client bound).
	shed := Shed(cmp.Or(o.MaxInflight, DefaultAPIMaxInflight), m, "api")
	g.GET("/calls", api.listCalls, shed)
	g.GET("/calls/:id", api.getCall, shed)
	g.GET("/lamps", api.lamps, shed)
	g.GET("/openapi.yaml", func(c echo.Context) error {
		return c.Blob(http.StatusOK, "application/yaml", openAPI)
	})
	if o.Stream != nil {
		g.GET("/stream", o.Stream.serve)
	}
	registerBoardAPI(g, api, shed)
	routes := sg != nil && sg.routing != nil && sg.routing.Rules != nil
	if routes {
		g.GET("/route", api.route(sg), shed)
	}
	if o.Webhooks != nil {
		writable := o.BearerToken != "" || o.BasicUser != "" || o.BasicPassword != ""
		registerWebhooks(g, api, *o.Webhooks, writable, shed)
	}
	readOnly := []string{"/calls", "/calls/:id", "/lamps", "/openapi.yaml", "/stream", "/today"}
	if routes {
		readOnly = append(readOnly, "/route")
	}
	if js, ok := o.Store.(JourneyStore); ok {
		ja := &journeyAPI{api: api, js: js}
		g.GET("/journeys", ja.listJourneys, shed)
		g.GET("/missed", ja.missed, shed)
		if _, ok := js.(MissedMarker); ok {
			g.POST("/missed/:id/done", ja.markDone, shed)
		}
		g.GET("/stats", ja.stats, shed)
		readOnly = append(readOnly, "/journeys", "/missed", "/stats")
	}
	// The API is read-only but for adding contacts: any other method is
	// 405, not 404.
	for _, path := range readOnly {
		g.Match([]string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}, path, methodNotAllowed)
	}
	registerBoard(e, auth)
}

// methodNotAllowed answers a method a read-only route does not take.
func methodNotAllowed(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderAllow, "GET, HEAD, OPTIONS")
	return echo.NewHTTPError(http.StatusMethodNotAllowed, "method not allowed: the API is read-only")
}

//go:embed openapi.yaml
var openAPI []byte

// bearer returns the token of an Authorization header of the Bearer
// scheme, whose name is case-insensitive (RFC 9110, section 11.1).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimLeft(token, " "), true
}

// accessCheck lets a request through when no credentials are configured,
// or when it carries the bearer token (Authorization header, or the
// access_token query parameter for EventSource and wall screens) or the
// basic-auth user and password. Comparisons take constant time.
func accessCheck(o DashboardOptions) echo.MiddlewareFunc {
	token := o.BearerToken
	basic := o.BasicUser != "" || o.BasicPassword != ""
	hash := func(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }
	wantToken, wantUser, wantPass := hash(token), hash(o.BasicUser), hash(o.BasicPassword)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		if token == "" && !basic {
			return next
		}
		return func(c echo.Context) error {
			req := c.Request()
			if req.Method == http.MethodOptions {
				return next(c) // CORS preflight carries no credentials
			}
			if token != "" {
				got, ok := bearer(req.Header.Get(echo.HeaderAuthorization))
				if !ok {
					got, ok = req.URL.Query().Get("access_token"), req.URL.Query().Has("access_token")
				}
				if ok && subtle.ConstantTimeCompare(hash(got), wantToken) == 1 {
					return next(c)
				}
			}
			if basic {
				if u, p, ok := req.BasicAuth(); ok &&
					subtle.ConstantTimeCompare(hash(u), wantUser)&subtle.ConstantTimeCompare(hash(p), wantPass) == 1 {
					return next(c)
				}
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Basic realm="callstate", charset="UTF-8"`)
			} else {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="callstate"`)
			}
			return echo.NewHTTPError(http.StatusUnauthorized, "missing or wrong credentials")
		}
	}
}

type api struct {
	store     DashboardStore
	log       *slog.Logger
	timeout   time.Duration // of one store query
	phonebook *Phonebook    // nil: no names
	now       func() time.Time
	board     BoardOptions
	today     todayCache
}

// queryContext is the context of one store query of an API request.
func (a *api) queryContext(c echo.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request().Context(), a.timeout)
}

// callsQuery is GET /api/calls's query string, as sent.
type callsQuery struct {
	Active    string `query:"active" validate:"omitempty,oneof=true false 1 0"`
	Since     string `query:"since" validate:"omitempty,datetime=2006-01-02T15:04:05Z07:00"`
	Extension string `query:"extension" validate:"omitempty,max=255,text"`
	Source    string `query:"source" validate:"omitempty,source"`
	Limit     string `query:"limit" validate:"omitempty,number,max=4"`
	Cursor    string `query:"cursor" validate:"omitempty,max=100,base64rawurl"`
}

// MaxCallsLimit bounds GET /api/calls's limit; 100 when not given.
const (
	MaxCallsLimit     = 1000
	defaultCallsLimit = 100
)

func (a *api) listCalls(c echo.Context) error {
	var q callsQuery
	if err := bindQuery(c, &q); err != nil {
		return err
	}
	f := callstate.CallFilter{Extension: q.Extension, Source: callstate.Source(q.Source), Cursor: q.Cursor}
	f.Active = q.Active == "true" || q.Active == "1"
	if q.Since != "" {
		f.Since, _ = time.Parse(time.RFC3339, q.Since) // validated
	}
	var err error
	if f.Limit, err = parseLimit(q.Limit); err != nil {
		return err
	}
	ctx, cancel := a.queryContext(c)
	defer cancel()
	calls, next, err := a.store.ListCalls(ctx, f)
	if errors.Is(err, callstate.ErrBadCursor) {
		return echo.NewHTTPError(http.StatusBadRequest, "cursor is not one this API returned").SetInternal(err)
	}
	if err != nil {
		return err
	}
	out := callsPage{Calls: make([]callstate.CallJSON, 0, len(calls)), NextCursor: next}
	now := a.now()
	for _, cl := range calls {
		j := a.phonebook.callJSON(cl, 0)
		j.NoNews = cl.NoNews(now, a.board.RingingStale)
		out.Calls = append(out.Calls, j)
	}
	setNextLink(c, next)
	return c.JSON(http.StatusOK, out)
}

// parseLimit reads a list's limit parameter: the default when empty, else
// a whole number from 1 to MaxCallsLimit.
func parseLimit(s string) (int, error) {
	if s == "" {
		return defaultCallsLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxCallsLimit {
		return 0, echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("limit must be a whole number from 1 to %d", MaxCallsLimit))
	}
	return n, nil
}

// setNextLink sets a page's Link header to the next page (the request
// with cursor=next), if there is one.
func setNextLink(c echo.Context, next string) {
	if next == "" {
		return
	}
	u := *c.Request().URL
	v := u.Query()
	v.Set("cursor", next)
	u.RawQuery = v.Encode()
	c.Response().Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, u.RequestURI()))
}

func (a *api) getCall(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return echo.NewHTTPError(http.StatusBadRequest, "id must be a positive whole number")
	}
	ctx, cancel := a.queryContext(c)
	defer cancel()
	cl, journal, err := a.store.CallByID(ctx, id)
	if errors.Is(err, callstate.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no call with id %d", id)).SetInternal(err)
	}
	if err != nil {
		return err
	}
	out := callDetail{CallJSON: a.phonebook.callJSON(cl, 0), Events: make([]eventJSON, 0, len(journal))}
	out.NoNews = cl.NoNews(a.now(), a.board.RingingStale)
	for _, j := range journal {
		ev := eventJSON{ID: j.ID, Type: j.Type, Event: j.Event, DedupKey: j.DedupKey, ReceivedAt: j.ReceivedAt}
		if utf8.Valid(j.Payload) {
			ev.Payload = string(j.Payload)
		} else {
			ev.PayloadBase64 = j.Payload
		}
		out.Events = append(out.Events, ev)
	}
	return c.JSON(http.StatusOK, out)
}

func (a *api) lamps(c echo.Context) error {
	if err := bindQuery(c, &struct{}{}); err != nil {
		return err
	}
	ctx, cancel := a.queryContext(c)
	defer cancel()
	ls, err := a.store.LampStatuses(ctx)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, lampsJSON{Lamps: toLampsJSON(ls)})
}

// bindQuery fills q's string fields from the query string and validates
// them with e.Validator. Unknown parameters are refused, so a misspelt
// filter does not silently select everything.
func bindQuery(c echo.Context, q any) error {
	t := reflect.TypeOf(q).Elem()
	v := reflect.ValueOf(q).Elem()
	known := map[string]int{"access_token": -1}
	for i := range t.NumField() {
		known[t.Field(i).Tag.Get("query")] = i
	}
	for name, vals := range c.QueryParams() {
		i, ok := known[name]
		if !ok {
			return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("unknown parameter %q", name))
		}
		if len(vals) > 1 {
			return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("parameter %s given more than once", name))
		}
		if i >= 0 {
			v.Field(i).SetString(vals[0])
		}
	}
	if t.NumField() == 0 {
		return nil
	}
	err := c.Validate(q)
	var he *echo.HTTPError
	var verrs validator.ValidationErrors
	if errors.As(err, &he) && errors.As(he.Internal, &verrs) {
		msgs := make([]string, 0, len(verrs))
		for _, fe := range verrs {
			f, _ := t.FieldByName(fe.StructField())
			msgs = append(msgs, describeQueryError(f.Tag.Get("query"), fe))
		}
		return echo.NewHTTPError(http.StatusBadRequest, strings.Join(msgs, "; ")).SetInternal(err)
	}
	return err
}

func describeQueryError(name string, fe validator.FieldError) string {
	switch fe.Tag() {
	case "datetime":
		if fe.Param() == time.DateOnly {
			return name + " must be a date such as 2026-01-31"
		}
		return name + " must be an RFC 3339 time such as 2026-01-31T08:00:00Z"
	case "number":
		return name + " must be a whole number"
	case "oneof", "outcome", "source":
		return fmt.Sprintf("%s must be one of: %s", name, strings.ReplaceAll(fe.Param(), " ", ", "))
	case "base64rawurl":
		return name + " is not one this API returned"
	case "max":
		return name + " is too long"
	case "text":
		return name + " must be text without control characters"
	}
	return fmt.Sprintf("%s is invalid (%s)", name, fe.Tag())
}

type callsPage struct {
	Calls      []callstate.CallJSON `json:"calls"`
	NextCursor string               `json:"next_cursor"`
}

type callDetail struct {
	callstate.CallJSON
	Events []eventJSON `json:"events"`
}

type eventJSON struct {
	ID            int64     `json:"id"`
	Type          string    `json:"type"`
	Event         string    `json:"event,omitempty"`
	DedupKey      string    `json:"dedup_key"`
	ReceivedAt    time.Time `json:"received_at"`
	Payload       string    `json:"payload,omitempty"`
	PayloadBase64 []byte    `json:"payload_base64,omitempty"`
}

type lampsJSON struct {
	Lamps []callstate.LampJSON `json:"lamps"`
}

func toLampsJSON(ls []callstate.LampStatus) []callstate.LampJSON {
	out := make([]callstate.LampJSON, 0, len(ls))
	for _, l := range ls {
		out = append(out, callstate.NewLampJSON(l))
	}
	return out
}
