package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
)

// CauseTimeout is the hangup cause of a sipgate call that callstate ended
// itself because its end never came.
const CauseTimeout = callstate.CauseTimeout

// eventApplier takes events: the spool in front of the store.
type eventApplier interface {
	Apply(ctx context.Context, ev callstate.Event) (bool, error)
}

// endStuckCalls ends, once the database is there and then every so often,
// the sipgate calls ringing longer than ringing or answered longer than
// answered (0 leaves that state alone): sipgate's hangup does go missing
// now and then, and a call must not stay active for ever.
func endStuckCalls(ctx context.Context, st *store.Store, events eventApplier, ringing, answered time.Duration, log *slog.Logger) error {
	every := time.Minute
	for _, d := range []time.Duration{ringing, answered} {
		if d > 0 {
			every = min(every, max(d/4, 5*time.Second))
		}
	}
	return everyOnceReady(ctx, st, every, func() {
		if _, err := endStuckOnce(ctx, st, events, time.Now(), ringing, answered, log); err != nil && ctx.Err() == nil {
			log.Warn("ending stuck sipgate calls failed; trying again", "in", every, "err", err)
		}
	})
}

// endStuckOnce ends the calls stuck at now and returns how many. Each end
// is an event of its own in the journal (type timeout, cause timeout), so
// that it is visible why the call ended; its dedup key makes several
// instances end a call once.
func endStuckOnce(ctx context.Context, st *store.Store, events eventApplier, now time.Time, ringing, answered time.Duration, log *slog.Logger) (int, error) {
	var ringingBefore, answeredBefore time.Time
	if ringing > 0 {
		ringingBefore = now.Add(-ringing)
	}
	if answered > 0 {
		answeredBefore = now.Add(-answered)
	}
	if ringingBefore.IsZero() && answeredBefore.IsZero() {
		return 0, nil
	}
	calls, err := st.StuckCalls(ctx, callstate.SourceSipgate, ringingBefore, answeredBefore, 1000)
	if err != nil {
		return 0, err
	}
	ended := 0
	for _, c := range calls {
		limit, setting := ringing, "SIPGATE_RINGING_TIMEOUT"
		since := c.StartedAt
		if c.State == callstate.StateAnswered {
			limit, setting, since = answered, "SIPGATE_ANSWERED_TIMEOUT", c.AnsweredAt
		}
		ev := callstate.Event{
			Source:     callstate.SourceSipgate,
			Type:       "timeout",
			DedupKey:   "timeout:" + c.Key,
			ReceivedAt: callstate.EventTime(now),
			Payload:    fmt.Appendf(nil, "ended by callstate: %s longer than %s=%s", c.State, setting, limit),
			Update:     callstate.Update{Key: c.Key, State: callstate.StateEnded, Cause: CauseTimeout, Guessed: true},
		}
		if _, err := events.Apply(ctx, ev); err != nil {
			return ended, fmt.Errorf("end stuck call %s: %w", c.Key, err)
		}
		ended++
		log.Info("ended a sipgate call whose end never came", "call_id", c.Key, "state", c.State.String(),
			"since", since.Format(time.RFC3339), "limit", limit)
	}
	return ended, nil
}
