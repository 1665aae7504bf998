package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/callstate/callstate/store"
)

// forgetOldCalls deletes, once the database is there and then every hour,
// the rows of the calls that ended more than keep ago.
func forgetOldCalls(ctx context.Context, st *store.Store, keep time.Duration, log *slog.Logger) error {
	return everyOnceReady(ctx, st, time.Hour, func() {
		cutoff := time.Now().Add(-keep)
		calls, err := st.Forget(ctx, cutoff)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			log.Warn("forgetting old calls failed; trying again in an hour", "retention", keep, "err", err)
		case calls > 0:
			log.Info("forgot calls past RETENTION_CALLS", "calls", calls, "ended_before", cutoff.Format(time.RFC3339))
		}
	})
}

// keepJournal makes, once the database is there and then every hour, the
// journal's partitions of the next days and, when keep is not 0, drops
// those of the days that ended more than keep ago.
func keepJournal(ctx context.Context, st *store.Store, keep time.Duration, log *slog.Logger) error {
	return everyOnceReady(ctx, st, time.Hour, func() {
		now := time.Now()
		if _, err := st.EnsureJournalPartitions(ctx, now); err != nil && ctx.Err() == nil {
			log.Warn("making the journal's partitions ahead failed; writes make their own, trying again in an hour", "err", err)
		}
		if keep == 0 {
			return
		}
		cutoff := now.Add(-keep)
		parts, keys, err := st.DropJournalBefore(ctx, cutoff)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			log.Warn("dropping the journal's old days failed; trying again in an hour", "retention", keep, "err", err)
		case parts > 0 || keys > 0:
			log.Info("dropped the journal's days past RETENTION_EVENTS", "partitions", parts, "dedup_keys", keys,
				"before", cutoff.UTC().Format(time.DateOnly))
		}
	})
}

// readier is a store that says when it is connected and migrated: its
// Ready channel is closed then.
type readier interface {
	Ready() <-chan struct{}
}

// onceReady waits until st is ready; it reports false when ctx is done
// first.
func onceReady(ctx context.Context, st readier) bool {
	select {
	case <-ctx.Done():
		return false
	case <-st.Ready():
		return true
	}
}

// everyOnceReady runs fn once st is ready and then every d, until ctx is
// done; it returns nil then. fn logs its own failures: the next run is the
// retry.
func everyOnceReady(ctx context.Context, st readier, d time.Duration, fn func()) error {
	if !onceReady(ctx, st) {
		return nil
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
