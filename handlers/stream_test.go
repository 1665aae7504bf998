package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sse "github.com/tmaxmax/go-sse"

	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
)

// streamClient reads an instance's /api/stream.
type streamClient struct {
	events   chan sse.Event
	comments chan string
	res      *http.Response
}

// openStream connects to in's stream, with Last-Event-ID lastID if not
// empty, and reads its events until the test ends.
func openStream(tb testing.TB, in *instance, lastID string) *streamClient {
	tb.Helper()
	return openStreamAt(tb, in, "/api/stream", lastID)
}

// openStreamAt is openStream at path (the stream with a query).
func openStreamAt(tb testing.TB, in *instance, path, lastID string) *streamClient {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url+path, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		tb.Fatalf("stream: %d %v", res.StatusCode, res.Header)
	}
	c := &streamClient{events: make(chan sse.Event, 10000), comments: make(chan string, 100), res: res}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Comments (heartbeats) are not events; read lines to see them.
		pr := newCommentTap(res.Body, c.comments)
		for ev, err := range sse.Read(pr, &sse.ReadConfig{MaxEventSize: 1 << 22}) {
			if err != nil {
				return
			}
			c.events <- ev
		}
	}()
	tb.Cleanup(func() {
		cancel()
		res.Body.Close()
		<-done
	})
	return c
}

// next returns the next event of type typ, skipping others.
func (c *streamClient) next(tb testing.TB, typ string, within time.Duration) sse.Event {
	tb.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-c.events:
			if ev.Type == typ {
				return ev
			}
		case <-deadline:
			tb.Fatalf("no %s event within %s", typ, within)
			return sse.Event{}
		}
	}
}

type streamCall struct {
	ID        int64  `json:"id"`
	Seq       int64  `json:"seq"`
	Key       string `json:"key"`
	State     string `json:"state"`
	Extension string `json:"extension"`
}

// nextCall returns the next call event about key.
func (c *streamClient) nextCall(tb testing.TB, key string, within time.Duration) (streamCall, sse.Event) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		ev := c.next(tb, handlers.EventCall, time.Until(deadline))
		var sc streamCall
		if err := json.Unmarshal([]byte(ev.Data), &sc); err != nil {
			tb.Fatal(err)
		}
		if sc.Key == key {
			return sc, ev
		}
	}
}

// TestStreamAcrossInstances: a webhook posted to instance A shows up on the
// stream of instance B (two servers, one database), lamps included; B
// resumes a client from A's event id.
func TestStreamAcrossInstances(t *testing.T) {
	db := storetest.NewDatabase(t)
	a := newInstance(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{})
	b := newInstance(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{})
	sb := openStream(t, b, "")
	snap := sb.next(t, handlers.EventSnapshot, 5*time.Second)
	if !strings.Contains(snap.Data, `"lamps":[]`) || !strings.Contains(snap.Data, `"calls":[]`) {
		t.Fatalf("snapshot %s", snap.Data)
	}
	sa := openStream(t, a, "")
	sa.next(t, handlers.EventSnapshot, 5*time.Second)

	n, ans, h := sipgateCall("x1", 7)
	start := time.Now()
	a.post(t, n)
	written := time.Now()
	c, ev := sb.nextCall(t, "x1", 5*time.Second)
	// How fast is BenchmarkStreamFanout's to say; this test logs it.
	t.Logf("event %s after the write (post took %s)", time.Since(written), written.Sub(start))
	// Event ids are feed ids now (they were the call's change_seq), the
	// same for every kind of event and on every instance.
	if id, err := strconv.ParseInt(ev.LastEventID, 10, 64); c.State != "ringing" || c.Extension != "w7" || err != nil || id <= 0 {
		t.Fatalf("call event %+v id %s", c, ev.LastEventID)
	}
	if typed := sb.next(t, handlers.EventCallRinging, time.Second); typed.LastEventID != ev.LastEventID || !strings.Contains(typed.Data, `"key":"x1"`) {
		t.Fatalf("call.ringing %+v, want it with the call event's id %s", typed, ev.LastEventID)
	}
	lamp := sb.next(t, handlers.EventLamp, 5*time.Second)
	if !strings.Contains(lamp.Data, `"extension":"w7"`) || !strings.Contains(lamp.Data, `"lamp":"ringing"`) {
		t.Fatalf("lamp %s", lamp.Data)
	}
	if c2, ev2 := sa.nextCall(t, "x1", time.Second); c2.Seq != c.Seq || ev2.LastEventID != ev.LastEventID {
		t.Fatalf("A streamed seq %d id %s, B %d id %s", c2.Seq, ev2.LastEventID, c.Seq, ev.LastEventID)
	}

	// A client of A that left after the ringing event resumes on B and
	// gets the answer and the hang-up it missed, then live changes.
	resumeFrom := ev.LastEventID
	a.post(t, ans)
	a.post(t, h)
	// Feed ids are given just after the commit: wait for them, so that
	// the resume replays both rather than getting the last one live.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.store.SyncFeed(sctx); err != nil {
		t.Fatal(err)
	}
	sr := openStream(t, b, resumeFrom)
	// Every change since, in order: the answer, then the hang-up (a
	// resume used to send the call as it was then, ended, alone).
	if got, _ := sr.nextCall(t, "x1", 5*time.Second); got.State != "answered" {
		t.Fatalf("resumed with %+v", got)
	}
	if got, _ := sr.nextCall(t, "x1", 5*time.Second); got.State != "ended" {
		t.Fatalf("resumed with %+v", got)
	}
	lamps := sr.next(t, handlers.EventLamps, time.Second)
	if !strings.Contains(lamps.Data, `"lamp":"idle"`) {
		t.Fatalf("lamps on resume: %s", lamps.Data)
	}
	n2, _, _ := sipgateCall("x2", 8)
	a.post(t, n2)
	if c, _ := sr.nextCall(t, "x2", 5*time.Second); c.State != "ringing" {
		t.Fatalf("live after resume: %+v", c)
	}
}

// TestStreamOutlivesServerTimeouts: the server's 2 s read and write
// timeouts do not cut a stream; heartbeats keep it busy.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{},
		handlers.StreamOptions{Heartbeat: 300 * time.Millisecond})
	s := openStream(t, in, "")
	s.next(t, handlers.EventSnapshot, 5*time.Second)
	time.Sleep(3 * time.Second)
	hb := 0
	for len(s.comments) > 0 {
		if <-s.comments == "heartbeat" {
			hb++
		}
	}
	if hb < 5 {
		t.Errorf("%d heartbeats in 3s, want about 10", hb)
	}
	n, _, _ := sipgateCall("late", 1)
	in.post(t, n)
	if c, _ := s.nextCall(t, "late", 5*time.Second); c.State != "ringing" {
		t.Fatalf("%+v", c)
	}
}

func TestStreamMaxClients(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{}, handlers.StreamOptions{MaxClients: 1})
	openStream(t, in, "").next(t, handlers.EventSnapshot, 5*time.Second)
	code, body := get(t, in, "/api/stream", nil, nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "too many stream clients") {
		t.Fatalf("%d %s", code, body)
	}
	code, body = get(t, in, "/api/stream", http.Header{"Last-Event-ID": {"abc"}}, nil)
	if code != http.StatusServiceUnavailable && code != http.StatusBadRequest {
		t.Fatalf("%d %s", code, body)
	}
}

func TestStreamBadLastEventID(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{}, handlers.StreamOptions{})
	code, body := get(t, in, "/api/stream", http.Header{"Last-Event-ID": {"abc"}}, nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "Last-Event-ID") {
		t.Fatalf("%d %s", code, body)
	}
}

// commentTap passes a stream through and reports its comment lines.
type commentTap struct {
	r   *bufio.Reader
	out chan<- string
	buf []byte
}

func newCommentTap(r interface{ Read([]byte) (int, error) }, out chan<- string) *commentTap {
	return &commentTap{r: bufio.NewReader(r), out: out}
}

func (c *commentTap) Read(p []byte) (int, error) {
	if len(c.buf) == 0 {
		line, err := c.r.ReadBytes('\n')
		if len(line) == 0 {
			return 0, err
		}
		if s, ok := strings.CutPrefix(string(line), ": "); ok {
			select {
			case c.out <- strings.TrimSpace(s):
			default:
			}
		}
		c.buf = line
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// typedTypes are the stream's typed events, which the feed gives once each.
var typedTypes = map[string]bool{
	handlers.EventCallRinging: true, handlers.EventCallAnswered: true, handlers.EventCallHeld: true,
	handlers.EventCallDTMF: true, handlers.EventCallEnded: true, handlers.EventCallMissed: true,
	handlers.EventCallVoicemail: true, handlers.EventJourneyEnded: true, handlers.EventLampChanged: true,
}

// TestStreamResumeExactlyOnce: a client of instance A leaves; calls go on
// through instance B; the client resumes on instance C, started after it
// left, and gets every typed event of that time once, with the feed's ids
// and in their order, then live ones. An id the feed no longer keeps gets
// a snapshot.
func TestStreamResumeExactlyOnce(t *testing.T) {
	ctx := context.Background()
	db := storetest.NewDatabase(t)
	a := newInstance(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{})
	b := newInstance(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{})
	sa := openStream(t, a, "")
	sa.next(t, handlers.EventSnapshot, 5*time.Second)
	n, ans, h := sipgateCall("first", 1)
	b.post(t, n)
	last := sa.next(t, handlers.EventCallRinging, 5*time.Second).LastEventID
	sa.res.Body.Close()

	// Meanwhile: answered calls, missed calls, on several users.
	for i := range 10 {
		n, ans2, h2 := sipgateCall(fmt.Sprintf("away%d", i), i%3)
		b.post(t, n)
		if i%2 == 0 {
			b.post(t, ans2)
		}
		b.post(t, h2)
	}
	b.post(t, ans)
	b.post(t, h)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.store.SyncFeed(sctx); err != nil {
		t.Fatal(err)
	}
	from, _ := strconv.ParseInt(last, 10, 64)
	feed, err := b.store.Feed(ctx, from, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range feed {
		if typedTypes[e.Type] {
			want = append(want, fmt.Sprintf("%d %s", e.ID, e.Type))
		}
	}
	if len(want) < 40 {
		t.Fatalf("only %d typed events in the feed: %v", len(want), want)
	}

	c := newInstance(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{})
	sc := openStream(t, c, last)
	var got []string
	deadline := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case ev := <-sc.events:
			if ev.Type == handlers.EventSnapshot {
				t.Fatalf("resume from %s got a snapshot", last)
			}
			if typedTypes[ev.Type] {
				got = append(got, ev.LastEventID+" "+ev.Type)
			}
		case <-deadline:
			t.Fatalf("after 10s, %d of %d typed events:\n%v\nwant\n%v", len(got), len(want), got, want)
		}
	}
	// Live events follow, and nothing of before comes twice.
	n3, _, _ := sipgateCall("live", 5)
	b.post(t, n3)
	for {
		ev := sc.next(t, handlers.EventCallRinging, 5*time.Second)
		got = append(got, ev.LastEventID+" "+ev.Type)
		if strings.Contains(ev.Data, `"key":"live"`) {
			break
		}
	}
	if !slices.Equal(got[:len(got)-1], want) {
		t.Fatalf("resumed with\n%v\nwant\n%v", got, want)
	}

	// Past the retention, the same id gets a snapshot.
	if _, err := b.store.ForgetFeed(ctx, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if ev := <-openStream(t, c, last).events; ev.Type != handlers.EventSnapshot {
		t.Fatalf("an id the feed no longer keeps: %s %s", ev.Type, ev.Data)
	}
}

// TestStreamTypes: ?types= sends only the event types it lists, live and on
// resume (the snapshot and the lamps whatever it lists); an unknown type is
// a 400 that names the known ones.
func TestStreamTypes(t *testing.T) {
	db := storetest.NewDatabase(t)
	in := newInstance(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{})
	code, body := get(t, in, "/api/stream?types=call,call.exploded", nil, nil)
	if code != http.StatusBadRequest || !strings.Contains(body, `call.exploded\" is no event type`) || !strings.Contains(body, "call.missed") {
		t.Fatalf("an unknown type: %d %s", code, body)
	}

	missed := openStreamAt(t, in, "/api/stream?types=call.missed,%20journey.ended", "")
	objects := openStreamAt(t, in, "/api/stream?types=call", "")
	all := openStream(t, in, "")
	for _, c := range []*streamClient{missed, objects, all} {
		c.next(t, handlers.EventSnapshot, 5*time.Second)
	}
	n1, a1, h1 := sipgateCall("answered", 1)
	n2, _, h2 := sipgateCall("missed", 2)
	for _, f := range []string{n1, n2, a1, h1, h2} {
		in.post(t, f)
	}

	// seen reads c until it has had ends journey.ended events and a
	// call.missed (which follows its journey.ended), and returns the types
	// it got, each once, and the first event's id.
	seen := func(c *streamClient, ends int) (map[string]bool, string) {
		t.Helper()
		types, first := map[string]bool{}, ""
		deadline := time.After(10 * time.Second)
		for ends > 0 || !types[handlers.EventCallMissed] {
			select {
			case ev := <-c.events:
				types[ev.Type] = true
				if first == "" {
					first = ev.LastEventID
				}
				if ev.Type == handlers.EventJourneyEnded {
					ends--
				}
			case <-deadline:
				t.Fatalf("after 10s, types %v and %d journeys still to end", types, ends)
			}
		}
		return types, first
	}
	types, _ := seen(missed, 2)
	if len(types) != 2 || !types[handlers.EventCallMissed] {
		t.Errorf("types=call.missed,journey.ended got %v", types)
	}
	types, first := seen(all, 2)
	for _, typ := range []string{handlers.EventCall, handlers.EventCallRinging, handlers.EventCallAnswered, handlers.EventCallEnded, handlers.EventCallMissed} {
		if !types[typ] {
			t.Errorf("without types, no %s: %v", typ, types)
		}
	}
	// The call objects only: then the last call's last change.
	for {
		sc, ev := objects.nextCall(t, "missed", 5*time.Second)
		if ev.Type != handlers.EventCall {
			t.Fatalf("types=call got %s", ev.Type)
		}
		if sc.State == "ended" {
			break
		}
	}
	select {
	case ev := <-objects.events:
		if ev.Type != handlers.EventCall {
			t.Fatalf("types=call got %s %s", ev.Type, ev.Data)
		}
	default:
	}

	// On resume, the same choice; the lamps come whatever it lists.
	id, _ := strconv.ParseInt(first, 10, 64)
	resumed := openStreamAt(t, in, "/api/stream?types=call.missed", strconv.FormatInt(id-1, 10))
	var got []string
	for len(got) == 0 || got[len(got)-1] != handlers.EventLamps {
		select {
		case ev := <-resumed.events:
			got = append(got, ev.Type)
		case <-time.After(5 * time.Second):
			t.Fatalf("resumed with types=call.missed: %v, then nothing for 5s", got)
		}
	}
	if !slices.Equal(got, []string{handlers.EventCallMissed, handlers.EventLamps}) {
		t.Fatalf("resumed with types=call.missed: %v", got)
	}
}
