package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/webhook"
)

// eventsConfig holds the settings of the feed of typed events and of the
// webhooks sent out of it (docs/events.md).
type eventsConfig struct {
	Retention     time.Duration `env:"EVENTS_RETENTION" envDefault:"7d" validate:"min=1h"`
	WebhookURL    string        `env:"EVENTS_WEBHOOK_URL" validate:"omitempty,http_url"`
	WebhookSecret string        `env:"EVENTS_WEBHOOK_SECRET" secret:"true" validate:"required_with=WebhookURL,omitempty,whsec"`
	WebhookTypes  []string      `env:"EVENTS_WEBHOOK_TYPES" validate:"dive,feedtype"`
	WebhookFormat string        `env:"EVENTS_WEBHOOK_FORMAT" envDefault:"standard" validate:"oneof=standard zammad chat"`
	RetrySchedule string        `env:"EVENTS_WEBHOOK_RETRY_SCHEDULE" envDefault:"0s,5s,5m,30m,2h,5h,10h,10h" validate:"retryschedule"`
	AllowPrivate  bool          `env:"EVENTS_WEBHOOK_ALLOW_PRIVATE" envDefault:"false"`
}

// parseSchedule reads EVENTS_WEBHOOK_RETRY_SCHEDULE: the waits before each
// try, comma-separated (the first try's is usually 0s).
func parseSchedule(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d < 0 || d > 7*24*time.Hour {
			return nil, fmt.Errorf("bad wait %q", f)
		}
		out = append(out, d)
	}
	if len(out) == 0 || len(out) > 50 {
		return nil, errors.New("want 1 to 50 waits")
	}
	return out, nil
}

// keepFeed deletes, once the database is there and then every hour, the
// feed's events and the webhook deliveries made more than keep ago.
// RETENTION_EVENTS, the journal's, does not apply to them.
func keepFeed(ctx context.Context, st *store.Store, keep time.Duration, log *slog.Logger) error {
	return everyOnceReady(ctx, st, time.Hour, func() {
		cutoff := time.Now().Add(-keep)
		n, err := st.ForgetFeed(ctx, cutoff)
		var d int64
		if err == nil {
			d, err = st.ForgetWebhookDeliveries(ctx, cutoff)
		}
		switch {
		case ctx.Err() != nil:
		case err != nil:
			log.Warn("forgetting the feed's old events failed; trying again in an hour", "retention", keep, "err", err)
		case n > 0 || d > 0:
			log.Info("forgot the feed's events and webhook deliveries past EVENTS_RETENTION", "events", n, "deliveries", d,
				"before", cutoff.Format(time.RFC3339))
		}
	})
}

// userNames knows the sipgate users' names (from the lamps), for the
// chat format; it reads them again at most every half minute.
type userNames struct {
	st   *store.Store
	mu   sync.Mutex
	at   time.Time
	name map[string]string
}

func (u *userNames) UserName(id string) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if time.Since(u.at) > 30*time.Second {
		u.at = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ls, err := u.st.LampStatuses(ctx)
		cancel()
		if err == nil {
			u.name = map[string]string{}
			for _, l := range ls {
				if l.Name != "" {
					u.name[l.Extension] = l.Name
				}
			}
		}
	}
	return u.name[id]
}

// names joins the phonebook and the users' names.
type names struct {
	*handlers.Phonebook
	*userNames
}

// newWebhooks returns the sender of the feed's events to the webhook
// endpoints, with its metrics; startWebhooks runs it.
func newWebhooks(cfg Config, st *store.Store, pb *handlers.Phonebook, m *metrics.Metrics, log *slog.Logger) *webhook.Sender {
	schedule, _ := parseSchedule(cfg.Events.RetrySchedule) // validated
	tz, _, _ := dayTimeZone(cfg)
	loc, err := time.LoadLocation(tz)
	if err != nil {
		loc = time.UTC
	}
	s := webhook.New(st, webhook.Options{
		Schedule: schedule, AllowPrivate: cfg.Events.AllowPrivate, Logger: log,
		Renderer: webhook.Renderer{Names: names{pb, &userNames{st: st}}, Location: loc},
	})
	registerWebhookMetrics(m, s)
	return s
}

// webhookOptions serve /api/webhooks with s.
func webhookOptions(st *store.Store, s *webhook.Sender) *handlers.WebhookOptions {
	return &handlers.WebhookOptions{Store: st, NewSecret: webhook.NewSecret, TestMessage: webhook.TestMessage, Sent: s.Sent}
}

// startWebhooks makes (or enables again) the endpoint of EVENTS_WEBHOOK_URL
// once the database is there, or deletes it when the variable is unset,
// and runs s. Every instance sends; deliveries are shared through the
// database.
func startWebhooks(ctx context.Context, g *errgroup.Group, cfg eventsConfig, st *store.Store, changes *changeFeed, s *webhook.Sender, log *slog.Logger) {
	changes.subscribe(func(store.Change) { s.Notify() })
	g.Go(func() error {
		if !onceReady(ctx, st) {
			return nil
		}
		ep := callstate.WebhookEndpoint{URL: cfg.WebhookURL, Types: cfg.WebhookTypes, Format: cfg.WebhookFormat}
		if cfg.WebhookSecret != "" {
			ep.Secrets = []string{cfg.WebhookSecret}
		}
		got, was, err := st.ConfigWebhook(ctx, ep)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("webhooks: EVENTS_WEBHOOK_URL's endpoint could not be written; its events are not sent", "err", err)
		case was != "":
			log.Warn("webhooks: EVENTS_WEBHOOK_URL's endpoint was disabled; enabled again at start", "endpoint", got.ID, "was", was)
		case cfg.WebhookURL != "":
			log.Info("webhooks: sending events to EVENTS_WEBHOOK_URL", "endpoint", got.ID, "format", got.Format)
		}
		return s.Run(ctx)
	})
}
