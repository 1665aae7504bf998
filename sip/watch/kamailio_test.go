package watch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/testpbx"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// startSubscriber runs a Subscriber for cfg until the test ends, and waits
// for it to have un-subscribed then.
func startSubscriber(tb testing.TB, cfg Config) *Subscriber {
	tb.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testpbx.Logger(tb)
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 2 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			tb.Error("Run did not return within 30s of cancel")
		}
	})
	return s
}

func lampOf(tb testing.TB, st *store.Store, ext string) store.Lamp {
	tb.Helper()
	ls, err := st.Lamps(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range ls {
		if l.Extension == ext {
			return l
		}
	}
	return store.Lamp{}
}

// sipCalls returns the SIP calls of ext, in any state.
func sipCalls(tb testing.TB, st *store.Store, ext string) []callstate.Call {
	tb.Helper()
	calls, err := st.Calls(tb.Context(), callstate.SourceSIP, ext)
	if err != nil {
		tb.Fatal(err)
	}
	return calls
}

// TestKamailio places real calls through Kamailio and checks the rows the
// subscriber writes for caller and callee.
func TestKamailio(t *testing.T) {
	tests := []struct {
		name      string
		transport string // the subscriber's; "" is UDP
		place     func(t *testing.T, k *testpbx.Kamailio)
		answered  bool
		wantCause map[string]string // by extension; "" accepts any
	}{
		{
			name: "Answered",
			place: func(t *testing.T, k *testpbx.Kamailio) {
				k.PlaceCall(t, "100", "101", 500*time.Millisecond, 500*time.Millisecond)
			},
			answered: true,
		},
		{
			name:      "AnsweredOverTCP",
			transport: "tcp",
			place: func(t *testing.T, k *testpbx.Kamailio) {
				k.PlaceCall(t, "100", "101", 500*time.Millisecond, 500*time.Millisecond)
			},
			answered: true,
		},
		{
			name:      "AnsweredOverTLS",
			transport: "tls",
			place: func(t *testing.T, k *testpbx.Kamailio) {
				k.PlaceCall(t, "100", "101", 500*time.Millisecond, 500*time.Millisecond)
			},
			answered: true,
		},
		{
			name:  "Cancelled",
			place: func(t *testing.T, k *testpbx.Kamailio) { k.PlaceUnansweredCall(t, "100", "101", 500*time.Millisecond) },
		},
		{
			name:  "Rejected",
			place: func(t *testing.T, k *testpbx.Kamailio) { k.PlaceRejectedCall(t, "100", "101", 500*time.Millisecond) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Transport: tt.transport, Expires: time.Minute}
			var k *testpbx.Kamailio
			if tt.transport == "tls" {
				files, conf := testCertificate(t)
				k = testpbx.StartKamailioTLS(t, files)
				cfg.PBXAddr, cfg.TLSConfig = k.TLSAddr(), conf
			} else {
				k = testpbx.StartKamailio(t)
				cfg.PBXAddr = k.Addr()
			}
			st := testpbx.OpenStore(t)
			if err := st.AddExtensions(t.Context(), []string{"100", "101"}); err != nil {
				t.Fatal(err)
			}
			cfg.Domain, cfg.Store = k.Domain(), st
			startSubscriber(t, cfg)
			for _, ext := range []string{"100", "101"} {
				testpbx.WaitFor(t, 15*time.Second, func() string {
					if l := lampOf(t, st, ext); l.Lamp != callstate.LampIdle {
						return fmt.Sprintf("extension %s: lamp %+v, want idle", ext, l)
					}
					return ""
				})
			}
			start := time.Now()
			tt.place(t, k)
			for _, c := range []struct{ ext, dir, from, to string }{
				{"100", "out", "100", "101"},
				{"101", "in", "100", "101"},
			} {
				testpbx.WaitFor(t, 10*time.Second, func() string {
					calls := sipCalls(t, st, c.ext)
					if len(calls) != 1 || calls[0].State != callstate.StateEnded {
						return fmt.Sprintf("extension %s: calls %+v, want one ended", c.ext, calls)
					}
					return ""
				})
				call := sipCalls(t, st, c.ext)[0]
				if string(call.Direction) != c.dir || call.From != c.from || call.To != c.to {
					t.Errorf("extension %s: direction %q from %q to %q, want %q %q %q", c.ext, call.Direction, call.From, call.To, c.dir, c.from, c.to)
				}
				if call.CallID == "" || call.Extension != c.ext {
					t.Errorf("extension %s: call id %q extension %q", c.ext, call.CallID, call.Extension)
				}
				if call.StartedAt.Before(start.Add(-time.Second)) || call.EndedAt.IsZero() || call.EndedAt.Before(call.StartedAt) {
					t.Errorf("extension %s: started %v ended %v (test started %v)", c.ext, call.StartedAt, call.EndedAt, start)
				}
				if tt.answered != !call.AnsweredAt.IsZero() {
					t.Errorf("extension %s: answered at %v, want answered=%v", c.ext, call.AnsweredAt, tt.answered)
				}
				if tt.answered && (call.AnsweredAt.Before(call.StartedAt) || call.EndedAt.Before(call.AnsweredAt)) {
					t.Errorf("extension %s: started %v answered %v ended %v out of order", c.ext, call.StartedAt, call.AnsweredAt, call.EndedAt)
				}
				j, err := st.Journal(t.Context(), callstate.SourceSIP, call.Key)
				if err != nil || len(j) < 2 {
					t.Errorf("extension %s: journal %d entries, err %v; want ringing and ended at least", c.ext, len(j), err)
				}
				testpbx.WaitFor(t, 5*time.Second, func() string {
					if l := lampOf(t, st, c.ext); l.Lamp != callstate.LampIdle || l.Subscription != callstate.SubscriptionActive {
						return fmt.Sprintf("extension %s after the call: lamp %+v, want idle and active", c.ext, l)
					}
					return ""
				})
			}
		})
	}
}

// TestKamailioRuntimeExtension checks that an extension added to the table
// at runtime is watched without a restart, and un-watched when disabled.
func TestKamailioRuntimeExtension(t *testing.T) {
	t.Parallel()
	k := testpbx.StartKamailio(t)
	st := testpbx.OpenStore(t)
	startSubscriber(t, Config{PBXAddr: k.Addr(), Domain: k.Domain(), Store: st, Expires: time.Minute, ReloadInterval: 200 * time.Millisecond})
	if err := st.AddExtensions(t.Context(), []string{"105"}); err != nil {
		t.Fatal(err)
	}
	testpbx.WaitFor(t, 15*time.Second, func() string {
		if l := lampOf(t, st, "105"); l.Lamp != callstate.LampIdle {
			return fmt.Sprintf("lamp %+v, want idle", l)
		}
		return ""
	})
	k.PlaceCall(t, "104", "105", 300*time.Millisecond, 300*time.Millisecond)
	testpbx.WaitFor(t, 10*time.Second, func() string {
		calls := sipCalls(t, st, "105")
		if len(calls) != 1 || calls[0].State != callstate.StateEnded || calls[0].AnsweredAt.IsZero() {
			return fmt.Sprintf("calls %+v, want one answered and ended", calls)
		}
		return ""
	})
	if calls := sipCalls(t, st, "104"); len(calls) != 0 {
		t.Errorf("unwatched extension 104 has calls: %+v", calls)
	}
	if err := st.SetExtensionEnabled(t.Context(), "105", false); err != nil {
		t.Fatal(err)
	}
	testpbx.WaitFor(t, 10*time.Second, func() string {
		if l := lampOf(t, st, "105"); l.Subscription != callstate.SubscriptionTerminated || l.Lamp != callstate.LampUnavailable {
			return fmt.Sprintf("lamp %+v, want unavailable and terminated", l)
		}
		return ""
	})
}

// testCertificate makes a certificate for 127.0.0.1 for Kamailio and
// returns a TLS configuration that trusts it and presents it on the
// subscriber's own listener.
func testCertificate(tb testing.TB) (testpbx.TLSFiles, *tls.Config) {
	tb.Helper()
	files := testpbx.NewCertificate(tb)
	pair, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	if pem, err := os.ReadFile(files.CertFile); err != nil || !roots.AppendCertsFromPEM(pem) {
		tb.Fatalf("read %s: %v", files.CertFile, err)
	}
	return files, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

func contextWithCancel(tb testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	return ctx, cancel
}

// messageSink is a SIP UA that answers MESSAGE with 200 and keeps the
// bodies, standing in for the receiver of SIP_MESSAGE_URI.
type messageSink struct {
	addr   string
	mu     sync.Mutex
	bodies []string
}

func startMessageSink(tb testing.TB) *messageSink {
	tb.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("sink"))
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		tb.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	m := &messageSink{addr: pc.LocalAddr().String()}
	srv.OnMessage(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		m.mu.Lock()
		m.bodies = append(m.bodies, string(req.Body()))
		m.mu.Unlock()
		_ = tx.Respond(sipmsg.NewResponseFromRequest(req, sipmsg.StatusOK, "OK", nil))
	})
	go func() { _ = srv.ServeUDP(pc) }()
	tb.Cleanup(func() { _ = ua.Close(); _ = pc.Close() })
	return m
}

func (m *messageSink) received() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.bodies)
}

// TestKamailioRegisterPresenceMessage runs the optional parts against
// Kamailio: REGISTER of our user, presence subscriptions beside the dialog
// ones, and a SIP MESSAGE with the lamp after every change.
func TestKamailioRegisterPresenceMessage(t *testing.T) {
	t.Parallel()
	k := testpbx.StartKamailio(t)
	sink := startMessageSink(t)
	st := testpbx.OpenStore(t)
	if err := st.AddExtensions(t.Context(), []string{"110", "111"}); err != nil {
		t.Fatal(err)
	}
	s := startSubscriber(t, Config{PBXAddr: k.Addr(), Domain: k.Domain(), Store: st, Expires: time.Minute,
		Username: "watcher", Register: true, Presence: true, MessageURI: "sip:board@" + sink.addr})
	testpbx.WaitFor(t, 15*time.Second, func() string {
		if got := s.Stats().Active; got != 4 {
			return fmt.Sprintf("%d subscriptions active, want 4 (dialog and presence for 110 and 111)", got)
		}
		return ""
	})
	if !k.Registered(t, "watcher") {
		t.Error("Kamailio has no binding for watcher: REGISTER did not happen")
	}
	k.PlaceCall(t, "110", "111", 300*time.Millisecond, 300*time.Millisecond)
	want := []string{
		`{"entity":"sip:111@` + k.Domain() + `","status":"ringing"}`,
		`{"entity":"sip:111@` + k.Domain() + `","status":"busy"}`,
		`{"entity":"sip:111@` + k.Domain() + `","status":"idle"}`,
	}
	testpbx.WaitFor(t, 10*time.Second, func() string {
		got := sink.received()
		// The callee's MESSAGEs, in order, among the caller's.
		i := 0
		for _, b := range got {
			if i < len(want) && b == want[i] {
				i++
			}
		}
		if i < len(want) {
			return fmt.Sprintf("MESSAGE bodies %q, want %q among them in order", got, want)
		}
		return ""
	})
}
