// Package handlers is callstate's HTTP adapter: the sipgate.io webhook
// endpoint, health checks, and the error handling they share.
package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/metrics"
)

// EventStore is what the webhook handlers need from a store.
type EventStore interface {
	// Apply journals ev and merges it into its call. It reports false when
	// the same event was applied before.
	Apply(ctx context.Context, ev callstate.Event) (applied bool, err error)
}

// Pinger reports whether a dependency answers; /readyz uses it. An error
// that is a *NotReady gives the reason /readyz answers with.
type Pinger interface {
	Ping(ctx context.Context) error
}

// NotReady is an error that says why the service is not ready, in words
// fit for /readyz's answer; Err is the cause, for the log only. A
// readiness check of several parts returns one NotReady for each part that
// fails, joined with errors.Join; /readyz lists them all.
type NotReady struct {
	Check  string // the part that fails: "database", "spool", "sip"
	Reason string
	Err    error
}

func (e *NotReady) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *NotReady) Unwrap() error { return e.Err }

// notReadyBody is /readyz's answer when not ready: the first reason, and
// every failing check's.
type notReadyBody struct {
	Error  string            `json:"error"`
	Checks map[string]string `json:"checks,omitempty"`
}

// readyReport turns a Pinger's error into /readyz's answer.
func readyReport(err error) notReadyBody {
	var body notReadyBody
	var walk func(error)
	walk = func(err error) {
		var nr *NotReady
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if errors.As(err, &nr) {
			if body.Error == "" {
				body.Error = nr.Reason
			}
			if nr.Check != "" {
				if body.Checks == nil {
					body.Checks = map[string]string{}
				}
				body.Checks[nr.Check] = nr.Reason
			}
			return
		}
		if body.Error == "" {
			body.Error = "not ready"
			if errors.Is(err, callstate.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
				body.Error = "database unreachable"
			}
		}
	}
	walk(err)
	return body
}

// ReadyTimeout bounds /readyz's check: a dependency that does not answer
// within it is not ready.
const ReadyTimeout = time.Second

// Options configure the HTTP handlers.
type Options struct {
	Store   EventStore       // required
	Ready   Pinger           // optional: checked by /readyz
	Logger  *slog.Logger     // nil means slog.Default()
	Metrics *metrics.Metrics // optional: recorded into and served at /metrics

	// TrustedProxies are the networks whose X-Forwarded-For is believed when
	// logging and checking a client's address. Empty: the peer address is
	// the client.
	TrustedProxies []*net.IPNet

	Sipgate SipgateOptions

	Dashboard DashboardOptions // the API, the live stream and the board; see api.go
}

// New returns the HTTP handler with every route. It returns an error when
// the options cannot make a valid sipgate response.
func New(opts Options) (*echo.Echo, error) {
	if opts.Store == nil {
		return nil, errors.New("handlers: no store")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Logger.SetOutput(discard{})
	e.IPExtractor = ipExtractor(opts.TrustedProxies)
	v := validator.New(validator.WithRequiredStructEnabled())
	registerSipgateRules(v)
	e.Validator = &structValidator{v: v}
	e.HTTPErrorHandler = errorHandler(log)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{
		LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
			log.Error("panic serving request", "path", c.Request().URL.Path, "err", err, "stack", string(stack))
			return err
		},
	}))
	e.Use(middleware.RequestID())
	e.Use(requestLogger(log, opts.Metrics))

	sg, err := newSipgateHandler(opts.Sipgate, opts.Store, log, opts.Metrics)
	if err != nil {
		return nil, err
	}
	if opts.Sipgate.PathSecret != "" {
		e.POST(SipgatePath+"/:secret", sg.handle)
	} else {
		e.POST(SipgatePath, sg.handle)
	}
	if opts.Metrics != nil {
		e.GET("/metrics", echo.WrapHandler(opts.Metrics.Handler()))
	}
	registerDashboard(e, opts.Dashboard, opts.Metrics, log, sg)
	e.GET("/healthz", func(c echo.Context) error { return c.String(http.StatusOK, "ok\n") })
	var wasReady atomic.Int32 // 0 unknown, 1 ready, 2 not ready: a change is logged once
	e.GET("/readyz", func(c echo.Context) error {
		if opts.Ready != nil {
			ctx, cancel := context.WithTimeout(c.Request().Context(), ReadyTimeout)
			defer cancel()
			if err := opts.Ready.Ping(ctx); err != nil {
				body := readyReport(err)
				if wasReady.Swap(2) != 2 {
					log.Warn("not ready", "reason", body.Error, "checks", body.Checks, "err", err)
				}
				return c.JSON(http.StatusServiceUnavailable, body)
			}
		}
		if wasReady.Swap(1) == 2 {
			log.Info("ready again")
		}
		return c.String(http.StatusOK, "ready\n")
	})
	return e, nil
}

// ipExtractor believes X-Forwarded-For only from trusted proxies.
func ipExtractor(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{
		echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false),
	}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

type structValidator struct{ v *validator.Validate }

// Validate checks i's validate tags and returns a 400 naming every bad field.
func (sv *structValidator) Validate(i any) error {
	err := sv.v.Struct(i)
	var verrs validator.ValidationErrors
	if errors.As(err, &verrs) {
		msg := ""
		for i, fe := range verrs {
			if i > 0 {
				msg += "; "
			}
			msg += describeFieldError(fe)
		}
		return echo.NewHTTPError(http.StatusBadRequest, msg).SetInternal(err)
	}
	if err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	return nil
}

func describeFieldError(fe validator.FieldError) string {
	name := fe.Namespace()
	if i := strings.IndexByte(name, '.'); i >= 0 {
		name = name[i+1:] // drop the struct's own name
	}
	switch fe.Tag() {
	case "required":
		return name + " is required"
	case "oneof", "outcome", "source":
		return fmt.Sprintf("%s must be one of [%s]", name, fe.Param())
	case "max":
		return fmt.Sprintf("%s is too long (at most %s)", name, fe.Param())
	case "min":
		return fmt.Sprintf("%s is too short (at least %s)", name, fe.Param())
	case "text":
		return name + " must be UTF-8 text without control characters (bidirectional controls and line separators included)"
	case "notblank":
		return name + " must not be blank"
	case "dtmf":
		return name + " must contain only 0-9, *, #, A-D"
	default:
		return fmt.Sprintf("%s fails %s", name, fe.Tag())
	}
}

// errorBody is every error response's JSON.
type errorBody struct {
	Error string `json:"error"`
}

// errorHandler writes errors as JSON {"error": "..."}: the message of an
// echo.HTTPError as it is, "internal error" for anything else. Internal
// details go to the log only.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		code, msg := http.StatusInternalServerError, "internal error"
		var he *echo.HTTPError
		if errors.As(err, &he) {
			code = he.Code
			if m, ok := he.Message.(string); ok {
				msg = m
			} else {
				msg = http.StatusText(code)
			}
		} else if errors.Is(err, callstate.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			// A store that is down or did not answer in time: the caller
			// may try again.
			code, msg = http.StatusServiceUnavailable, "database unavailable, try again later"
			c.Response().Header().Set("Retry-After", "5")
		}
		var werr error
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(code)
		} else {
			werr = c.JSON(code, errorBody{Error: msg})
		}
		if werr != nil {
			log.Debug("writing error response", "err", werr)
		}
	}
}

// requestLogger writes one structured line per request, with the reason for
// any error and the event and call it carried, and records its latency.
// Matched routes are logged by their pattern, so that a path secret never
// reaches the log.
func requestLogger(log *slog.Logger, m *metrics.Metrics) echo.MiddlewareFunc {
	return middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogMethod: true, LogURIPath: true, LogRoutePath: true, LogStatus: true, LogLatency: true,
		LogRemoteIP: true, LogError: true, HandleError: true,
		LogValuesFunc: func(c echo.Context, v middleware.RequestLoggerValues) error {
			path, route := v.RoutePath, v.RoutePath
			if path == "" || path == "/*" {
				// No route: the log shows the path, the metrics one label
				// for all, so that anyone's made-up paths cannot grow them.
				path, route = v.URIPath, "unmatched"
				if strings.HasPrefix(path, SipgatePath+"/") {
					path = SipgatePath + "/…"
				}
			}
			if route != "/api/stream" { // a stream lasts as long as its client: no latency
				m.Request(route, v.Status, v.Latency)
			}
			attrs := []slog.Attr{
				slog.String("method", v.Method), slog.String("path", path),
				slog.Int("status", v.Status), slog.Duration("latency", v.Latency),
				slog.String("remote", v.RemoteIP),
				slog.String("request_id", c.Response().Header().Get(echo.HeaderXRequestID)),
			}
			if ev, ok := c.Get(ctxEvent).(string); ok {
				attrs = append(attrs, slog.String("event", ev))
			}
			if id, ok := c.Get(ctxCallID).(string); ok {
				attrs = append(attrs, slog.String("call_id", id))
			}
			level := slog.LevelInfo
			if v.Error != nil {
				attrs = append(attrs, slog.String("err", errorText(v.Error)))
				level = slog.LevelWarn
				if v.Status >= 500 && path != "/readyz" { // a load balancer's probe of an instance that says why
					level = slog.LevelError
				}
			}
			log.LogAttrs(c.Request().Context(), level, "http request", attrs...)
			return nil
		},
	})
}

// errorText is what the log says about err: the HTTP message and, for the
// operator only, the internal cause. A validation failure's message already
// names every bad field, so the validator's own text is left out.
func errorText(err error) string {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg := fmt.Sprint(he.Message)
		var verrs validator.ValidationErrors
		if he.Internal != nil && !errors.As(he.Internal, &verrs) {
			if in := he.Internal.Error(); strings.HasPrefix(in, msg) {
				msg = in
			} else {
				msg += ": " + in
			}
		}
		return msg
	}
	return err.Error()
}

// Keys of values a handler leaves for the request log.
const (
	ctxEvent  = "callstate.event"
	ctxCallID = "callstate.call_id"
)

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
