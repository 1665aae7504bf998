package watch

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store"
)

// gatedStore is a store whose Keep waits until the test opens its gate,
// as a spool does while its disk stalls in an fsync, and then keeps the
// events, or fails with fail when that is set.
type gatedStore struct {
	*store.Store
	gate chan struct{}
	fail error
}

func (g *gatedStore) Keep(ctx context.Context, evs []callstate.Event) error {
	<-g.gate
	if g.fail != nil {
		return g.fail
	}
	return g.Store.Keep(ctx, evs)
}

// TestSlowKeepAnsweredInTime holds a NOTIFY's Keep as a stalled disk
// would, past AnswerWithin: the NOTIFY is answered 200 in time all the
// same (a PBX would otherwise give it up and end the subscription), the
// early answer is counted and logged, and what happens once the disk
// comes back is right: the changes are kept, or, when the write fails,
// the PBX is asked for full state.
func TestSlowKeepAnsweredInTime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fail error
	}{
		{"KeptLater", nil},
		{"FailedLater", errors.New("spool: fsync: input/output error")},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ext := []string{"171", "172"}[i]
			sink := &logSink{}
			gs := &gatedStore{gate: make(chan struct{}), fail: tt.fail}
			n, sub, st, s := subscribedWith(t, "udp", ext, slog.New(sink), nil, func(c *Config) {
				gs.Store = c.Store.(*store.Store)
				c.Store = gs
				c.AnswerWithin = 200 * time.Millisecond
			})
			// The first NOTIFY of the subscription went through Keep
			// already (with no dialogs it keeps nothing); from here on
			// Keep waits for the gate.
			p := newRawPeer(t, "udp", n, sub)
			cseq := n.nextCSeq(sub)
			before := n.subscribes(ext)
			sent := time.Now()
			p.send(p.message(cseq, dialogDoc(ext, 1, "s1", "early"), -1))
			// A PBX on UDP sends the NOTIFY again after 500 ms without an
			// answer; the answer must come before, whatever the disk does.
			if code := p.status(cseq, 3*time.Second); code != 200 {
				t.Fatalf("NOTIFY answered %d (0: not in 3 s) while Keep was held, want 200", code)
			}
			if took := time.Since(sent); took > 450*time.Millisecond {
				t.Errorf("answered after %v, want within AnswerWithin (200ms) and before the PBX's first retransmission (500ms)", took)
			}
			if got := s.Stats().AnsweredEarly; got != 1 {
				t.Errorf("AnsweredEarly = %d, want 1", got)
			}
			if lines := sink.matching("answered 200 before they were on disk"); len(lines) != 1 {
				t.Errorf("warnings %q, want one", lines)
			}
			close(gs.gate)

			key := ext + "/s1~" + callHash("s1@pbx")
			if tt.fail == nil {
				testpbx.WaitFor(t, 5*time.Second, func() string {
					if c, err := st.Call(t.Context(), callstate.SourceSIP, key); err != nil || c.State != callstate.StateRinging {
						return "the held NOTIFY's dialog is not kept as ringing"
					}
					return ""
				})
				if got := n.subscribes(ext); got != before {
					t.Errorf("%d SUBSCRIBEs after the kept NOTIFY, want none (%d before)", got, before)
				}
				return
			}
			// The write failed after the 200: the PBX is asked for the
			// full state, which says the dialog again.
			testpbx.WaitFor(t, 5*time.Second, func() string {
				if got := n.subscribes(ext); got <= before {
					return "no SUBSCRIBE asking for full state after the failed write"
				}
				return ""
			})
			if lines := sink.matching("keeping dialog changes failed; asking for full state"); len(lines) != 1 {
				t.Errorf("warnings %q, want one", lines)
			}
		})
	}
}

// TestSlowKeepBounded holds Keep as a disk that does not come back: the
// NOTIFYs answered before they were kept are bounded (maxEarly), and past
// the bound a NOTIFY waits for its Keep again, rather than piling up in
// memory; it is answered once the disk comes back.
func TestSlowKeepBounded(t *testing.T) {
	t.Parallel()
	gs := &gatedStore{gate: make(chan struct{})}
	n, sub, _, s := subscribedWith(t, "udp", "173", nil, nil, func(c *Config) {
		gs.Store = c.Store.(*store.Store)
		c.Store = gs
		c.AnswerWithin = 100 * time.Millisecond
		c.maxEarly = 1
	})
	p := newRawPeer(t, "udp", n, sub)
	cseq := n.nextCSeq(sub)
	p.send(p.message(cseq, dialogDoc("173", 1, "b1", "early"), -1))
	if code := p.status(cseq, 3*time.Second); code != 200 {
		t.Fatalf("first NOTIFY answered %d (0: not in 3 s), want 200 within AnswerWithin", code)
	}
	p.send(p.message(cseq+1, dialogDoc("173", 2, "b1", "confirmed"), -1))
	if code := p.status(cseq+1, time.Second); code != 0 {
		t.Errorf("second NOTIFY answered %d while one answered early was still on its way (bound 1), want it to wait", code)
	}
	close(gs.gate)
	if code := p.status(cseq+1, 3*time.Second); code != 200 {
		t.Errorf("second NOTIFY answered %d (0: not in 3 s) after the disk came back, want 200", code)
	}
	if got := s.Stats().AnsweredEarly; got != 1 {
		t.Errorf("AnsweredEarly = %d, want 1", got)
	}
	testpbx.WaitFor(t, 5*time.Second, func() string {
		if got := s.early.Load(); got != 0 {
			return "answered early and not yet kept: " + strconv.FormatInt(got, 10)
		}
		return ""
	})
}
