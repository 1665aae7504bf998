package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/callstate/callstate"
)

// WebhookStore is what /api/webhooks needs from a store.
type WebhookStore interface {
	// Webhooks returns every endpoint.
	Webhooks(ctx context.Context) ([]callstate.WebhookEndpoint, error)
	// Webhook returns one, or an error wrapping callstate.ErrNotFound.
	Webhook(ctx context.Context, id int64) (callstate.WebhookEndpoint, error)
	// CreateWebhook adds one; it receives the events that come after.
	CreateWebhook(ctx context.Context, e callstate.WebhookEndpoint) (callstate.WebhookEndpoint, error)
	// UpdateWebhook sets URL, description, types, format and enabled.
	UpdateWebhook(ctx context.Context, e callstate.WebhookEndpoint) (callstate.WebhookEndpoint, error)
	// DeleteWebhook deletes one with its deliveries.
	DeleteWebhook(ctx context.Context, id int64) error
	// RotateWebhookSecret makes secret the current one; the one before
	// signs too for keepOld.
	RotateWebhookSecret(ctx context.Context, id int64, secret string, keepOld time.Duration) (callstate.WebhookEndpoint, error)
	// WebhookDeliveries returns an endpoint's last deliveries, newest first.
	WebhookDeliveries(ctx context.Context, id int64, status string, limit int) ([]callstate.WebhookDelivery, error)
	// WebhookAttempts returns a delivery's tries.
	WebhookAttempts(ctx context.Context, deliveryID int64) ([]callstate.WebhookAttempt, error)
	// ReplayWebhook sends again what failed or waits since since, and
	// asks for a backfill of the feed's events since since that the
	// endpoint never had.
	ReplayWebhook(ctx context.Context, id int64, since time.Time) (int64, error)
	// QueueWebhookMessage adds a delivery of no feed event (a test).
	QueueWebhookMessage(ctx context.Context, d callstate.WebhookDelivery) (callstate.WebhookDelivery, error)
}

// WebhookOptions serve /api/webhooks. Its writes exist only when the API
// has credentials (API_TOKEN or basic auth): on an open install nobody may
// send call data to a URL of their own.
type WebhookOptions struct {
	Store       WebhookStore
	NewSecret   func() string                                                        // a new whsec_ secret
	TestMessage func(callstate.WebhookEndpoint, time.Time) callstate.WebhookDelivery // the test message of /test
	Sent        func()                                                               // a delivery was queued (wakes the sender); nil: none
}

// rotationOverlap is how long a rotated-out secret still signs.
const rotationOverlap = 24 * time.Hour

type webhookJSON struct {
	ID             int64     `json:"id"`
	URL            string    `json:"url"`
	Description    string    `json:"description"`
	Types          []string  `json:"types"`
	Format         string    `json:"format"`
	Enabled        bool      `json:"enabled"`
	DisabledReason string    `json:"disabled_reason,omitempty"`
	FromConfig     bool      `json:"from_config"`
	Secret         string    `json:"secret,omitempty"` // only when made or rotated
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

func toWebhookJSON(e callstate.WebhookEndpoint) webhookJSON {
	types := e.Types
	if len(types) == 0 {
		types = callstate.FeedTypes
	}
	return webhookJSON{ID: e.ID, URL: e.URL, Description: e.Description, Types: types, Format: e.Format,
		Enabled: e.Enabled, DisabledReason: e.DisabledReason, FromConfig: e.FromConfig,
		CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt}
}

// webhookInput is the body of POST and PATCH; absent fields stay as they are.
type webhookInput struct {
	URL         *string   `json:"url"`
	Description *string   `json:"description"`
	Types       *[]string `json:"types"`
	Format      *string   `json:"format"`
	Enabled     *bool     `json:"enabled"`
}

// apply sets in's fields on e and checks them.
func (in webhookInput) apply(e *callstate.WebhookEndpoint) error {
	if in.URL != nil {
		u, err := url.Parse(*in.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(*in.URL) > 2000 {
			return errors.New("url must be an absolute http or https URL")
		}
		e.URL = *in.URL
	}
	if in.Description != nil {
		if len(*in.Description) > 500 {
			return errors.New("description: at most 500 characters")
		}
		e.Description = *in.Description
	}
	if in.Types != nil {
		for _, t := range *in.Types {
			if !callstate.KnownFeedType(t) {
				return fmt.Errorf("types: %q is no event type of the feed", t)
			}
		}
		e.Types = *in.Types
	}
	if in.Format != nil {
		if !callstate.ValidFormat(*in.Format) {
			return errors.New("format must be standard, zammad or chat")
		}
		e.Format = *in.Format
	}
	if in.Enabled != nil {
		e.Enabled = *in.Enabled
	}
	return nil
}

type deliveryJSON struct {
	ID          int64         `json:"id"`
	MsgID       string        `json:"msg_id"`
	FeedID      int64         `json:"feed_id,omitempty"`
	Type        string        `json:"type"`
	JourneyID   string        `json:"journey_id,omitempty"`
	Status      string        `json:"status"`
	Attempts    int           `json:"attempts"`
	NextAt      *time.Time    `json:"next_at,omitempty"`
	LastStatus  int           `json:"last_status,omitempty"`
	LastError   string        `json:"last_error,omitempty"`
	DeliveredAt *time.Time    `json:"delivered_at,omitempty"`
	CreatedAt   time.Time     `json:"created_at"`
	Tries       []attemptJSON `json:"tries,omitempty"`
}

type attemptJSON struct {
	At         time.Time `json:"at"`
	Status     int       `json:"status"`
	Error      string    `json:"error,omitempty"`
	DurationMS int64     `json:"duration_ms"`
}

type webhookAPI struct {
	*api
	o        WebhookOptions
	writable bool
}

// registerWebhooks adds /api/webhooks to g; writes only when writable.
func registerWebhooks(g *echo.Group, a *api, o WebhookOptions, writable bool, shed echo.MiddlewareFunc) {
	w := &webhookAPI{api: a, o: o, writable: writable}
	g.GET("/webhooks", w.list, shed)
	g.GET("/webhooks/:id", w.get, shed)
	g.GET("/webhooks/:id/deliveries", w.deliveries, shed)
	g.POST("/webhooks", w.write(w.create), shed)
	g.PATCH("/webhooks/:id", w.write(w.update), shed)
	g.DELETE("/webhooks/:id", w.write(w.delete), shed)
	g.POST("/webhooks/:id/rotate", w.write(w.rotate), shed)
	g.POST("/webhooks/:id/replay", w.write(w.replay), shed)
	g.POST("/webhooks/:id/test", w.write(w.test), shed)
}

// write refuses every write when the API has no credentials.
func (w *webhookAPI) write(h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !w.writable {
			return echo.NewHTTPError(http.StatusForbidden,
				"webhook endpoints can be changed only when the API has credentials (API_TOKEN or API_BASIC_AUTH_USER)")
		}
		return h(c)
	}
}

func webhookID(c echo.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, echo.NewHTTPError(http.StatusBadRequest, "id must be a positive whole number")
	}
	return id, nil
}

func notFound(id int64, err error) error {
	if errors.Is(err, callstate.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf("no webhook endpoint with id %d", id)).SetInternal(err)
	}
	return err
}

func (w *webhookAPI) list(c echo.Context) error {
	ctx, cancel := w.queryContext(c)
	defer cancel()
	es, err := w.o.Store.Webhooks(ctx)
	if err != nil {
		return err
	}
	out := make([]webhookJSON, 0, len(es))
	for _, e := range es {
		out = append(out, toWebhookJSON(e))
	}
	return c.JSON(http.StatusOK, map[string]any{"webhooks": out})
}

// endpoint returns the endpoint the path's :id names, or the error to
// answer: 400 for an id that is no number, 404 for one no endpoint has.
func (w *webhookAPI) endpoint(ctx context.Context, c echo.Context) (callstate.WebhookEndpoint, error) {
	id, err := webhookID(c)
	if err != nil {
		return callstate.WebhookEndpoint{}, err
	}
	e, err := w.o.Store.Webhook(ctx, id)
	if err != nil {
		return callstate.WebhookEndpoint{}, notFound(id, err)
	}
	return e, nil
}

func (w *webhookAPI) get(c echo.Context) error {
	ctx, cancel := w.queryContext(c)
	defer cancel()
	e, err := w.endpoint(ctx, c)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toWebhookJSON(e))
}

func (w *webhookAPI) create(c echo.Context) error {
	var in webhookInput
	if err := c.Bind(&in); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "body must be a JSON object: {url, description, types, format, enabled}")
	}
	if in.URL == nil {
		return echo.NewHTTPError(http.StatusBadRequest, "url must be set")
	}
	e := callstate.WebhookEndpoint{Format: callstate.FormatStandard, Enabled: true, Secrets: []string{w.o.NewSecret()}}
	if err := in.apply(&e); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	ctx, cancel := w.queryContext(c)
	defer cancel()
	made, err := w.o.Store.CreateWebhook(ctx, e)
	if err != nil {
		return err
	}
	w.log.Info("webhook endpoint made", "endpoint", made.ID, "url", made.URL, "format", made.Format)
	out := toWebhookJSON(made)
	out.Secret = e.Secrets[0]
	c.Response().Header().Set(echo.HeaderLocation, fmt.Sprintf("/api/webhooks/%d", made.ID))
	return c.JSON(http.StatusCreated, out)
}

func (w *webhookAPI) update(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	var in webhookInput
	if err := c.Bind(&in); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "body must be a JSON object: {url, description, types, format, enabled}")
	}
	ctx, cancel := w.queryContext(c)
	defer cancel()
	e, err := w.endpoint(ctx, c)
	if err != nil {
		return err
	}
	if e.FromConfig && (in.URL != nil || in.Types != nil || in.Format != nil) {
		return echo.NewHTTPError(http.StatusConflict, "the endpoint of EVENTS_WEBHOOK_URL is set by the configuration; only enabled and description can change here")
	}
	if err := in.apply(&e); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	got, err := w.o.Store.UpdateWebhook(ctx, e)
	if err != nil {
		return notFound(id, err)
	}
	if in.Enabled != nil && *in.Enabled && w.o.Sent != nil {
		w.o.Sent()
	}
	return c.JSON(http.StatusOK, toWebhookJSON(got))
}

func (w *webhookAPI) delete(c echo.Context) error {
	ctx, cancel := w.queryContext(c)
	defer cancel()
	e, err := w.endpoint(ctx, c)
	if err != nil {
		return err
	}
	if e.FromConfig {
		return echo.NewHTTPError(http.StatusConflict, "the endpoint of EVENTS_WEBHOOK_URL is removed by unsetting it")
	}
	if err := w.o.Store.DeleteWebhook(ctx, e.ID); err != nil {
		return notFound(e.ID, err)
	}
	return c.NoContent(http.StatusNoContent)
}

func (w *webhookAPI) rotate(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	ctx, cancel := w.queryContext(c)
	defer cancel()
	secret := w.o.NewSecret()
	e, err := w.o.Store.RotateWebhookSecret(ctx, id, secret, rotationOverlap)
	if err != nil {
		return notFound(id, err)
	}
	out := toWebhookJSON(e)
	out.Secret = secret
	return c.JSON(http.StatusOK, out)
}

func (w *webhookAPI) deliveries(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	status := c.QueryParam("status")
	if status != "" && status != callstate.DeliveryPending && status != callstate.DeliveryDelivered && status != callstate.DeliveryFailed {
		return echo.NewHTTPError(http.StatusBadRequest, "status must be pending, delivered or failed")
	}
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return echo.NewHTTPError(http.StatusBadRequest, "limit must be 1 to 1000")
		}
		limit = n
	}
	ctx, cancel := w.queryContext(c)
	defer cancel()
	if _, err := w.o.Store.Webhook(ctx, id); err != nil {
		return notFound(id, err)
	}
	ds, err := w.o.Store.WebhookDeliveries(ctx, id, status, limit)
	if err != nil {
		return err
	}
	out := make([]deliveryJSON, 0, len(ds))
	for _, d := range ds {
		j := deliveryJSON{ID: d.ID, MsgID: d.MsgID, FeedID: d.FeedID, Type: d.Type, JourneyID: d.JourneyID,
			Status: d.Status, Attempts: d.Attempts, LastStatus: d.LastStatus, LastError: d.LastError,
			CreatedAt: d.CreatedAt}
		if d.Status == callstate.DeliveryPending {
			j.NextAt = timePtr(d.NextAt)
		}
		j.DeliveredAt = timePtr(d.DeliveredAt)
		if d.Status != callstate.DeliveryDelivered || d.Attempts > 1 {
			as, err := w.o.Store.WebhookAttempts(ctx, d.ID)
			if err != nil {
				return err
			}
			for _, a := range as {
				j.Tries = append(j.Tries, attemptJSON{At: a.At, Status: a.Status, Error: a.Error, DurationMS: a.Duration.Milliseconds()})
			}
		}
		out = append(out, j)
	}
	return c.JSON(http.StatusOK, map[string]any{"deliveries": out})
}

func (w *webhookAPI) replay(c echo.Context) error {
	id, err := webhookID(c)
	if err != nil {
		return err
	}
	since, err := time.Parse(time.RFC3339, c.QueryParam("since"))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "since must be an RFC 3339 time, e.g. 2026-12-01T08:00:00Z")
	}
	ctx, cancel := w.queryContext(c)
	defer cancel()
	n, err := w.o.Store.ReplayWebhook(ctx, id, since)
	if err != nil {
		return notFound(id, err)
	}
	if w.o.Sent != nil {
		w.o.Sent()
	}
	return c.JSON(http.StatusAccepted, map[string]int64{"replayed": n})
}

func (w *webhookAPI) test(c echo.Context) error {
	ctx, cancel := w.queryContext(c)
	defer cancel()
	e, err := w.endpoint(ctx, c)
	if err != nil {
		return err
	}
	d, err := w.o.Store.QueueWebhookMessage(ctx, w.o.TestMessage(e, w.now()))
	if err != nil {
		return err
	}
	if w.o.Sent != nil {
		w.o.Sent()
	}
	return c.JSON(http.StatusAccepted, map[string]any{"delivery_id": d.ID, "msg_id": d.MsgID})
}
