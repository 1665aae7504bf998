package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sipgateapi"
	"github.com/callstate/callstate/store"
)

// Reconciliation with sipgate's own record (docs/reconcile.md).
const (
	// reconcileCursor names the history walk's cursor and lease.
	reconcileCursor = "sipgate-history"
	// reconcileOverlap is how far before its cursor each walk starts
	// again: sipgate may write a call's entry late (when it ends), and
	// the walk reads it then.
	reconcileOverlap = 15 * time.Minute
	// reconcileFirstLookback is how far back the very first walk reads;
	// "callstate reconcile --since" reaches further.
	reconcileFirstLookback = time.Hour
	// reconcileActiveLookback bounds how far back a walk reaches for the
	// calls still active: their entries are read whatever the cursor.
	reconcileActiveLookback = 24 * time.Hour
	// reconcileBatch is how many entries are matched with the store at once.
	reconcileBatch = 1000
)

// reconciler compares the calls the webhooks made with sipgate's record
// and fills, as journaled "reconciled" events, what the webhooks never
// told. Its counters are read by the metrics.
type reconciler struct {
	st        *store.Store
	events    eventApplier
	api       *sipgateapi.Client
	plan      callstate.NumberPlan
	owner     string        // this instance, for the lease
	interval  time.Duration // between rounds
	retention time.Duration // RETENTION_CALLS: no call older is created
	log       *slog.Logger
	out       io.Writer // "callstate reconcile": each fill is printed here

	ended, created, disagreeing, unmatched, failures atomic.Int64
	lastSuccess                                      atomic.Int64 // Unix nanoseconds, this instance's or another's
	once                                             onceSet
}

// reconcileReport counts what one walk or round did.
type reconcileReport struct {
	Entries, Ended, Created, Disagreeing, Unmatched, Erased int
}

// run reconciles every interval while ctx lasts, when this instance holds
// the lease. A failed round is logged and counted, and the next comes an
// interval later: within a round the client already tried again with
// backoff (and after a 429 as long as sipgate asked).
func (r *reconciler) run(ctx context.Context) error {
	r.lastSuccess.Store(time.Now().UnixNano()) // no alert before the first round could run
	ran := false
	everyOnceReady(ctx, r.st, r.interval, func() {
		ran = true
		if err := r.round(ctx, time.Now()); err != nil && ctx.Err() == nil {
			r.failures.Add(1)
			r.log.Warn("reconciliation with sipgate failed; trying again", "in", r.interval, "err", err)
		}
	})
	if ran { // give the lease up for another instance
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = r.st.ReleaseReconcile(ctx, reconcileCursor, r.owner)
		cancel()
	}
	return nil
}

// round is one round: with the lease, the history walk and the live
// calls; without, it only notes when the holder last succeeded.
func (r *reconciler) round(ctx context.Context, now time.Time) error {
	held, err := r.st.ClaimReconcile(ctx, reconcileCursor, r.owner, 3*r.interval)
	if err != nil {
		return err
	}
	if !held {
		if _, advanced, ok, err := r.st.ReconcileCursor(ctx, reconcileCursor); err == nil && ok {
			r.noteSuccess(advanced)
		}
		return nil
	}
	rep, err := r.reconcile(ctx, now)
	if err != nil {
		return err
	}
	r.noteSuccess(now)
	if rep.Ended+rep.Created+rep.Disagreeing+rep.Unmatched > 0 {
		r.log.Info("reconciled with sipgate's record", "entries", rep.Entries, "ended", rep.Ended, "created", rep.Created,
			"disagreeing", rep.Disagreeing, "unmatched", rep.Unmatched)
	}
	return nil
}

func (r *reconciler) noteSuccess(at time.Time) {
	for {
		old := r.lastSuccess.Load()
		if at.UnixNano() <= old || r.lastSuccess.CompareAndSwap(old, at.UnixNano()) {
			return
		}
	}
}

// reconcile walks the history from the cursor (less the overlap, and back
// to the oldest active call), moves the cursor, then ends the answered
// calls sipgate no longer has.
func (r *reconciler) reconcile(ctx context.Context, now time.Time) (reconcileReport, error) {
	cursor, _, ok, err := r.st.ReconcileCursor(ctx, reconcileCursor)
	if err != nil {
		return reconcileReport{}, err
	}
	from := now.Add(-reconcileFirstLookback)
	if ok {
		from = cursor.Add(-reconcileOverlap)
	}
	active, err := r.st.LiveCalls(ctx, callstate.SourceSipgate, 10000)
	if err != nil {
		return reconcileReport{}, err
	}
	for _, c := range active {
		if c.StartedAt.Before(from) && c.StartedAt.After(now.Add(-reconcileActiveLookback)) {
			from = c.StartedAt.Add(-time.Minute)
		}
	}
	rep, err := r.walk(ctx, from, now, now)
	if err != nil {
		return rep, err
	}
	if err := r.st.AdvanceReconcileCursor(ctx, reconcileCursor, now); err != nil {
		return rep, err
	}
	n, err := r.live(ctx, now)
	rep.Ended += n
	return rep, err
}

// live ends the calls answered for longer than an interval that sipgate's
// GET /calls no longer lists: their hangup was lost. The end is learned
// (a webhook's stated end, should it come, replaces it), at now.
func (r *reconciler) live(ctx context.Context, now time.Time) (int, error) {
	active, err := r.st.LiveCalls(ctx, callstate.SourceSipgate, 10000)
	if err != nil {
		return 0, err
	}
	var answered []callstate.Call
	for _, c := range active {
		if c.State == callstate.StateAnswered && c.AnsweredAt.Before(now.Add(-r.interval)) {
			answered = append(answered, c)
		}
	}
	if len(answered) == 0 {
		return 0, nil
	}
	ids, err := r.api.LiveCalls(ctx)
	if err != nil {
		return 0, err
	}
	ended := 0
	for _, c := range answered {
		if slices.Contains(ids, c.Key) {
			continue
		}
		u := callstate.Update{Key: c.Key, Learned: true, State: callstate.StateEnded, Cause: callstate.CauseNormalClearing, EndedAt: callstate.EventTime(now)}
		payload, _ := json.Marshal(map[string]any{"learned": "GET /calls no longer lists the call", "callId": c.Key})
		ev := callstate.Event{Source: callstate.SourceSipgate, Type: "reconciled", DedupKey: "reconciled:" + c.Key + ":gone",
			ReceivedAt: callstate.EventTime(now), Payload: payload, Update: u}
		applied, err := r.events.Apply(ctx, ev)
		if err != nil {
			return ended, fmt.Errorf("end call %s that sipgate no longer has: %w", c.Key, err)
		}
		if applied {
			ended++
			r.ended.Add(1)
			r.log.Info("ended an answered call that sipgate no longer has (its hangup was lost)", "call_id", c.Key,
				"answered_at", c.AnsweredAt.Format(time.RFC3339))
			r.print("ended    %s  answered %s, gone from sipgate's live calls\n", c.Key, c.AnsweredAt.Format(time.RFC3339))
		}
	}
	return ended, nil
}

// walk reads the history entries created from from to to and fills what
// they tell; now is the fills' receive time.
func (r *reconciler) walk(ctx context.Context, from, to, now time.Time) (reconcileReport, error) {
	var (
		rep   reconcileReport
		calls []callstate.HistoryCall
		vms   []callstate.HistoryVoicemail
		seen  = map[string]bool{}
	)
	err := r.api.History(ctx, from, to, func(p sipgateapi.HistoryPage) error {
		rep.Entries += p.Entries
		for _, id := range p.Unreadable {
			r.unmatchable("entry:"+id, "an entry that cannot be read", &rep, "entry", id)
		}
		for _, h := range p.Calls {
			if !seen[h.ID] { // paging over a changing list can show an entry twice
				seen[h.ID] = true
				calls = append(calls, h)
			}
		}
		vms = append(vms, p.Voicemails...)
		return nil
	})
	if err != nil {
		return rep, err
	}
	for _, v := range callstate.MatchVoicemails(calls, vms) {
		// A message whose call started before the walk is not unmatched.
		if v.Created.After(from.Add(15 * time.Minute)) {
			r.unmatchable("voicemail:"+v.ID, "a voicemail entry with no call entry from the same number", &rep, "entry", v.ID)
		}
	}
	for batch := range slices.Chunk(calls, reconcileBatch) {
		if err := r.fill(ctx, batch, now, &rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// fill reconciles one batch of entries with the store.
func (r *reconciler) fill(ctx context.Context, batch []callstate.HistoryCall, now time.Time, rep *reconcileReport) error {
	keys := make([]string, 0, len(batch))
	var digests []string
	for _, h := range batch {
		if h.CallID != "" {
			keys = append(keys, h.CallID)
		}
		for _, n := range h.Numbers(r.plan) {
			digests = append(digests, callstate.NumberDigest(n))
		}
	}
	known, err := r.st.CallsByKey(ctx, callstate.SourceSipgate, keys)
	if err != nil {
		return err
	}
	erased, err := r.st.Erased(ctx, callstate.SourceSipgate, keys)
	if err != nil {
		return err
	}
	forgotten, err := r.st.ForgottenNumbers(ctx, digests)
	if err != nil {
		return err
	}
	var todo []fillItem
	for _, h := range batch {
		c, isKnown := known[h.CallID]
		if !isKnown && r.keepOut(h, erased, forgotten, now) {
			rep.Erased++
			continue
		}
		f, err := h.Reconcile(c, isKnown, r.plan)
		if err != nil {
			r.unmatchable("entry:"+h.ID, err.Error(), rep, "entry", h.ID, "call_id", h.CallID)
			continue
		}
		if f.Disagree != "" && r.once.first("disagree:"+h.CallID) {
			rep.Disagreeing++
			r.disagreeing.Add(1)
			r.log.Warn("sipgate's history disagrees with the webhooks; the webhooks' account stands", "call_id", h.CallID,
				"entry", h.ID, "disagreement", f.Disagree)
			r.print("disagree %s  %s\n", h.CallID, f.Disagree)
		}
		if f.Update.Key == "" {
			continue
		}
		payload, _ := json.Marshal(map[string]any{"history": h, "learned": h.Outcome(), "created": f.Create})
		todo = append(todo, fillItem{h: h, f: f, was: c.State, ev: callstate.Event{Source: callstate.SourceSipgate, Type: "reconciled",
			DedupKey: h.DedupKey(f.Update), ReceivedAt: callstate.EventTime(now), Payload: payload, Update: f.Update}})
	}
	// The fills go in at once, a few at a time, so that they share the
	// store's transactions (behind live webhooks, see newReconciler).
	applied := make([]bool, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(reconcileParallel)
	for i := range todo {
		g.Go(func() error {
			ok, err := r.events.Apply(gctx, todo[i].ev)
			if err != nil {
				return fmt.Errorf("reconcile call %s: %w", todo[i].h.CallID, err)
			}
			applied[i] = ok
			return nil
		})
	}
	err = g.Wait()
	for i, it := range todo {
		if !applied[i] {
			continue // done before, by this instance or another; or erased meanwhile; or failed
		}
		h, f := it.h, it.f
		if f.Create {
			rep.Created++
			r.created.Add(1)
			r.log.Info("learned a call whose webhooks never came from sipgate's history", "call_id", h.CallID,
				"outcome", h.Outcome(), "started_at", h.Created.Format(time.RFC3339))
			r.print("created  %s  %s, started %s\n", h.CallID, h.Outcome(), h.Created.Format(time.RFC3339))
		} else {
			rep.Ended++
			r.ended.Add(1)
			r.log.Info("filled a call's lost end from sipgate's history", "call_id", h.CallID, "outcome", h.Outcome(),
				"was", it.was.String(), "ended_at", f.Update.EndedAt.Format(time.RFC3339))
			r.print("ended    %s  %s, ended %s (was %s)\n", h.CallID, h.Outcome(), f.Update.EndedAt.Format(time.RFC3339), it.was)
		}
	}
	return err
}

// fillItem is one fill of a batch, with the call's state before.
type fillItem struct {
	h   callstate.HistoryCall
	f   callstate.Fill
	was callstate.State
	ev  callstate.Event
}

// reconcileParallel is how many fills are applied at once.
const reconcileParallel = 8

// backlogApplier applies fills as a spool's backlog: live webhooks go
// before them into the store's transactions. A fill needs no spool: if
// the database is gone, the round fails and the next one fills again.
type backlogApplier struct{ st *store.Store }

func (b backlogApplier) Apply(ctx context.Context, ev callstate.Event) (bool, error) {
	return b.st.ApplyBacklog(ctx, ev)
}

// keepOut reports whether the unknown call of h must not be created: it
// was erased ("callstate forget"), it is older than RETENTION_CALLS keeps,
// or a number of it was forgotten after it took place.
func (r *reconciler) keepOut(h callstate.HistoryCall, erased map[string]bool, forgotten map[string]time.Time, now time.Time) bool {
	if erased[h.CallID] || (r.retention > 0 && h.Created.Before(now.Add(-r.retention))) {
		return true
	}
	for _, n := range h.Numbers(r.plan) {
		if at, ok := forgotten[callstate.NumberDigest(n)]; ok && h.Created.Before(at) {
			return true
		}
	}
	return false
}

// unmatchable logs and counts, once, an entry that cannot be matched.
func (r *reconciler) unmatchable(key, why string, rep *reconcileReport, args ...any) {
	if !r.once.first("unmatched:" + key) {
		return
	}
	rep.Unmatched++
	r.unmatched.Add(1)
	r.log.Warn("a history entry cannot be matched to a call: "+why, args...)
	r.print("unmatched %s  %s\n", key, why)
}

func (r *reconciler) print(format string, args ...any) {
	if r.out != nil {
		fmt.Fprintf(r.out, format, args...)
	}
}

// onceSet remembers keys seen, so that a disagreement or an unmatched
// entry read again in the walks' overlap is logged and counted once. It
// forgets everything when it holds a million.
type onceSet struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func (s *onceSet) first(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[key]; ok {
		return false
	}
	if s.seen == nil || len(s.seen) >= 1_000_000 {
		s.seen = map[string]struct{}{}
	}
	s.seen[key] = struct{}{}
	return true
}

// parseSince reads "reconcile --since": RFC 3339, or a date (the start of
// that day in loc).
func parseSince(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, loc); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want RFC 3339 (2026-12-01T00:00:00+01:00) or a date (2026-12-01)", s)
}

// errNoToken is returned by "callstate reconcile" without a token.
var errNoToken = errors.New("reconcile needs SIPGATE_TOKEN_ID and SIPGATE_TOKEN (a sipgate personal access token with history:read and rtcm:read)")

// newReconciler makes the reconciler of cfg's token; fills go to events
// (in the service the store's backlog, behind live webhooks). out, when not nil, gets a line per fill.
func newReconciler(cfg Config, st *store.Store, events eventApplier, log *slog.Logger, out io.Writer) (*reconciler, error) {
	api, err := sipgateapi.New(cfg.APIURL, cfg.TokenID, cfg.Token, sipgateapi.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("SIPGATE_API_URL, SIPGATE_TOKEN_ID, SIPGATE_TOKEN: %w", err)
	}
	plan, err := callstate.NewNumberPlan(cfg.Dashboard.PhoneRegion)
	if err != nil {
		return nil, fmt.Errorf("PHONE_REGION: %w", err)
	}
	return &reconciler{st: st, events: events, api: api, plan: plan, owner: cfg.SIP.instanceID(),
		interval: cfg.ReconcileInterval, retention: cfg.RetentionCalls, log: log, out: out}, nil
}

// reconcileCommand runs "callstate reconcile -since TIME": one walk of the
// history from TIME to now, straight into the store, printing each fill.
func reconcileCommand(ctx context.Context, since string, cfg Config, log *slog.Logger) error {
	if cfg.TokenID == "" {
		return exitError{2, errNoToken}
	}
	if since == "" {
		return exitError{2, errors.New("reconcile needs -since TIME (RFC 3339, or a date); try callstate help")}
	}
	tz, _, _ := dayTimeZone(cfg)
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return fmt.Errorf("STATS_TIME_ZONE %s: %w", tz, err)
	}
	from, err := parseSince(since, loc)
	if err != nil {
		return exitError{2, err}
	}
	now := time.Now()
	if !from.Before(now) {
		return exitError{2, fmt.Errorf("-since %s is not in the past", from.Format(time.RFC3339))}
	}
	return withStore(ctx, cfg, log, "nothing reconciled", func(st *store.Store) error {
		r, err := newReconciler(cfg, st, st, log, stdout)
		if err != nil {
			return err
		}
		rep, err := r.walk(ctx, from, now, now)
		fmt.Fprintf(stdout, "reconciled %d history entries since %s: %d calls ended, %d created, %d disagreeing, %d unmatched, %d erased left out; %d requests\n",
			rep.Entries, from.Format(time.RFC3339), rep.Ended, rep.Created, rep.Disagreeing, rep.Unmatched, rep.Erased, r.api.Requests())
		return err
	})
}
