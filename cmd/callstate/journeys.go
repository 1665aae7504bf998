package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/callstate/callstate"
)

// journeySettings is what setJourneySettings needs of the store.
type journeySettings interface {
	Ready() <-chan struct{}
	SetTimeZone(ctx context.Context, tz string) (moved bool, err error)
	SetServiceLevel(ctx context.Context, sla, short time.Duration) (changed bool, err error)
	SetRingingStale(ctx context.Context, d time.Duration) error
}

// dayTimeZone is the time zone whose midnight cuts the team's days:
// STATS_TIME_ZONE when set, else PHONE_REGION's when the region has a
// single one (DE: Europe/Berlin), else UTC (guessed is then true). It is
// derived from the settings only, never from the host, so that every
// instance cuts days alike.
func dayTimeZone(cfg Config) (tz, from string, guessed bool) {
	if cfg.StatsTimeZone != "" {
		return cfg.StatsTimeZone, "STATS_TIME_ZONE", false
	}
	if tz, ok := callstate.RegionTimeZone(cfg.Dashboard.PhoneRegion); ok {
		return tz, "PHONE_REGION", false
	}
	return "UTC", "", true
}

// setJourneySettings writes the day's time zone (dayTimeZone) and the
// service level's thresholds to the database once it is connected, so
// that journey_stats_day cuts days and counts as configured; it logs the
// time zone. A change computes every journey's day, or every day's stats,
// again, once. A zone the database does not know is logged, and the days
// stay cut as before.
func setJourneySettings(ctx context.Context, st journeySettings, cfg Config, log *slog.Logger) error {
	tz, from, guessed := dayTimeZone(cfg)
	if guessed {
		log.Warn("PHONE_REGION has several time zones (or none known): the team's days are cut at midnight UTC; set STATS_TIME_ZONE",
			"phone_region", cfg.Dashboard.PhoneRegion, "time_zone", tz)
	} else {
		log.Info("the team's days are cut at midnight in this time zone", "time_zone", tz, "from", from)
	}
	if !onceReady(ctx, st) {
		return nil
	}
	moved, err := st.SetTimeZone(ctx, tz)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Error("time zone not set in the database; journey stats keep cutting days as before", "time_zone", tz, "err", err)
	case moved:
		log.Info("journey stats now cut days in a new time zone; the journeys' days were computed again", "time_zone", tz)
	}
	sla, short := time.Duration(cfg.SLASeconds)*time.Second, time.Duration(cfg.ShortAbandonSeconds)*time.Second
	changed, err := st.SetServiceLevel(ctx, sla, short)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Error("SLA_SECONDS and SHORT_ABANDON_SECONDS not set in the database; the stats keep the thresholds they had",
			"sla", sla, "short_abandon", short, "err", err)
	case changed:
		log.Info("service level thresholds changed; every day's stats were computed again", "sla", sla, "short_abandon", short)
	}
	if err := st.SetRingingStale(ctx, cfg.RingingStale); err != nil && ctx.Err() == nil {
		log.Error("SIPGATE_RINGING_STALE not set in the database; /api/today counts ringing calls as before", "err", err)
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
	var warned time.Time
	return everyOnceReady(ctx, st, statsCompactEvery, func() {
		if _, err := st.CompactJourneyStats(ctx); err != nil && ctx.Err() == nil && time.Since(warned) > time.Minute {
			warned = time.Now()
			log.Warn("journey stats: compacting their changes failed; trying again", "err", err)
		}
	})
}
