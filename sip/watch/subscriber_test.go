package watch

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
)

// TestNotifyRules drives one subscription from a scripted notifier: unknown
// subscriptions get 481, bad bodies 400 and change nothing, old versions
// are ignored, a full document ends vanished dialogs, and the RFC 6665
// termination reasons decide whether to re-subscribe.
func TestNotifyRules(t *testing.T) {
	t.Parallel()
	n := startNotifier(t, nil)
	st := testpbx.OpenStore(t)
	if err := st.AddExtensions(t.Context(), []string{"100"}); err != nil {
		t.Fatal(err)
	}
	startSubscriber(t, Config{PBXAddr: n.addr, Domain: "pbx.test", Store: st, Expires: time.Minute})
	var sub *fakeSub
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if sub = n.sub("100"); sub == nil {
			return "no SUBSCRIBE for 100"
		}
		return ""
	})
	send := func(state, body string, want int) {
		t.Helper()
		code, err := n.notify(t.Context(), sub, state, body)
		if err != nil || code != want {
			t.Fatalf("NOTIFY %s: got %d, %v; want %d", state, code, err, want)
		}
	}
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if l := lampOf(t, st, "100"); l.Subscription != callstate.SubscriptionActive {
			return fmt.Sprintf("lamp %+v, want subscription active", l)
		}
		return ""
	})

	t.Run("ErrUnknownSubscription", func(t *testing.T) {
		other := *sub
		other.callID = "unknown@pbx"
		if code, err := n.notify(t.Context(), &other, "active", dialogDoc("100", 1, "d1", "early")); err != nil || code != 481 {
			t.Errorf("got %d, %v; want 481", code, err)
		}
	})
	t.Run("ErrBadBody", func(t *testing.T) {
		send("active;expires=60", "<dialog-info><dialog>", 400)
		if calls := sipCalls(t, st, "100"); len(calls) != 0 {
			t.Errorf("calls after a bad body: %+v", calls)
		}
	})
	t.Run("EmptyBody", func(t *testing.T) { send("active;expires=60", "", 200) })
	t.Run("Ringing", func(t *testing.T) {
		send("active;expires=60", dialogDoc("100", 5, "d1", "early"), 200)
		if l := lampOf(t, st, "100"); l.Lamp != callstate.LampRinging {
			t.Errorf("lamp %+v, want ringing", l)
		}
	})
	t.Run("OldVersionStillCounts", func(t *testing.T) {
		// A document older than one applied came late: what it says
		// happened, and a call only moves forward.
		send("active;expires=60", dialogDoc("100", 4, "d1", "confirmed"), 200)
		if c, _ := st.Call(t.Context(), callstate.SourceSIP, "100/d1~"+callHash("d1@pbx")); c.State != callstate.StateAnswered {
			t.Errorf("state %s after an old version, want answered", c.State)
		}
	})
	t.Run("Vanished", func(t *testing.T) {
		send("active;expires=60", dialogDoc("100", 6, "", ""), 200)
		c, err := st.Call(t.Context(), callstate.SourceSIP, "100/d1~"+callHash("d1@pbx"))
		if err != nil || c.State != callstate.StateEnded || c.Cause != callstate.CauseVanished || c.Direction != callstate.DirectionIn || c.From != "200" {
			t.Errorf("call %+v, %v; want ended, vanished, in from 200", c, err)
		}
		if l := lampOf(t, st, "100"); l.Lamp != callstate.LampIdle {
			t.Errorf("lamp %+v, want idle", l)
		}
	})
	t.Run("TerminatedDeactivatedResubscribes", func(t *testing.T) {
		before := n.subscribes("100")
		send("terminated;reason=deactivated", "", 200)
		testpbx.WaitFor(t, 10*time.Second, func() string {
			if s := n.sub("100"); s == nil || s.callID == sub.callID || n.subscribes("100") <= before {
				return "no fresh SUBSCRIBE after deactivated"
			}
			return ""
		})
		sub = n.sub("100")
		testpbx.WaitFor(t, 10*time.Second, func() string {
			if l := lampOf(t, st, "100"); l.Subscription != callstate.SubscriptionActive {
				return fmt.Sprintf("lamp %+v, want active again", l)
			}
			return ""
		})
	})
	t.Run("TerminatedRejectedStops", func(t *testing.T) {
		send("terminated;reason=rejected", "", 200)
		testpbx.WaitFor(t, 10*time.Second, func() string {
			if l := lampOf(t, st, "100"); l.Subscription != callstate.SubscriptionRefused || l.Lamp != callstate.LampUnavailable {
				return fmt.Sprintf("lamp %+v, want refused and unavailable", l)
			}
			return ""
		})
	})
}

// TestNotifyHeldForTurn: the PBX sends confirmed (CSeq n) and then
// terminated (n+1), and the terminated one arrives first. The subscriber
// holds it until the confirmed one is in and applied, so the call is
// answered before it ends. The order is made, not left to the scheduler:
// the confirmed NOTIFY goes out only once the subscriber reports the
// terminated one waiting for its turn, and holdFor keeps it waiting
// however slow the machine is.
func TestNotifyHeldForTurn(t *testing.T) {
	t.Parallel()
	n := startNotifier(t, nil)
	st := testpbx.OpenStore(t)
	if err := st.AddExtensions(t.Context(), []string{"100"}); err != nil {
		t.Fatal(err)
	}
	held := make(chan uint32, 16)
	startSubscriber(t, Config{PBXAddr: n.addr, Domain: "pbx.test", Store: st, Expires: time.Minute, holdFor: time.Minute,
		heldForTurn: func(cseq uint32) {
			select {
			case held <- cseq:
			default:
			}
		}})
	var sub *fakeSub
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if sub = n.sub("100"); sub == nil {
			return "no SUBSCRIBE for 100"
		}
		return ""
	})
	// A first NOTIFY answered: the ones after it are numbered from it.
	if code, err := n.notify(t.Context(), sub, "active;expires=60", dialogDoc("100", 1, "", "")); err != nil || code != 200 {
		t.Fatalf("first NOTIFY: %d, %v", code, err)
	}

	next := n.nextCSeq(sub)
	done := make(chan error, 1)
	go func() {
		code, err := n.notifyAt(t.Context(), sub, next+1, "active;expires=60", dialogDoc("100", 3, "d2", "terminated"))
		if err == nil && code != 200 {
			err = fmt.Errorf("got %d", code)
		}
		done <- err
	}()
	select {
	case c := <-held:
		if c != next+1 {
			t.Fatalf("NOTIFY %d waited for its turn, want %d (the terminated one)", c, next+1)
		}
	case err := <-done:
		t.Fatalf("the terminated NOTIFY was answered (%v) without waiting for the confirmed one", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the terminated NOTIFY never waited for the confirmed one")
	}
	select {
	case err := <-done:
		t.Fatalf("the terminated NOTIFY was answered (%v) while the confirmed one was not sent yet", err)
	default:
	}
	if code, err := n.notifyAt(t.Context(), sub, next, "active;expires=60", dialogDoc("100", 2, "d2", "confirmed")); err != nil || code != 200 {
		t.Fatalf("NOTIFY confirmed: %d %v", code, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("NOTIFY terminated: %v", err)
	}
	c, err := st.Call(t.Context(), callstate.SourceSIP, "100/d2~"+callHash("d2@pbx"))
	if err != nil || c.State != callstate.StateEnded || c.AnsweredAt.IsZero() || c.EndedAt.Before(c.AnsweredAt) {
		t.Errorf("call %+v, %v; want answered, then ended", c, err)
	}
}

// TestBadEvent checks that 489 is reported as the PBX not supporting
// dialog events, and not retried at once.
func TestBadEvent(t *testing.T) {
	t.Parallel()
	n := startNotifier(t, func(*sipmsg.Request) (int, int) { return 489, 0 })
	st := testpbx.OpenStore(t)
	if err := st.AddExtensions(t.Context(), []string{"300"}); err != nil {
		t.Fatal(err)
	}
	startSubscriber(t, Config{PBXAddr: n.addr, Store: st, Expires: time.Minute, RetryMax: time.Hour})
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if l := lampOf(t, st, "300"); l.Subscription != callstate.SubscriptionRefused || !strings.Contains(l.Reason, "does not support dialog events") {
			return fmt.Sprintf("lamp %+v, want refused: does not support dialog events", l)
		}
		return ""
	})
	if got := n.subscribes("300"); got != 1 {
		t.Errorf("%d SUBSCRIBEs, want 1", got)
	}
}

// TestRefreshAndUnsubscribe checks that a short expiry is refreshed within
// the dialog and that stopping un-subscribes with Expires: 0.
func TestRefreshAndUnsubscribe(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var expires []string
	n := startNotifier(t, func(req *sipmsg.Request) (int, int) {
		toTag, _ := req.To().Params.Get("tag")
		mu.Lock()
		expires = append(expires, req.GetHeader("Expires").Value()+"/"+fmt.Sprint(toTag != ""))
		mu.Unlock()
		return 0, 2
	})
	st := testpbx.OpenStore(t)
	if err := st.AddExtensions(t.Context(), []string{"100"}); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{PBXAddr: n.addr, ListenAddr: "127.0.0.1:0", Store: st, Expires: time.Minute, Logger: testpbx.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if c := n.subscribes("100"); c < 3 {
			return fmt.Sprintf("%d SUBSCRIBEs, want the first and two refreshes", c)
		}
		return ""
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := append([]string(nil), expires...)
	mu.Unlock()
	if got[0] != "60/false" || got[1] != "60/true" || got[len(got)-1] != "0/true" {
		t.Errorf("SUBSCRIBEs (Expires/in dialog): %v, want 60/false, 60/true …, 0/true", got)
	}
	if l := lampOf(t, st, "100"); l.Subscription != callstate.SubscriptionTerminated || l.Lamp != callstate.LampUnavailable {
		t.Errorf("after stop: lamp %+v, want terminated and unavailable", l)
	}
}

// FuzzParseSubState: any Subscription-State value parses to bounded
// numbers: no overflow into a negative or endless expiry or retry.
func FuzzParseSubState(f *testing.F) {
	for _, s := range []string{
		"active;expires=3600", "terminated;reason=timeout", "terminated;reason=rejected",
		`terminated;reason="noresource";retry-after=30`, "pending", "active;expires=99999999999999999",
		"terminated;retry-after=9223372036", "ACTIVE ; Expires = 60 ;x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ss := parseSubState(v)
		if ss.expires < -1 || ss.expires > maxExpires {
			t.Fatalf("expires %d from %q", ss.expires, v)
		}
		if ss.retryAfter < 0 || ss.retryAfter > time.Hour {
			t.Fatalf("retry-after %s from %q", ss.retryAfter, v)
		}
		if d := seconds(ss.expires); d < 0 {
			t.Fatalf("negative duration from %q", v)
		}
	})
}

// TestKeepTime: a subscription keeps the times of its last 32 NOTIFYs for
// the ones that come late, but none older than a minute, so that one that
// hears only at each refresh holds one, in a slice of its own size.
func TestKeepTime(t *testing.T) {
	sub := &subscription{}
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	for i := range 40 {
		sub.keepTime(uint32(i+1), t0.Add(time.Duration(i)*time.Millisecond))
	}
	if len(sub.times) != keptTimes || sub.times[0].cseq != 9 {
		t.Fatalf("after 40 NOTIFYs: %d times from CSeq %d, want %d from 9", len(sub.times), sub.times[0].cseq, keptTimes)
	}
	sub.keepTime(41, t0.Add(2*time.Minute))
	if len(sub.times) != 1 || cap(sub.times) > 4 || sub.times[0].cseq != 41 {
		t.Fatalf("a refresh later: %d times (capacity %d), want only the last", len(sub.times), cap(sub.times))
	}
	sub.keepTime(42, t0.Add(2*time.Minute+30*time.Second))
	if len(sub.times) != 2 {
		t.Errorf("30 s later: %d times, want 2", len(sub.times))
	}
}

// TestIntervalTooBrief: a PBX that answers 423 with Min-Expires gets every
// later SUBSCRIBE of every extension (those of the others, sent meanwhile,
// included: the race detector watches the raised lifetime) with at least
// that lifetime.
func TestIntervalTooBrief(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	asked := map[string][]string{}
	var notifier atomic.Pointer[fakeNotifier] // set once it serves
	n := startNotifierOn(t, "udp", nil, func(srv *sipgo.Server) {
		srv.OnSubscribe(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
			exp := req.GetHeader("Expires").Value()
			mu.Lock()
			asked[req.To().Address.User] = append(asked[req.To().Address.User], exp)
			mu.Unlock()
			if exp != "0" && atoi(exp) < 120 {
				res := sipmsg.NewResponseFromRequest(req, 423, "Interval Too Brief", nil)
				res.AppendHeader(sipmsg.NewHeader("Min-Expires", "120"))
				_ = tx.Respond(res)
				return
			}
			if n := notifier.Load(); n != nil {
				n.handle(req, tx)
				return
			}
			_ = tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusServiceUnavailable, "Not Yet", nil))
		})
	})
	notifier.Store(n)
	st := testpbx.OpenStore(t)
	exts := []string{"180", "181", "182", "183"}
	if err := st.AddExtensions(t.Context(), exts); err != nil {
		t.Fatal(err)
	}
	s := startSubscriber(t, Config{PBXAddr: n.addr, Domain: "pbx.test", Store: st, Expires: time.Minute})
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if a := s.Stats().Active; a != len(exts) {
			return fmt.Sprintf("%d subscriptions up", a)
		}
		return ""
	})
	if got := s.expiry(); got != 2*time.Minute {
		t.Errorf("lifetime asked for now %s, want 2m0s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, ext := range exts {
		if a := asked[ext]; len(a) == 0 || a[len(a)-1] != "120" {
			t.Errorf("extension %s: SUBSCRIBEs asked for %v, want 120 last", ext, a)
		}
	}
}
