package handlers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/metrics"
)

// DevicesPath is the device API's root (docs/wake.md).
const DevicesPath = "/api/devices"

// Credential prefixes: a one-time enrollment token, and a device's own.
const (
	EnrollPrefix = "enroll_"
	DevicePrefix = "dev_"
)

// DeviceStore is what the device API needs from a store.
type DeviceStore interface {
	// AddDevice registers d with its credential's hash; with enrollHash,
	// it uses up that enrollment token (callstate.ErrEnrollment,
	// callstate.ErrOtherUser).
	AddDevice(ctx context.Context, d callstate.Device, secretHash, enrollHash []byte) (callstate.Device, error)
	// DeleteDevice removes one, or returns callstate.ErrNotFound.
	DeleteDevice(ctx context.Context, id string) error
	// DeviceSecretHash returns a device's credential hash, or
	// callstate.ErrNotFound.
	DeviceSecretHash(ctx context.Context, id string) ([]byte, error)
	// WakeReady records a device's ready for a call pushed to it, or
	// returns callstate.ErrNotFound.
	WakeReady(ctx context.Context, id, callID string) error
}

// DeviceOptions serve /api/devices.
type DeviceOptions struct {
	Store DeviceStore
	// VAPIDKey returns the public key browsers subscribe with; "" while
	// it is not known yet (no database): 503.
	VAPIDKey func() string
	// CheckEndpoint says whether a subscription's endpoint may be pushed
	// to (the push adapter's rules: https, public).
	CheckEndpoint func(endpoint string) error
	// Readied is told of each ready taken here, before the other
	// instances hear of it through the database; nil: none.
	Readied func(callID string)
	// Origins are allowed to call these routes from a browser besides
	// DashboardOptions.CORSOrigins (the board's own origin, PUBLIC_URL's).
	Origins []string
}

// maxDeviceBody bounds POST /api/devices's body.
const maxDeviceBody = 8 << 10

// credentials checks the API's credentials (the bearer token or basic
// auth) in constant time; ok is false when none are configured.
type credentials struct {
	token, user, pass []byte
	hasToken, basic   bool
}

func newCredentials(o DashboardOptions) credentials {
	h := func(s string) []byte { s2 := sha256.Sum256([]byte(s)); return s2[:] }
	return credentials{token: h(o.BearerToken), user: h(o.BasicUser), pass: h(o.BasicPassword),
		hasToken: o.BearerToken != "", basic: o.BasicUser != "" || o.BasicPassword != ""}
}

func (cr credentials) configured() bool { return cr.hasToken || cr.basic }

// match reports whether req carries the API's credentials.
func (cr credentials) match(req *http.Request) bool {
	if cr.hasToken {
		if got, ok := bearer(req.Header.Get(echo.HeaderAuthorization)); ok {
			sum := sha256.Sum256([]byte(got))
			if subtle.ConstantTimeCompare(sum[:], cr.token) == 1 {
				return true
			}
		}
	}
	if cr.basic {
		if u, p, ok := req.BasicAuth(); ok {
			su, sp := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
			return subtle.ConstantTimeCompare(su[:], cr.user)&subtle.ConstantTimeCompare(sp[:], cr.pass) == 1
		}
	}
	return false
}

type deviceAPI struct {
	o     DeviceOptions
	creds credentials
	log   *slog.Logger
	m     *metrics.Metrics
	limit time.Duration
}

// devicePath reports whether path is one of the device API's.
func devicePath(path string) bool {
	return path == DevicesPath || strings.HasPrefix(path, DevicesPath+"/")
}

// registerDevices adds /api/devices to e, with CORS of its own (it takes
// POST and DELETE, which the read-only API does not).
func registerDevices(e *echo.Echo, o DeviceOptions, d DashboardOptions, m *metrics.Metrics, log *slog.Logger) {
	a := &deviceAPI{o: o, creds: newCredentials(d), log: log, m: m, limit: d.QueryTimeout}
	if a.limit <= 0 {
		a.limit = DefaultQueryTimeout
	}
	origins := append(append([]string{}, d.CORSOrigins...), o.Origins...)
	if len(origins) > 0 {
		e.Use(middleware.CORSWithConfig(middleware.CORSConfig{
			Skipper:      func(c echo.Context) bool { return !devicePath(c.Request().URL.Path) },
			AllowOrigins: origins,
			AllowMethods: []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodOptions},
			AllowHeaders: []string{echo.HeaderAuthorization, echo.HeaderContentType, echo.HeaderAccept},
			MaxAge:       3600,
		}))
	}
	e.GET(DevicesPath+"/vapid-key", a.vapidKey)
	e.POST(DevicesPath, a.add)
	e.DELETE(DevicesPath+"/:id", a.remove)
	e.POST(DevicesPath+"/:id/ready", a.ready)
}

func (a *deviceAPI) ctx(c echo.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request().Context(), a.limit)
}

func (a *deviceAPI) vapidKey(c echo.Context) error {
	k := a.o.VAPIDKey()
	if k == "" {
		c.Response().Header().Set("Retry-After", "5")
		return echo.NewHTTPError(http.StatusServiceUnavailable, "the VAPID key is not known yet (database unavailable), try again later")
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-cache")
	return c.JSON(http.StatusOK, map[string]string{"publicKey": k})
}

// deviceInput is POST /api/devices's body.
type deviceInput struct {
	User         string          `json:"user"`
	Extension    string          `json:"extension"`
	Name         string          `json:"name"`
	Subscription json.RawMessage `json:"subscription"`
}

// deviceJSON is a device as the API shows it; Secret only when made.
type deviceJSON struct {
	ID        string `json:"id"`
	User      string `json:"user"`
	Extension string `json:"extension"`
	Name      string `json:"name,omitempty"`
	Secret    string `json:"secret,omitempty"`
}

// unauthorized is a 401 asking for a bearer credential.
func unauthorized(c echo.Context, msg string) error {
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="callstate"`)
	return echo.NewHTTPError(http.StatusUnauthorized, msg)
}

// newCredential returns prefix and 32 random bytes in base64url, and its
// SHA-256.
func newCredential(prefix string) (string, []byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	s := prefix + base64.RawURLEncoding.EncodeToString(b)
	return s, HashCredential(s)
}

// HashCredential is what the store keeps of an enrollment token or a
// device credential.
func HashCredential(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// NewEnrollToken returns a one-time enrollment token and its hash.
func NewEnrollToken() (token string, hash []byte) { return newCredential(EnrollPrefix) }

// parseDeviceInput reads and checks POST /api/devices's body.
func parseDeviceInput(body []byte) (deviceInput, callstate.PushSubscription, error) {
	var in deviceInput
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return in, callstate.PushSubscription{}, fmt.Errorf("body must be JSON {\"user\" or \"extension\", \"subscription\", \"name\"}: %v", err)
	}
	switch {
	case (in.User == "") == (in.Extension == ""):
		return in, callstate.PushSubscription{}, errors.New("give either user (a sipgate user id such as w0) or extension, not both")
	case len(in.User) > 255 || !isText(in.User) || len(in.Extension) > 255 || !isText(in.Extension):
		return in, callstate.PushSubscription{}, errors.New("user and extension must be text of at most 255 bytes")
	case len(in.Name) > 100 || !isText(in.Name):
		return in, callstate.PushSubscription{}, errors.New("name must be text of at most 100 bytes")
	case len(in.Subscription) == 0:
		return in, callstate.PushSubscription{}, errors.New("subscription is required: the browser's PushSubscription JSON")
	}
	sub, err := callstate.ParseSubscription(in.Subscription)
	if err != nil {
		return in, sub, fmt.Errorf("subscription: %w", err)
	}
	return in, sub, nil
}

// add registers a device: POST /api/devices with the API's credentials or
// a one-time enrollment token (for its own user only).
func (a *deviceAPI) add(c echo.Context) error {
	req := c.Request()
	tok, _ := bearer(req.Header.Get(echo.HeaderAuthorization))
	var enrollHash []byte
	switch {
	case strings.HasPrefix(tok, EnrollPrefix):
		enrollHash = HashCredential(tok)
	case !a.creds.configured():
		return echo.NewHTTPError(http.StatusForbidden,
			"the API has no credentials (API_TOKEN or API_BASIC_AUTH_USER): devices can be registered only with an enrollment link (callstate devices enroll USER)")
	case !a.creds.match(req):
		return unauthorized(c, "missing or wrong credentials: the API token or an enrollment token")
	}
	body, err := readBody(c.Response(), req, maxDeviceBody)
	if err != nil {
		return err
	}
	in, sub, err := parseDeviceInput(body)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	if err := a.o.CheckEndpoint(sub.Endpoint); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "subscription.endpoint: "+strings.TrimPrefix(err.Error(), "webpush: "))
	}
	idb := make([]byte, 12)
	_, _ = rand.Read(idb)
	secret, hash := newCredential(DevicePrefix)
	d := callstate.Device{ID: base64.RawURLEncoding.EncodeToString(idb), UserID: in.User, Extension: in.Extension,
		Name: in.Name, Subscription: sub}
	ctx, cancel := a.ctx(c)
	defer cancel()
	got, err := a.o.Store.AddDevice(ctx, d, hash, enrollHash)
	switch {
	case errors.Is(err, callstate.ErrEnrollment):
		return unauthorized(c, "enrollment token unknown, used or expired: ask for a new link (callstate devices enroll USER)")
	case errors.Is(err, callstate.ErrOtherUser):
		return echo.NewHTTPError(http.StatusForbidden, "this enrollment token registers a device for its own user only")
	case err != nil:
		return err
	}
	a.log.Info("wake: device registered", "device", got.ID, "user", got.UserID, "extension", got.Extension,
		"by", map[bool]string{true: "enrollment", false: "api token"}[enrollHash != nil])
	return c.JSON(http.StatusCreated, deviceJSON{ID: got.ID, User: got.UserID, Extension: got.Extension, Name: got.Name, Secret: secret})
}

// deviceID checks a path's device id: what newCredential's ids look like.
func deviceID(c echo.Context) (string, error) {
	id := c.Param("id")
	if len(id) == 0 || len(id) > 64 || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		return "", echo.NewHTTPError(http.StatusNotFound, "no such device")
	}
	return id, nil
}

// ownCredential reports whether req carries device id's own credential.
// ErrNotFound when there is no such device.
func (a *deviceAPI) ownCredential(ctx context.Context, req *http.Request, id string) (bool, error) {
	tok, ok := bearer(req.Header.Get(echo.HeaderAuthorization))
	if !ok || !strings.HasPrefix(tok, DevicePrefix) {
		return false, nil
	}
	want, err := a.o.Store.DeviceSecretHash(ctx, id)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(HashCredential(tok), want) == 1, nil
}

// remove deletes a device: the API's credentials or its own.
func (a *deviceAPI) remove(c echo.Context) error {
	id, err := deviceID(c)
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx(c)
	defer cancel()
	if !(a.creds.configured() && a.creds.match(c.Request())) {
		own, err := a.ownCredential(ctx, c.Request(), id)
		switch {
		case errors.Is(err, callstate.ErrNotFound):
			return unauthorized(c, "missing or wrong credentials: the API token or the device's own")
		case err != nil:
			return err
		case !own:
			return unauthorized(c, "missing or wrong credentials: the API token or the device's own")
		}
	}
	if err := a.o.Store.DeleteDevice(ctx, id); errors.Is(err, callstate.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "no such device").SetInternal(err)
	} else if err != nil {
		return err
	}
	a.log.Info("wake: device removed", "device", id)
	return c.NoContent(http.StatusNoContent)
}

// ready takes a device's "I am awake" for a call pushed to it: its own
// credential only.
func (a *deviceAPI) ready(c echo.Context) error {
	id, err := deviceID(c)
	if err != nil {
		return err
	}
	call := c.QueryParam("call")
	if call == "" || len(call) > 255 || !isText(call) {
		return echo.NewHTTPError(http.StatusBadRequest, "call must be the id of the call pushed (the push's \"call\")")
	}
	c.Set(ctxCallID, call)
	ctx, cancel := a.ctx(c)
	defer cancel()
	own, err := a.ownCredential(ctx, c.Request(), id)
	switch {
	case errors.Is(err, callstate.ErrNotFound), err == nil && !own:
		return unauthorized(c, "missing or wrong credentials: the device's own (dev_…)")
	case err != nil:
		return err
	}
	if err := a.o.Store.WakeReady(ctx, id, call); errors.Is(err, callstate.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "no push of that call to this device").SetInternal(err)
	} else if err != nil {
		return err
	}
	a.m.WakeReadyReport()
	if a.o.Readied != nil {
		a.o.Readied(call)
	}
	return c.NoContent(http.StatusNoContent)
}
