package main

import (
	"context"
	"log/slog"
)

// timeZoneSetter is what setStatsTimeZone needs of the store.
type timeZoneSetter interface {
	Ready() <-chan struct{}
	SetTimeZone(ctx context.Context, tz string) (changed bool, err error)
}

// setStatsTimeZone writes STATS_TIME_ZONE to the database once it is
// connected, so that journey_stats_day cuts days in it. A zone the
// database does not know is logged, and the days stay cut as before.
func setStatsTimeZone(ctx context.Context, st timeZoneSetter, tz string, log *slog.Logger) error {
	select {
	case <-ctx.Done():
		return nil
	case <-st.Ready():
	}
	changed, err := st.SetTimeZone(ctx, tz)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Error("STATS_TIME_ZONE not set in the database; journey stats keep cutting days as before", "time_zone", tz, "err", err)
	case changed:
		log.Info("journey stats now cut days in STATS_TIME_ZONE; every journey's day was computed again", "time_zone", tz)
	}
	return nil
}
