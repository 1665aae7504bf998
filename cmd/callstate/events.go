package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/callstate/callstate/store"
)

// eventsConfig holds the settings of the feed of typed events and of what
// is sent out of it.
type eventsConfig struct {
	Retention time.Duration `env:"EVENTS_RETENTION" default:"7d" validate:"min=1h"`
}

// keepFeed deletes, once the database is there and then every hour, the
// feed's events written more than keep ago. RETENTION_EVENTS, the
// journal's, does not apply to them.
func keepFeed(ctx context.Context, st *store.Store, keep time.Duration, log *slog.Logger) error {
	return hourly(ctx, st, func() {
		cutoff := time.Now().Add(-keep)
		n, err := st.ForgetFeed(ctx, cutoff)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			log.Warn("forgetting the feed's old events failed; trying again in an hour", "retention", keep, "err", err)
		case n > 0:
			log.Info("forgot the feed's events past EVENTS_RETENTION", "events", n, "before", cutoff.Format(time.RFC3339))
		}
	})
}
