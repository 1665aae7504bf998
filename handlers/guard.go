package handlers

import (
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/callstate/callstate/metrics"
)

// admission bounds how many webhook events are handled at once. sipgate
// never retries, so its requests wait a little for a slot instead of being
// turned away; newCall, which decides whether we hear about the call at
// all, has slots of its own in reserve.
type admission struct {
	slots   chan struct{}
	reserve chan struct{}
	wait    time.Duration
}

func newAdmission(n int, wait time.Duration) *admission {
	if n <= 0 {
		n = 512
	}
	return &admission{slots: make(chan struct{}, n), reserve: make(chan struct{}, max(n/4, 1)), wait: wait}
}

// acquire takes a slot, waiting up to a.wait. newCall may also take a
// reserved slot. It returns false when none came free in time.
func (a *admission) acquire(ctx context.Context, newCall bool) (release func(), ok bool) {
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, true
	default:
	}
	if newCall {
		select {
		case a.reserve <- struct{}{}:
			return func() { <-a.reserve }, true
		default:
		}
	}
	t := time.NewTimer(a.wait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return func() { <-a.slots }, true
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, false
}

// overloaded is the answer when there is no capacity left: fast, with a
// hint when to come back.
func overloaded(c echo.Context) error {
	c.Response().Header().Set("Retry-After", "1")
	return echo.NewHTTPError(http.StatusServiceUnavailable, "overloaded, try again shortly")
}

// Shed returns middleware that serves at most n requests at once and
// answers the rest 503 with Retry-After at once: for API callers, which
// can come back, unlike sipgate.
func Shed(n int, m *metrics.Metrics, class string) echo.MiddlewareFunc {
	sem := make(chan struct{}, max(n, 1))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			select {
			case sem <- struct{}{}:
			default:
				return overloaded(c)
			}
			m.Inflight(class, 1)
			defer func() {
				<-sem
				m.Inflight(class, -1)
			}()
			return next(c)
		}
	}
}

// allowedFrom reports whether ip (as the IP extractor found it, proxies
// considered) is in one of nets; no nets allows everyone.
func allowedFrom(nets []*net.IPNet, ip string) bool {
	if len(nets) == 0 {
		return true
	}
	parsed := net.ParseIP(ip)
	for _, n := range nets {
		if parsed != nil && n.Contains(parsed) {
			return true
		}
	}
	return false
}

// secretMatches compares a path secret in constant time.
func secretMatches(want, got string) bool {
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}
