package watch

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
)

// TestKamailioRestart restarts Kamailio (SIGKILL of all its processes, then
// the same configuration again) while a call is up. Within 10 s the lamps
// must be right again, the call ended with cause pbx-restart by an event of
// its own, and a call placed right after must be recorded with its own
// row and times.
func TestKamailioRestart(t *testing.T) {
	tests := []struct {
		name      string
		keepalive time.Duration
		down      time.Duration // between kill and start
		register  bool          // REGISTER first; again after the restart
		transport string
	}{
		// OPTIONS go unanswered twice: lamps unavailable until Kamailio is
		// back.
		{"DownForSeconds", 500 * time.Millisecond, 3 * time.Second, false, ""},
		// Back before OPTIONS miss twice: the refresh of one subscription
		// per keepalive round is answered 481. The default SIP_KEEPALIVE.
		{"QuickRestart", 5 * time.Second, 0, false, ""},
		{"QuickRestartRegistered", 2 * time.Second, 0, true, ""},
		{"DownForSecondsOverTCP", 500 * time.Millisecond, 3 * time.Second, false, "tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := testpbx.StartKamailio(t)
			st := testpbx.OpenStore(t)
			exts := []string{"120", "121"}
			if err := st.AddExtensions(t.Context(), exts); err != nil {
				t.Fatal(err)
			}
			startSubscriber(t, Config{PBXAddr: k.Addr(), Domain: k.Domain(), Store: st,
				Expires: 10 * time.Minute, Keepalive: tt.keepalive, Username: "watcher", Register: tt.register, Transport: tt.transport})
			waitLamps := func(timeout time.Duration, want string) {
				t.Helper()
				for _, ext := range exts {
					testpbx.WaitFor(t, timeout, func() string {
						if l := lampOf(t, st, ext); l.Lamp != want || l.Subscription != callstate.SubscriptionActive {
							return fmt.Sprintf("extension %s: lamp %+v, want %s and active", ext, l, want)
						}
						return ""
					})
				}
			}
			waitLamps(15*time.Second, callstate.LampIdle)

			call := k.StartCall(t, "120", "121", 200*time.Millisecond, 8*time.Second)
			waitLamps(10*time.Second, callstate.LampBusy)
			first := map[string]callstate.Call{}
			for _, ext := range exts {
				first[ext] = sipCalls(t, st, ext)[0]
			}

			sawUnavailable := make(chan bool, 1)
			go func() {
				saw := false
				deadline := time.Now().Add(tt.down + 5*time.Second)
				for time.Now().Before(deadline) && !saw {
					saw = lampOf(t, st, "120").Lamp == callstate.LampUnavailable
					time.Sleep(20 * time.Millisecond)
				}
				sawUnavailable <- saw
			}()
			k.Restart(t, tt.down)
			back := time.Now()
			waitLamps(10*time.Second, callstate.LampIdle)
			for _, ext := range exts {
				testpbx.WaitFor(t, time.Second, func() string {
					c, err := st.Call(t.Context(), callstate.SourceSIP, first[ext].Key)
					if err != nil || c.State != callstate.StateEnded || c.Cause != callstate.CausePBXRestart {
						return fmt.Sprintf("extension %s: call %+v, %v; want ended with cause %s", ext, c, err, callstate.CausePBXRestart)
					}
					return ""
				})
				j, err := st.Journal(t.Context(), callstate.SourceSIP, first[ext].Key)
				if err != nil {
					t.Fatal(err)
				}
				if last := j[len(j)-1]; last.Type != "dialog-"+callstate.CausePBXRestart {
					t.Errorf("extension %s: last journal entry %+v, want type dialog-%s", ext, last, callstate.CausePBXRestart)
				}
			}
			t.Logf("lamps right and the call ended %v after Kamailio was back", time.Since(back).Round(time.Millisecond))
			if tt.register && !k.Registered(t, "watcher") {
				t.Error("watcher is not registered again after the restart")
			}
			if tt.down > 0 && !<-sawUnavailable {
				t.Error("the lamp never showed unavailable while Kamailio was down")
			}
			if err := call.Err(); err != nil {
				t.Logf("the call through the restart: %v", err)
			}

			placed := time.Now()
			k.PlaceCall(t, "120", "121", 300*time.Millisecond, 300*time.Millisecond)
			for _, ext := range exts {
				var c callstate.Call
				testpbx.WaitFor(t, 10*time.Second, func() string {
					calls := sipCalls(t, st, ext)
					if len(calls) != 2 || calls[1].State != callstate.StateEnded {
						return fmt.Sprintf("extension %s: calls %+v, want the first and a second one ended", ext, calls)
					}
					c = calls[1]
					return ""
				})
				t.Logf("extension %s: the call through the restart is %s, the one after it %s", ext, first[ext].Key, c.Key)
				if c.Key == first[ext].Key || c.CallID == first[ext].CallID {
					t.Errorf("extension %s: second call %q (call-id %q) is the first one's", ext, c.Key, c.CallID)
				}
				if c.StartedAt.Before(placed.Add(-time.Second)) || c.AnsweredAt.IsZero() || c.AnsweredAt.Before(c.StartedAt) ||
					c.EndedAt.Before(c.AnsweredAt) || c.Cause == callstate.CausePBXRestart {
					t.Errorf("extension %s: second call started %v answered %v ended %v cause %q (placed %v)",
						ext, c.StartedAt, c.AnsweredAt, c.EndedAt, c.Cause, placed)
				}
			}
		})
	}
}

// TestOneSubscriptionLost has the PBX answer one subscription's refresh
// 481, as a PBX that lost only that one would: the subscriber asks whether
// the PBX still knows another one, and as it does, only the lost one is
// subscribed again; the others keep their dialogs.
func TestOneSubscriptionLost(t *testing.T) {
	t.Parallel()
	exts := []string{"160", "161", "162"}
	n, _, sink, lose := losingSubscriptions(t, exts, 200*time.Millisecond)
	before := map[string]string{}
	for _, ext := range exts {
		before[ext] = n.sub(ext).callID
	}
	lose("160")
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if len(sink.matching("it lost only one")) == 0 {
			return "the other subscription's refresh not answered yet"
		}
		if sub := n.sub("160"); sub == nil || sub.callID == before["160"] {
			return "160 not subscribed again"
		}
		return ""
	})
	if lines := sink.matching("the PBX restarted"); len(lines) != 0 {
		t.Errorf("one lost subscription was taken for a restart: %q", lines)
	}
	for _, ext := range exts[1:] {
		if got := n.sub(ext).callID; got != before[ext] {
			t.Errorf("extension %s subscribed again (Call-ID %s, was %s)", ext, got, before[ext])
		}
	}
}

// TestLostAfterNotifiesWentAstray has the PBX send two subscriptions a
// NOTIFY twice (our answer was late, as under a burst), then answer both
// their refreshes 481, as Kamailio does once it gave such subscriptions
// up. Two 481s in a row would read as a restart; here each is its own
// subscription's loss: both are subscribed again, the third keeps its
// dialog, and nothing says the PBX restarted.
func TestLostAfterNotifiesWentAstray(t *testing.T) {
	t.Parallel()
	exts := []string{"170", "171", "172"}
	n, s, sink, lose := losingSubscriptions(t, exts, 100*time.Millisecond)
	before := map[string]string{}
	for _, ext := range exts {
		before[ext] = n.sub(ext).callID
		if ext == "172" {
			continue
		}
		// A NOTIFY and its retransmission (our answer was lost or late),
		// until the subscription has seen one: on a busy machine a
		// refresh may have replaced the dialog meanwhile.
		deadline := time.Now().Add(10 * time.Second)
		for {
			sub := n.sub(ext)
			p := newRawPeer(t, "udp", n, sub)
			cseq := n.nextCSeq(sub)
			msg := p.message(cseq, dialogDoc(ext, int(cseq), "a"+ext, "early"), -1)
			p.send(msg)
			if code := p.status(cseq, 5*time.Second); code != 200 {
				t.Fatalf("NOTIFY to %s answered %d", ext, code)
			}
			p.send(msg)
			time.Sleep(50 * time.Millisecond)
			if s.subscriptionOf(ext).ownLoss(time.Now()) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the retransmission not seen", ext)
			}
		}
		before[ext] = n.sub(ext).callID
	}
	lose("170", "171")
	testpbx.WaitFor(t, 15*time.Second, func() string {
		for _, ext := range exts[:2] {
			if sub := n.sub(ext); sub == nil || sub.callID == before[ext] {
				return ext + " not subscribed again"
			}
		}
		return ""
	})
	if lines := sink.matching("the PBX restarted"); len(lines) != 0 {
		t.Errorf("subscriptions lost after NOTIFYs went astray were taken for a restart: %q", lines)
	}
	if lines := sink.matching("the PBX gave up this subscription"); len(lines) != 2 {
		t.Errorf("%d lines on a subscription given up, want 2: %q", len(lines), lines)
	}
	if got := n.sub("172").callID; got != before["172"] {
		t.Errorf("extension 172 subscribed again (Call-ID %s, was %s)", got, before["172"])
	}
}

// TestProbedAfterNotifyUnanswered: a NOTIFY came twice (our answer was
// late), and the PBX gave the subscription up without a word, as Kamailio
// does when its NOTIFY transaction times out: no NOTIFY comes any more.
// With keepalive off and the next refresh most of a minute away, the
// subscriber still asks within seconds (troubleProbes), hears 481, and
// subscribes that extension again; the other keeps its dialog.
func TestProbedAfterNotifyUnanswered(t *testing.T) {
	t.Parallel()
	exts := []string{"180", "181"}
	n, s, sink, lose := losingSubscriptions(t, exts, 0)
	before := map[string]string{}
	for _, ext := range exts {
		before[ext] = n.sub(ext).callID
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		sub := n.sub("180")
		p := newRawPeer(t, "udp", n, sub)
		cseq := n.nextCSeq(sub)
		msg := p.message(cseq, dialogDoc("180", int(cseq), "a180", "early"), -1)
		p.send(msg)
		if code := p.status(cseq, 5*time.Second); code != 200 {
			t.Fatalf("NOTIFY answered %d", code)
		}
		p.send(msg)
		time.Sleep(50 * time.Millisecond)
		if s.subscriptionOf("180").ownLoss(time.Now()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the retransmission not seen")
		}
	}
	before["180"] = n.sub("180").callID
	lose("180")
	testpbx.WaitFor(t, 15*time.Second, func() string {
		if sub := n.sub("180"); sub == nil || sub.callID == before["180"] {
			return "180 not subscribed again"
		}
		return ""
	})
	if lines := sink.matching("the PBX gave up this subscription"); len(lines) != 1 {
		t.Errorf("%d lines on a subscription given up, want 1: %q", len(lines), lines)
	}
	if lines := sink.matching("the PBX restarted"); len(lines) != 0 {
		t.Errorf("a subscription given up was taken for a restart: %q", lines)
	}
	if got := n.sub("181").callID; got != before["181"] {
		t.Errorf("extension 181 subscribed again (Call-ID %s, was %s)", got, before["181"])
	}
}

// subscriptionOf returns ext's dialog subscription, or nil.
func (s *Subscriber) subscriptionOf(ext string) *subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.watched[ext]; w != nil {
		for _, sub := range w.subs {
			if sub.event == eventDialog {
				return sub
			}
		}
	}
	return nil
}

// losingSubscriptions starts a notifier and a subscriber watching exts,
// with keepalive rounds every keepalive, and waits until every subscription
// is up. lose makes the PBX answer the next refresh of each extension it
// names 481, as a PBX that gave that subscription up does.
func losingSubscriptions(t *testing.T, exts []string, keepalive time.Duration) (n *fakeNotifier, s *Subscriber, sink *logSink, lose func(exts ...string)) {
	t.Helper()
	var mu sync.Mutex
	lost := map[string]bool{}
	n = startNotifier(t, func(req *sipmsg.Request) (int, int) {
		mu.Lock()
		defer mu.Unlock()
		if tag, _ := req.To().Params.Get("tag"); tag != "" && lost[req.To().Address.User] {
			delete(lost, req.To().Address.User)
			return sipmsg.StatusCallTransactionDoesNotExists, 0
		}
		return 0, 60
	})
	st := testpbx.OpenStore(t)
	if err := st.AddExtensions(t.Context(), exts); err != nil {
		t.Fatal(err)
	}
	sink = &logSink{}
	s = startSubscriber(t, Config{PBXAddr: n.addr, Domain: "pbx.test", Store: st, Expires: time.Minute,
		Keepalive: keepalive, Logger: slog.New(sink)})
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if a := s.Stats().Active; a != len(exts) {
			return fmt.Sprintf("%d subscriptions up", a)
		}
		return ""
	})
	lose = func(exts ...string) {
		mu.Lock()
		defer mu.Unlock()
		for _, ext := range exts {
			lost[ext] = true
		}
	}
	return n, s, sink, lose
}
