package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
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
	ReplayMax    int           // feed events replayed on resume before a snapshot is sent instead; 0 means 5000
	History      int           // ended calls in a snapshot; 0 means 50
	Poll         time.Duration // how often the feed is read when nothing was announced; 0 means 1s
	Phonebook    *Phonebook    // names callers and formats numbers; nil for none
	Logger       *slog.Logger  // nil means slog.Default()
}

// The event types of the stream. Every event but the snapshot's lamps
// carries the id of the feed event it comes from (a snapshot: the last
// feed id it includes), common to all instances, that Last-Event-ID
// resumes from.
const (
	EventSnapshot = "snapshot" // {seq, lamps, calls}: the state to start from; seq is the feed id
	EventCall     = "call"     // a call as its change left it
	EventLamp     = "lamp"     // a lamp that changed
	EventLamps    = "lamps"    // {lamps}: every lamp, sent on resume

	// Typed events, from the feed (callstate.FeedEvent), each once per
	// transition: a call's leg entered a state ({journey_id, call}), a
	// journey ended ({journey_id, journey}), a lamp changed ({...lamp,
	// previous}).
	EventCallRinging   = callstate.EventRinging
	EventCallAnswered  = callstate.EventAnswered
	EventCallHeld      = callstate.EventHeld
	EventCallDTMF      = callstate.EventDTMF
	EventCallEnded     = callstate.EventEnded
	EventCallMissed    = callstate.EventMissed
	EventCallVoicemail = callstate.EventVoicemail
	EventJourneyEnded  = callstate.EventJourneyEnded
	EventLampChanged   = callstate.EventLampChanged
)

// FeedStore is what the stream reads: the durable feed of typed events.
type FeedStore interface {
	// Feed returns at most limit events after feed id after, by id.
	Feed(ctx context.Context, after int64, limit int) ([]callstate.FeedEvent, error)
	// FeedWindow returns the ids the feed keeps.
	FeedWindow(ctx context.Context) (callstate.FeedWindow, error)
}

// feedChunk bounds the feed events read at once.
const feedChunk = 1000

// Stream fans the feed out to Server-Sent Events clients. Notify tells it
// that the feed may have grown (from the database's notifications, so
// every instance learns of every event); Run reads the feed on from the
// last event it sent and sends what it reads to every client, each event
// with its feed id. Each client has its own goroutine and queue, so a slow
// one delays nobody: when its queue is full it is dropped, and its browser
// reconnects and resumes with Last-Event-ID.
type Stream struct {
	store DashboardStore
	feed  FeedStore
	o     StreamOptions
	log   *slog.Logger

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool // Run has returned: no new clients

	wake chan struct{}

	clients   atomic.Int64
	queued    atomic.Int64 // events handed to clients' queues
	dropped   atomic.Int64 // clients dropped for falling behind
	heartbeat []byte
}

// streamEvent is one feed event as the stream sends it: up to two
// rendered events that carry its feed id, the whole object it changed
// ("call", "lamp") and its typed event. They are pieces of the buffer
// its batch was rendered into (see renderAll), from and to its bytes.
type streamEvent struct {
	id       int64
	from, to int
	parts    [2]streamPart
}

type streamPart struct {
	typ      string // the event's type; "" for none
	from, to int    // its bytes in the rendered buffer
}

// streamBatch is one read of the feed as every client gets it: its
// events, and all of them one after another as each filter in use takes
// them, so that a client writes a batch with one write. Writes are most of
// the stream's work: a thousand clients writing each event apart kept the
// process so busy that its reads of the feed waited hundreds of
// milliseconds to run again (docs/benchmarks.md, "Reading the feed").
type streamBatch struct {
	events   []streamEvent
	rendered []byte            // every event, one after another (renderAll)
	joined   map[string][]byte // by eventFilter.key; filled before it is sent
}

// unsent appends to bs what of b a client with filter want (whose key is
// key) has not had yet, the events up to id from having been sent, and
// returns the id sent up to then: usually the whole batch, rendered for
// the filter in one piece; the events after from alone when b began
// before it (a batch read while the client's start was read).
func (b *streamBatch) unsent(bs [][]byte, key string, want eventFilter, from int64) ([][]byte, int64) {
	evs := b.events
	i := 0
	for i < len(evs) && evs[i].id <= from {
		i++
	}
	if i == len(evs) {
		return bs, from
	}
	joined := b.joined[key]
	if i > 0 {
		joined = want.join(nil, b.rendered, evs[i:])
	}
	if len(joined) > 0 {
		bs = append(bs, joined)
	}
	return bs, evs[len(evs)-1].id
}

type subscriber struct {
	ch      chan *streamBatch // by feed id
	dropped chan struct{}     // closed when it lagged too far
	want    eventFilter
	key     string // want.key()
}

// eventFilter is the event types a client asked for with ?types= (nil:
// every type). The snapshot and the lamps on resume come whatever it asks.
type eventFilter map[string]bool

// parseEventFilter reads ?types=: comma-separated event types, the typed
// events' (call.ringing …) and the objects' (call, lamp).
func parseEventFilter(v string) (eventFilter, error) {
	if v == "" {
		return nil, nil
	}
	f := eventFilter{}
	for t := range strings.SplitSeq(v, ",") {
		t = strings.TrimSpace(t)
		if t != EventCall && t != EventLamp && !callstate.KnownFeedType(t) {
			return nil, fmt.Errorf("types: %q is no event type of the stream (call, lamp, %s)", t, strings.Join(callstate.FeedTypes, ", "))
		}
		f[t] = true
	}
	return f, nil
}

// key names f among the filters of the clients.
func (f eventFilter) key() string {
	return strings.Join(slices.Sorted(maps.Keys(f)), ",")
}

// join appends evs, which were rendered into rendered, to buf, one after
// another as f takes them. Every type (a nil f) is the events' own run of
// rendered: with a nil buf it is returned as it is, not copied, so a
// batch's events are kept once for the clients that take them all.
func (f eventFilter) join(buf, rendered []byte, evs []streamEvent) []byte {
	if len(evs) == 0 {
		return buf
	}
	if f == nil {
		run := rendered[evs[0].from:evs[len(evs)-1].to:evs[len(evs)-1].to]
		if buf == nil {
			return run
		}
		return append(buf, run...)
	}
	buf = slices.Grow(buf, evs[len(evs)-1].to-evs[0].from)
	for _, ev := range evs {
		for _, p := range ev.parts {
			if p.typ != "" && f[p.typ] {
				buf = append(buf, rendered[p.from:p.to]...)
			}
		}
	}
	return buf
}

// count returns how many of evs f takes something of.
func (f eventFilter) count(evs []streamEvent) int64 {
	if f == nil {
		return int64(len(evs))
	}
	var n int64
	for _, ev := range evs {
		if f[ev.parts[0].typ] || f[ev.parts[1].typ] {
			n++
		}
	}
	return n
}

// The stream's defaults, for options left zero; the service's STREAM_*
// settings default to them.
const (
	DefaultStreamHeartbeat    = 15 * time.Second
	DefaultStreamWriteTimeout = 10 * time.Second
	DefaultStreamMaxClients   = 2000
	DefaultStreamQueueLen     = 256
)

// NewStream returns a Stream reading from st and its feed. Call Run to
// start it.
func NewStream(st interface {
	DashboardStore
	FeedStore
}, o StreamOptions) *Stream {
	o.Heartbeat = cmpOr(o.Heartbeat, DefaultStreamHeartbeat)
	o.WriteTimeout = cmpOr(o.WriteTimeout, DefaultStreamWriteTimeout)
	o.MaxClients = cmpOr(o.MaxClients, DefaultStreamMaxClients)
	o.QueueLen = cmpOr(o.QueueLen, DefaultStreamQueueLen)
	o.ReplayMax = cmpOr(o.ReplayMax, 5000)
	o.History = cmpOr(o.History, 50)
	o.Poll = cmpOr(o.Poll, time.Second)
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	hb := &sse.Message{}
	hb.AppendComment("heartbeat")
	b, _ := hb.MarshalText()
	return &Stream{
		store: st, feed: st, o: o, log: log,
		subs: map[*subscriber]struct{}{}, wake: make(chan struct{}, 1), heartbeat: b,
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

// Notify tells Run that the feed may have grown (from the database's
// notifications, so every instance hears of every write). It never blocks.
func (s *Stream) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run sends the feed's events as Notify announces them (and every Poll,
// for an announcement lost) until ctx is done; then it returns nil. While
// the feed cannot be read (the database is away) it tries again at every
// wake-up, and clients that connect meanwhile get an error.
func (s *Stream) Run(ctx context.Context) error {
	defer func() { // ends every stream, so that the HTTP server can shut down
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.dropAll()
	}()
	poll := time.NewTicker(s.o.Poll)
	defer poll.Stop()
	cursor := int64(-1) // not read yet: start from the feed's head
	var warned time.Time
	for {
		var err error
		if cursor < 0 {
			var w callstate.FeedWindow
			if w, err = s.feed.FeedWindow(ctx); err == nil {
				cursor = w.Head
			}
		} else {
			cursor, err = s.publishFeed(ctx, cursor)
		}
		if err != nil && ctx.Err() == nil && time.Since(warned) > time.Minute {
			// Nothing is lost: the next wake-up reads on from cursor.
			warned = time.Now()
			s.log.Warn("stream: reading the feed; trying again", "after", cursor, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		case <-s.wake:
		}
	}
}

// publishFeed sends the feed's events after cursor to every client and
// returns the id it read up to. With no client, it only moves on to the
// feed's head.
func (s *Stream) publishFeed(ctx context.Context, cursor int64) (int64, error) {
	if s.Clients() == 0 {
		w, err := s.feed.FeedWindow(ctx)
		if err != nil {
			return cursor, err
		}
		return max(cursor, w.Head), nil
	}
	for {
		evs, err := s.feed.Feed(ctx, cursor, feedChunk)
		if err != nil {
			return cursor, err
		}
		if len(evs) == 0 {
			return cursor, nil
		}
		batch := &streamBatch{}
		batch.events, batch.rendered = s.renderAll(evs)
		s.publish(batch)
		cursor = evs[len(evs)-1].ID
		if len(evs) < feedChunk {
			return cursor, nil
		}
	}
}

// renderAll renders evs one after another into one buffer, which it
// returns with where each event's parts are in it.
func (s *Stream) renderAll(evs []callstate.FeedEvent) ([]streamEvent, []byte) {
	out := make([]streamEvent, len(evs))
	var buf []byte
	for i, ev := range evs {
		out[i], buf = s.render(buf, ev)
	}
	return out, buf
}

// render appends the stream's events for one feed event to buf: the whole
// object (call, lamp) where there is one, and the typed event.
func (s *Stream) render(buf []byte, ev callstate.FeedEvent) (streamEvent, []byte) {
	se := streamEvent{id: ev.ID, from: len(buf)}
	part := func(i int, typ string, v any) {
		from := len(buf)
		buf = appendEvent(buf, typ, ev.ID, v)
		se.parts[i] = streamPart{typ, from, len(buf)}
	}
	switch {
	case ev.Call != nil:
		t := callstate.FeedJSON(ev, ev.Seq, s.o.Phonebook).(callstate.TypedJSON)
		part(0, EventCall, t.Call)
		if ev.Type != callstate.EventOther {
			part(1, ev.Type, t)
		}
	case ev.Journey != nil:
		part(1, ev.Type, callstate.FeedJSON(ev, ev.Seq, s.o.Phonebook))
	case ev.Lamp != nil:
		lc := callstate.FeedJSON(ev, ev.Seq, s.o.Phonebook).(callstate.LampChangedJSON)
		part(0, EventLamp, lc.LampJSON)
		if ev.Type == callstate.EventLampChanged {
			part(1, EventLampChanged, lc)
		}
	}
	se.to = len(buf)
	return se, buf
}

// appendEvent renders one event with go-sse and appends it to buf.
func appendEvent(buf []byte, typ string, id int64, v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // our own types always marshal
	}
	m := &sse.Message{Type: sse.Type(typ)}
	if id > 0 {
		m.ID = sse.ID(strconv.FormatInt(id, 10))
	}
	m.AppendData(string(data))
	b, _ := m.MarshalText()
	return append(buf, b...)
}

// publish renders batch for each filter the clients use, then queues it
// for every client.
func (s *Stream) publish(batch *streamBatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	batch.joined = map[string][]byte{}
	taken := map[string]int64{} // events each filter takes, for Sent
	for sub := range s.subs {
		if _, ok := batch.joined[sub.key]; !ok {
			batch.joined[sub.key] = sub.want.join(nil, batch.rendered, batch.events)
			taken[sub.key] = sub.want.count(batch.events)
		}
	}
	for sub := range s.subs {
		select {
		case sub.ch <- batch:
			s.queued.Add(taken[sub.key])
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

	want, err := parseEventFilter(c.QueryParam("types"))
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}

	sub := &subscriber{ch: make(chan *streamBatch, s.o.QueueLen), dropped: make(chan struct{}), want: want, key: want.key()}
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

	// Subscribed first, then read: what is written meanwhile is queued,
	// and what start sent already (ids up to from) is left out of it.
	ctx := req.Context()
	first, from, err := s.start(ctx, last, resume, want)
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
	add := func(batch *streamBatch) { bs, from = batch.unsent(bs, sub.key, want, from) }
	for {
		bs = bs[:0]
		select {
		case <-ctx.Done():
			return nil
		case <-sub.dropped:
			return nil
		case <-hb.C:
			bs = append(bs, s.heartbeat)
		case batch := <-sub.ch:
			// Send what else is queued with one flush.
			add(batch)
			for more := true; more; {
				select {
				case batch := <-sub.ch:
					add(batch)
				default:
					more = false
				}
			}
			if len(bs) == 0 {
				continue
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

// start renders what a client gets first, and returns the feed id it
// covers: on resume from an id the feed still covers, every feed event
// since (each once) and every lamp; else, or when more than ReplayMax
// events happened since, a snapshot.
func (s *Stream) start(ctx context.Context, lastID int64, resume bool, want eventFilter) ([]byte, int64, error) {
	var buf []byte
	hello := &sse.Message{Retry: retry}
	hello.AppendComment("callstate")
	b, _ := hello.MarshalText()
	buf = append(buf, b...)
	w, err := s.feed.FeedWindow(ctx)
	if err != nil {
		return nil, 0, err
	}
	if resume && w.Covers(lastID) {
		var evs []callstate.FeedEvent
		for after := lastID; len(evs) <= s.o.ReplayMax; {
			more, err := s.feed.Feed(ctx, after, min(feedChunk, s.o.ReplayMax+1-len(evs)))
			if err != nil {
				return nil, 0, err
			}
			evs = append(evs, more...)
			if len(more) == 0 || len(evs) > s.o.ReplayMax {
				break
			}
			after = more[len(more)-1].ID
		}
		if len(evs) <= s.o.ReplayMax {
			ls, err := s.store.LampStatuses(ctx)
			if err != nil {
				return nil, 0, err
			}
			from := lastID
			if len(evs) > 0 {
				from = evs[len(evs)-1].ID
			}
			parts, rendered := s.renderAll(evs)
			buf = want.join(buf, rendered, parts)
			return appendEvent(buf, EventLamps, 0, lampsJSON{Lamps: toLampsJSON(ls)}), from, nil
		}
	}
	// The snapshot is read after the feed's head: what it shows includes
	// every event up to it, and later ones follow live.
	ls, err := s.store.LampStatuses(ctx)
	if err != nil {
		return nil, 0, err
	}
	calls, err := s.store.RecentCalls(ctx, s.o.History)
	if err != nil {
		return nil, 0, err
	}
	snap := snapshotJSON{Seq: w.Head, Lamps: toLampsJSON(ls), Calls: make([]callstate.CallJSON, 0, len(calls))}
	for _, c := range calls {
		snap.Calls = append(snap.Calls, s.o.Phonebook.callJSON(c.Call, c.Seq))
	}
	return appendEvent(buf, EventSnapshot, w.Head, snap), w.Head, nil
}

type snapshotJSON struct {
	Seq   int64                `json:"seq"`
	Lamps []callstate.LampJSON `json:"lamps"`
	Calls []callstate.CallJSON `json:"calls"`
}
