package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

func TestPublic(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", true}, {"2a00:1450:4001:80b::200e", true},
		{"127.0.0.1", false}, {"::1", false}, {"10.1.2.3", false}, {"192.168.0.1", false}, {"172.16.0.1", false},
		{"169.254.169.254", false}, {"fe80::1", false}, {"fd00::1", false}, {"0.0.0.0", false}, {"::", false},
		{"100.64.0.1", false}, {"224.0.0.1", false}, {"::ffff:127.0.0.1", false}, {"::ffff:8.8.8.8", true},
	} {
		if got := Public(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Public(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestPrivateRefusedAtConnect: a loopback target is refused as it is
// connected to (a name that resolves to it too), unless allowed.
func TestPrivateRefusedAtConnect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	ep := callstate.WebhookEndpoint{ID: 1, URL: "http://localhost:" + port + "/hook", Secrets: []string{NewSecret()}}
	d := callstate.WebhookDelivery{ID: 1, MsgID: "msg_1", Body: []byte("{}"), ContentType: "application/json", Attempts: 1}
	refusing := New(nil, Options{Logger: nil})
	if _, _, err := refusing.post(context.Background(), ep, d, time.Now()); !errors.Is(err, ErrPrivateTarget) {
		t.Fatalf("loopback by name: %v, want ErrPrivateTarget", err)
	}
	allowing := New(nil, Options{AllowPrivate: true})
	if status, _, err := allowing.post(context.Background(), ep, d, time.Now()); err != nil || status != 200 {
		t.Fatalf("allowed: %d %v", status, err)
	}
}

// TestTry: what each answer makes of a delivery.
func TestTry(t *testing.T) {
	answer := 0
	retry := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if retry != "" {
			w.Header().Set("Retry-After", retry)
		}
		if answer == http.StatusFound {
			w.Header().Set("Location", "http://example.com/")
		}
		w.WriteHeader(answer)
	}))
	defer srv.Close()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s := New(nil, Options{AllowPrivate: true, Schedule: []time.Duration{0, 5 * time.Second, time.Minute}, Now: func() time.Time { return now }})
	ep := callstate.WebhookEndpoint{ID: 1, URL: srv.URL, Secrets: []string{NewSecret()}}
	tests := []struct {
		name      string
		status    int
		retry     string
		attempts  int
		delivered bool
		next      time.Duration // -1: failed
		disable   bool
	}{
		{"OK", 204, "", 1, true, 0, false},
		{"ServerErrorRetriedOnSchedule", 500, "", 1, false, 5 * time.Second, false},
		{"RedirectNotFollowed", 302, "", 2, false, time.Minute, false},
		{"TooManyRequestsHonoursRetryAfter", 429, "120", 1, false, 2 * time.Minute, false},
		{"RetryAfterShorterThanSchedule", 503, "1", 2, false, time.Minute, false},
		{"RetryAfterIgnoredOn500", 500, "120", 1, false, 5 * time.Second, false},
		{"GoneDisables", 410, "", 1, false, 0, true},
		{"LastTryFailsAndDisables", 500, "", 3, false, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer, retry = tt.status, tt.retry
			d := callstate.WebhookDelivery{ID: 1, EndpointID: 1, MsgID: "msg_1", Body: []byte("{}"), ContentType: "application/json", Attempts: tt.attempts}
			r := s.try(context.Background(), callstate.ClaimedDelivery{Delivery: d, Endpoint: ep})
			if r.Delivered != tt.delivered || (r.Disable != "") != tt.disable || r.Attempt.Status != tt.status {
				t.Fatalf("result %+v", r)
			}
			switch {
			case tt.delivered:
			case tt.next < 0:
				if !r.NextAt.IsZero() {
					t.Fatalf("next try at %s, want none", r.NextAt)
				}
			case !r.NextAt.Equal(now.Add(tt.next)):
				t.Fatalf("next try at %s, want %s", r.NextAt, now.Add(tt.next))
			}
		})
	}
}
