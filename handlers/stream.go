package handlers

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	sse "github.com/tmaxmax/go-sse"

	"github.com/callstate/callstate"
)

// StreamOptions tune the live stream. The zero value is usable.
type StreamOptions struct {
	Heartbeat    time.Duration // comment line sent when idle; 0 means 15s
	WriteTimeout time.Duration // bound on one write to a client; 0 means 10s
	MaxClients   int           // streams at once, beyond which 503; 0 means 10000
	QueueLen     int           // batches a client may lag before it is dropped; 0 means 256
	ReplayMax    int           // calls replayed on resume before a snapshot is sent instead; 0 means 5000
	History      int           // ended calls in a snapshot; 0 means 50
	Phonebook    *Phonebook    // names callers and formats numbers; nil for none
	Logger       *slog.Logger  // nil means slog.Default()
}

// The event types of the stream. Every event's id is a change sequence
// number, common to all instances, that Last-Event-ID resumes from.
const (
	EventSnapshot = "snapshot" // {seq, lamps, calls}: the state to start from
	EventCall     = "call"     // a call as it is now
	EventLamp     = "lamp"     // a lamp that changed
	EventLamps    = "lamps"    // {lamps}: every lamp, sent on resume

	// Typed events, sent live besides the whole objects above: a call's
	// leg entered a state ({journey_id, call}), a journey ended missed or
	// at the voicemail ({journey_id, journey}), a lamp changed ({...lamp,
	// previous}).
	EventCallRinging   = callstate.EventRinging
	EventCallAnswered  = callstate.EventAnswered
	EventCallEnded     = callstate.EventEnded
	EventCallMissed    = callstate.EventMissed
	EventCallVoicemail = callstate.EventVoicemail
	EventLampChanged   = "lamp.changed"
)

// typedCallJSON is the data of a typed call event.
type typedCallJSON struct {
	JourneyID string       `json:"journey_id"`
	Call      *callJSON    `json:"call,omitempty"`
	Journey   *journeyJSON `json:"journey,omitempty"`
}

// lampChangedJSON is the data of a lamp.changed event.
type lampChangedJSON struct {
	lampJSON
	Previous string `json:"previous"`
}

// maxTracked bounds the calls and journeys the stream remembers to send
// each typed event once; past it, it forgets them all (an event may then
// be sent twice).
const maxTracked = 100000

// typedEvents remembers what typed events went out: the state last sent
// per call, the outcome last sent per journey, and the journeys of ended
// legs whose outcome is not known yet (a journey is computed just after
// its legs are written, and a forwarded one goes on with a new leg). Only
// Run's goroutine uses it.
type typedEvents struct {
	state   map[int64]callstate.State
	sent    map[string]callstate.Outcome
	waiting map[string]*waitingJourney
}

type waitingJourney struct {
	seq   int64 // of the change that ended a leg
	tries int
}

// journeyTries bounds how often a journey whose leg ended is read again
// while it is still active (another leg goes on, or it is not computed
// yet), every journeyRetry.
const (
	journeyTries = 25
	journeyRetry = 200 * time.Millisecond
)

// calls appends the typed events of calls to buf, and those of the
// journeys that ended, read from js (nil: none), and returns buf.
func (t *typedEvents) calls(ctx context.Context, js JourneyStore, buf []byte, calls []callstate.ChangedCall) ([]byte, error) {
	if t.state == nil || len(t.state) > maxTracked {
		t.state = map[int64]callstate.State{}
	}
	if t.sent == nil || len(t.sent) > maxTracked {
		t.sent = map[string]callstate.Outcome{}
	}
	if t.waiting == nil {
		t.waiting = map[string]*waitingJourney{}
	}
	for _, c := range calls {
		prev, seen := t.state[c.Call.ID]
		st := c.Call.State
		if !seen || st > prev {
			typ := map[callstate.State]string{callstate.StateRinging: EventCallRinging,
				callstate.StateAnswered: EventCallAnswered, callstate.StateEnded: EventCallEnded}[st]
			if typ != "" {
				cj := toCallJSON(c.Call, c.Seq)
				buf = appendEvent(buf, typ, c.Seq, typedCallJSON{JourneyID: cj.JourneyID, Call: &cj})
			}
		}
		if st == callstate.StateEnded {
			delete(t.state, c.Call.ID)
			id := callstate.JourneyID(c.Call)
			if js != nil && len(t.waiting) < maxTracked {
				w := t.waiting[id]
				if w == nil {
					w = &waitingJourney{}
					t.waiting[id] = w
				}
				w.seq, w.tries = max(w.seq, c.Seq), 0
			}
		} else {
			t.state[c.Call.ID] = st
		}
	}
	return t.journeys(ctx, js, buf)
}

// journeys reads the waiting journeys and appends call.missed or
// call.voicemail for those that ended so.
func (t *typedEvents) journeys(ctx context.Context, js JourneyStore, buf []byte) ([]byte, error) {
	if js == nil || len(t.waiting) == 0 {
		return buf, nil
	}
	ids := make([]string, 0, len(t.waiting))
	for id := range t.waiting {
		ids = append(ids, id)
	}
	journeys, err := js.JourneysByID(ctx, ids)
	if err != nil {
		return buf, err
	}
	slices.SortFunc(journeys, func(a, b callstate.Journey) int { return cmp.Compare(t.waiting[a.ID].seq, t.waiting[b.ID].seq) })
	final := map[string]bool{}
	for _, j := range journeys {
		if j.Outcome == callstate.OutcomeActive {
			continue
		}
		final[j.ID] = true
		if typ := j.JourneyEvent(); typ != "" && t.sent[j.ID] != j.Outcome {
			t.sent[j.ID] = j.Outcome
			jj := toJourneyJSON(j)
			buf = appendEvent(buf, typ, t.waiting[j.ID].seq, typedCallJSON{JourneyID: j.ID, Journey: &jj})
		}
	}
	for id, w := range t.waiting {
		w.tries++
		if final[id] || w.tries > journeyTries {
			delete(t.waiting, id)
		}
	}
	return buf, nil
}

// resumeSlack is how far below Last-Event-ID a resume re-reads: a change
// number is taken at write time, so a write can commit (and be streamed)
// after one with a higher number. Repeats are harmless: every call event
// is the whole call as it is now.
const resumeSlack = 256

// Stream fans changes out to Server-Sent Events clients. Notify tells it
// what changed (from the database's notifications, so every instance sees
// every change); Run re-reads the changed rows, in batches, and sends them
// to every client. Each client has its own goroutine and queue, so a slow
// one delays nobody: when its queue is full it is dropped, and its browser
// reconnects and resumes with Last-Event-ID.
type Stream struct {
	store DashboardStore
	o     StreamOptions
	log   *slog.Logger

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool // Run has returned: no new clients

	pmu     sync.Mutex
	pending map[int64]struct{} // ids of calls changed
	pendExt bool               // an extension changed
	pendSeq int64              // highest change number notified
	resync  bool               // changes were lost: drop every client
	wake    chan struct{}

	lampSeq  atomic.Int64  // change number for the next lamp events
	lampWake chan struct{} // lamps may have changed

	journeys JourneyStore // nil when the store has no journeys
	typed    typedEvents

	clients   atomic.Int64
	queued    atomic.Int64 // events handed to clients' queues
	dropped   atomic.Int64 // clients dropped for falling behind
	heartbeat []byte
}

type subscriber struct {
	ch      chan []byte   // rendered events
	dropped chan struct{} // closed when it lagged too far
}

// NewStream returns a Stream reading from st. Call Run to start it.
func NewStream(st DashboardStore, o StreamOptions) *Stream {
	o.Heartbeat = cmpOr(o.Heartbeat, 15*time.Second)
	o.WriteTimeout = cmpOr(o.WriteTimeout, 10*time.Second)
	o.MaxClients = cmpOr(o.MaxClients, 10000)
	o.QueueLen = cmpOr(o.QueueLen, 256)
	o.ReplayMax = cmpOr(o.ReplayMax, 5000)
	o.History = cmpOr(o.History, 50)
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	hb := &sse.Message{}
	hb.AppendComment("heartbeat")
	b, _ := hb.MarshalText()
	js, _ := st.(JourneyStore)
	return &Stream{
		store: st, o: o, log: log, journeys: js,
		subs: map[*subscriber]struct{}{}, pending: map[int64]struct{}{},
		wake: make(chan struct{}, 1), lampWake: make(chan struct{}, 1), heartbeat: b,
	}
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Clients returns the number of streams open now.
func (s *Stream) Clients() int { return int(s.clients.Load()) }

// Sent returns how many events were handed to clients since start (one
// event to ten clients counts ten), and how many clients were dropped for
// falling behind.
func (s *Stream) Sent() (events, dropped int64) { return s.queued.Load(), s.dropped.Load() }

// The kinds of change Notify takes.
const (
	ChangeCall      = "call"      // a call was written: id
	ChangeExtension = "ext"       // a PBX extension's row was written
	ChangeResync    = "resync"    // changes may have been lost: clients start afresh
	ChangeListening = "listening" // the change feed is (again) connected
)

// Notify records a change for Run to send. It never blocks.
func (s *Stream) Notify(kind string, seq, callID int64) {
	s.pmu.Lock()
	switch kind {
	case ChangeCall:
		s.pending[callID] = struct{}{}
	case ChangeExtension:
		s.pendExt = true
	case ChangeResync:
		s.resync = true
	default:
		s.pmu.Unlock()
		return
	}
	s.pendSeq = max(s.pendSeq, seq)
	s.pmu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run sends the changes Notify records until ctx is done. It returns nil
// then, or an error if the lamps cannot be read at start.
//
// Calls and lamps go out from two goroutines: the changed calls of a batch
// are read back and sent at once, and the lamps, which take a query over
// every active call, are read after them, as often as they can be, without
// holding back the next batch of calls.
func (s *Stream) Run(ctx context.Context) error {
	defer func() { // ends every stream, so that the HTTP server can shut down
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.dropAll()
	}()
	lamps := map[string]lampJSON{}
	if ls, err := s.store.LampStatuses(ctx); err == nil {
		for _, l := range ls {
			lamps[string(l.Source)+"/"+l.Extension] = toLampJSON(l)
		}
	} else if ctx.Err() == nil {
		return fmt.Errorf("stream: %w", err)
	}
	var lampsDone sync.WaitGroup
	lampsDone.Go(func() { s.runLamps(ctx, lamps) })
	defer lampsDone.Wait()
	retry := time.NewTicker(journeyRetry)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry.C:
			if len(s.typed.waiting) > 0 && s.Clients() > 0 {
				buf, err := s.typed.journeys(ctx, s.journeys, nil)
				if err != nil && ctx.Err() == nil {
					s.log.Warn("stream: reading journeys; their typed events are left out", "err", err)
				}
				if len(buf) > 0 {
					s.publish(buf)
				}
			}
			continue
		case <-s.wake:
		}
		// Whatever was notified meanwhile goes in this batch.
		s.pmu.Lock()
		ids := make([]int64, 0, len(s.pending))
		for id := range s.pending {
			ids = append(ids, id)
		}
		clear(s.pending)
		ext, seq, resync := s.pendExt, s.pendSeq, s.resync
		s.pendExt, s.resync = false, false
		s.pmu.Unlock()

		if resync {
			s.dropAll()
			continue
		}
		if s.Clients() == 0 {
			// Nobody to tell: skip reading the changes back. A client that
			// connects starts from a snapshot; a lamp it then sees change
			// against the stale cache is only sent once more than needed.
			continue
		}
		if err := s.publishCalls(ctx, ids); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// What could not be read is lost to live clients; make them
			// resume from the database.
			s.log.Error("stream: reading changes; clients will resume", "err", err)
			s.dropAll()
		}
		if len(ids) > 0 || ext {
			s.lampSeq.Store(seq)
			select {
			case s.lampWake <- struct{}{}:
			default:
			}
		}
	}
}

// publishCalls reads the calls ids back and sends them.
func (s *Stream) publishCalls(ctx context.Context, ids []int64) error {
	var buf []byte
	slices.Sort(ids)
	for chunk := range slices.Chunk(ids, 1000) {
		calls, err := s.store.CallsByID(ctx, chunk)
		if err != nil {
			return err
		}
		for _, c := range calls {
			buf = appendEvent(buf, EventCall, c.Seq, s.o.Phonebook.callJSON(c.Call, c.Seq))
		}
		if buf, err = s.typed.calls(ctx, s.journeys, buf, calls); err != nil {
			s.log.Warn("stream: reading journeys; their typed events are left out", "err", err)
		}
	}
	if len(buf) > 0 {
		s.publish(buf)
	}
	return nil
}

// runLamps sends the lamps that changed, compared with lamps (what the
// clients were last sent), each time Run says they may have, until ctx is
// done.
func (s *Stream) runLamps(ctx context.Context, lamps map[string]lampJSON) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.lampWake:
		}
		if s.Clients() == 0 {
			continue
		}
		if err := s.publishLamps(ctx, s.lampSeq.Load(), lamps); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.Error("stream: reading lamps; clients will resume", "err", err)
			s.dropAll()
		}
	}
}

func (s *Stream) publishLamps(ctx context.Context, seq int64, lamps map[string]lampJSON) error {
	ls, err := s.store.LampStatuses(ctx)
	if err != nil {
		return err
	}
	var buf []byte
	seen := make(map[string]bool, len(ls))
	for _, l := range ls {
		k := string(l.Source) + "/" + l.Extension
		seen[k] = true
		lj := toLampJSON(l)
		if old, ok := lamps[k]; !ok || old.Lamp != lj.Lamp || old.ActiveCalls != lj.ActiveCalls || old.Name != lj.Name {
			lamps[k] = lj
			buf = appendEvent(buf, EventLamp, seq, lj)
			if old.Lamp != lj.Lamp {
				buf = appendEvent(buf, EventLampChanged, seq, lampChangedJSON{lampJSON: lj, Previous: old.Lamp})
			}
		}
	}
	for k, l := range lamps {
		if !seen[k] { // removed: shown as unavailable, then forgotten
			delete(lamps, k)
			prev := l.Lamp
			l.Lamp, l.ActiveCalls = "removed", 0
			buf = appendEvent(buf, EventLamp, seq, l)
			buf = appendEvent(buf, EventLampChanged, seq, lampChangedJSON{lampJSON: l, Previous: prev})
		}
	}
	if len(buf) > 0 {
		s.publish(buf)
	}
	return nil
}

// appendEvent renders one event with go-sse and appends it to buf.
func appendEvent(buf []byte, typ string, seq int64, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own types always marshal
	}
	m := &sse.Message{Type: sse.Type(typ)}
	if seq > 0 {
		m.ID = sse.ID(strconv.FormatInt(seq, 10))
	}
	m.AppendData(string(data))
	b, _ := m.MarshalText()
	return append(buf, b...)
}

func (s *Stream) publish(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		select {
		case sub.ch <- b:
			s.queued.Add(1)
		default:
			s.dropped.Add(1)
			s.drop(sub)
		}
	}
}

// drop disconnects sub; s.mu must be held.
func (s *Stream) drop(sub *subscriber) {
	if _, ok := s.subs[sub]; ok {
		delete(s.subs, sub)
		close(sub.dropped)
	}
}

func (s *Stream) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		s.drop(sub)
	}
}

// serve is GET /api/stream.
func (s *Stream) serve(c echo.Context) error {
	if n := s.clients.Add(1); n > int64(s.o.MaxClients) {
		s.clients.Add(-1)
		return echo.NewHTTPError(http.StatusServiceUnavailable, "too many stream clients; try again later")
	}
	defer s.clients.Add(-1)
	req := c.Request()
	last, resume := int64(0), false
	for _, v := range []string{req.Header.Get("Last-Event-ID"), c.QueryParam("last_event_id")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return echo.NewHTTPError(http.StatusBadRequest, "Last-Event-ID must be an id this stream sent")
		}
		last, resume = n, true
		break
	}

	sub := &subscriber{ch: make(chan []byte, s.o.QueueLen), dropped: make(chan struct{})}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.subs[sub] = struct{}{}
	}
	s.mu.Unlock()
	if closed {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "shutting down")
	}
	defer func() {
		s.mu.Lock()
		s.drop(sub)
		s.mu.Unlock()
	}()

	// Subscribed first, then read: what is written meanwhile is queued, at
	// worst twice.
	ctx := req.Context()
	first, err := s.start(ctx, last, resume)
	if err != nil {
		return err
	}

	w := c.Response()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	// The server's read and write timeouts are for requests, not streams:
	// an expired read deadline would cancel this one. Writes get their own.
	_ = rc.SetReadDeadline(time.Time{})
	w.WriteHeader(http.StatusOK)
	write := func(bs ...[]byte) error {
		if err := rc.SetWriteDeadline(time.Now().Add(s.o.WriteTimeout)); err != nil {
			return err
		}
		for _, b := range bs {
			if _, err := w.Write(b); err != nil {
				return err
			}
		}
		return rc.Flush()
	}
	if err := write(first); err != nil {
		return nil // the client is gone; nothing to answer
	}
	hb := time.NewTicker(s.o.Heartbeat)
	defer hb.Stop()
	var bs [][]byte
	for {
		bs = bs[:0]
		select {
		case <-ctx.Done():
			return nil
		case <-sub.dropped:
			return nil
		case <-hb.C:
			bs = append(bs, s.heartbeat)
		case b := <-sub.ch:
			// Send what else is queued with one flush.
			bs = append(bs, b)
			for more := true; more; {
				select {
				case b := <-sub.ch:
					bs = append(bs, b)
				default:
					more = false
				}
			}
			hb.Reset(s.o.Heartbeat)
		}
		if err := write(bs...); err != nil {
			return nil
		}
	}
}

// retry is the reconnection delay the stream asks browsers for.
const retry = 2 * time.Second

// start renders what a client gets first: on resume, every lamp and the
// calls changed since lastID; else (or when too much changed) a snapshot.
func (s *Stream) start(ctx context.Context, lastID int64, resume bool) ([]byte, error) {
	var buf []byte
	hello := &sse.Message{Retry: retry}
	hello.AppendComment("callstate")
	b, _ := hello.MarshalText()
	buf = append(buf, b...)
	if resume {
		calls, err := s.store.CallsChangedAfter(ctx, max(lastID-resumeSlack, 0), s.o.ReplayMax+1)
		if err != nil {
			return nil, err
		}
		if len(calls) <= s.o.ReplayMax {
			ls, err := s.store.LampStatuses(ctx)
			if err != nil {
				return nil, err
			}
			for _, c := range calls {
				buf = appendEvent(buf, EventCall, c.Seq, s.o.Phonebook.callJSON(c.Call, c.Seq))
			}
			return appendEvent(buf, EventLamps, 0, lampsJSON{Lamps: toLampsJSON(ls)}), nil
		}
	}
	seq, err := s.store.LastChange(ctx)
	if err != nil {
		return nil, err
	}
	ls, err := s.store.LampStatuses(ctx)
	if err != nil {
		return nil, err
	}
	calls, err := s.store.RecentCalls(ctx, s.o.History)
	if err != nil {
		return nil, err
	}
	snap := snapshotJSON{Seq: seq, Lamps: toLampsJSON(ls), Calls: make([]callJSON, 0, len(calls))}
	for _, c := range calls {
		snap.Calls = append(snap.Calls, s.o.Phonebook.callJSON(c.Call, c.Seq))
	}
	return appendEvent(buf, EventSnapshot, seq, snap), nil
}

type snapshotJSON struct {
	Seq   int64      `json:"seq"`
	Lamps []lampJSON `json:"lamps"`
	Calls []callJSON `json:"calls"`
}
