package main

import (
	"context"
	"log/slog"
	"time"
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

// statsCompactEvery is how often journey_stats_day's changes are folded
// into one row per day and user (store.CompactJourneyStats).
const statsCompactEvery = 5 * time.Second

// journeyStatsCompactor is what compactJourneyStats needs of the store.
type journeyStatsCompactor interface {
	Ready() <-chan struct{}
	CompactJourneyStats(ctx context.Context) (days int, err error)
}

// compactJourneyStats folds journey_stats_day's changes every
// statsCompactEvery until ctx is done. Failures are logged, at most once
// a minute, and tried again at the next tick.
func compactJourneyStats(ctx context.Context, st journeyStatsCompactor, log *slog.Logger) error {
	select {
	case <-ctx.Done():
		return nil
	case <-st.Ready():
	}
	t := time.NewTicker(statsCompactEvery)
	defer t.Stop()
	var warned time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := st.CompactJourneyStats(ctx); err != nil && ctx.Err() == nil && time.Since(warned) > time.Minute {
			warned = time.Now()
			log.Warn("journey stats: compacting their changes failed; trying again", "err", err)
		}
	}
}
