package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
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
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/api/stream", nil)
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
	if c.State != "ringing" || c.Extension != "w7" || ev.LastEventID != strconv.FormatInt(c.Seq, 10) {
		t.Fatalf("call event %+v id %s", c, ev.LastEventID)
	}
	lamp := sb.next(t, handlers.EventLamp, time.Second)
	if !strings.Contains(lamp.Data, `"extension":"w7"`) || !strings.Contains(lamp.Data, `"lamp":"ringing"`) {
		t.Fatalf("lamp %s", lamp.Data)
	}
	if c2, _ := sa.nextCall(t, "x1", time.Second); c2.Seq != c.Seq {
		t.Fatalf("A streamed seq %d, B %d", c2.Seq, c.Seq)
	}

	// A client of A that left after the ringing event resumes on B and
	// gets the answer and the hang-up it missed, then live changes.
	resumeFrom := ev.LastEventID
	a.post(t, ans)
	a.post(t, h)
	sr := openStream(t, b, resumeFrom)
	got, _ := sr.nextCall(t, "x1", 5*time.Second)
	if got.State != "ended" {
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
