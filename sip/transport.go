package sip

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// sipgo reads each datagram, and each chunk of a stream, into a buffer of
// TransportBufferReadSize bytes (32 KiB by default): a larger NOTIFY over UDP
// came cut and did not parse. A UDP datagram is at most 65,507 bytes, so
// with the largest buffer sipgo allows every NOTIFY a PBX can send over UDP
// is read whole. It is a package variable of sipgo's, read when a
// connection is opened; it is set once, before any.
func init() {
	sipmsg.TransportBufferReadSize = math.MaxUint16
}

// maxMessageSize bounds a SIP message sipgo assembles from a stream (TCP,
// TLS). Up to it, a NOTIFY whose body is over MaxDialogBodySize is answered 413;
// beyond it sipgo closes the connection, there being no message boundary
// to go on from.
const maxMessageSize = MaxDialogBodySize + 64<<10

// newParser returns the SIP parser of the subscriber's UA.
func newParser() *sipmsg.Parser {
	p := sipmsg.NewParser()
	p.MaxMessageLength = maxMessageSize
	return p
}

// transportLogHandler passes sipgo's transport log on, except its line for
// a message that does not parse: sipgo logs the whole message (tens of KB
// for a big NOTIFY cut short, once per datagram). That line becomes one
// short warning with the size and the error, at most once per interval,
// saying how many were left out since.
type transportLogHandler struct {
	next     slog.Handler
	interval time.Duration
	state    *parseFailures
}

type parseFailures struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func newTransportLogger(next slog.Handler, interval time.Duration) *slog.Logger {
	return slog.New(&transportLogHandler{next: next, interval: interval, state: &parseFailures{}})
}

func (h *transportLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l) || l >= slog.LevelError
}

func (h *transportLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "failed to parse" {
		if !h.next.Enabled(ctx, r.Level) {
			return nil
		}
		return h.next.Handle(ctx, r)
	}
	size, why := 0, ""
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "data":
			size = len(a.Value.String())
		case "error":
			why = Clip(a.Value.String())
		}
		return true
	})
	st := h.state
	st.mu.Lock()
	if !st.last.IsZero() && r.Time.Sub(st.last) < h.interval {
		st.dropped++
		st.mu.Unlock()
		return nil
	}
	dropped := st.dropped
	st.last, st.dropped = r.Time, 0
	st.mu.Unlock()
	out := slog.NewRecord(r.Time, slog.LevelWarn, "sip: dropped a message that does not parse (too large, or cut short)", r.PC)
	out.AddAttrs(slog.Int("bytes", size), slog.String("err", why), slog.Int("more_since_last", dropped))
	if !h.next.Enabled(ctx, out.Level) {
		return nil
	}
	return h.next.Handle(ctx, out)
}

func (h *transportLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &transportLogHandler{next: h.next.WithAttrs(as), interval: h.interval, state: h.state}
}

func (h *transportLogHandler) WithGroup(name string) slog.Handler {
	return &transportLogHandler{next: h.next.WithGroup(name), interval: h.interval, state: h.state}
}
