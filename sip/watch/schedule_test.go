package watch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate/internal/testpbx"
)

// TestRefreshSpread: the refreshes of subscriptions granted together fall
// between 80 % and 90 % of the lifetime, evenly, not in one instant.
func TestRefreshSpread(t *testing.T) {
	const granted, n, bins = 10 * time.Minute, 10000, 10
	lo, hi := granted*8/10, granted*9/10
	var count [bins]int
	for range n {
		at := granted - refreshLead(granted, rand.Float64())
		if at < lo || at > hi {
			t.Fatalf("refresh at %s of %s, want within [%s, %s]", at, granted, lo, hi)
		}
		count[min(int((at-lo)*bins/(hi-lo)), bins-1)]++
	}
	for i, c := range count {
		if c < n/bins/2 || c > n/bins*3/2 {
			t.Errorf("bin %d of the refresh window holds %d of %d refreshes, want about %d: %v", i, c, n, n/bins, count)
		}
	}
	if got := refreshLead(granted, 0); got != granted/10 {
		t.Errorf("earliest lead %s, want %s", got, granted/10)
	}
	if got := refreshLead(granted, 1); got != granted/5 {
		t.Errorf("latest lead %s, want %s", got, granted/5)
	}
	// Short lifetimes are refreshed earlier, so that a slow answer still
	// comes in time.
	for _, c := range []struct{ d, lo, hi time.Duration }{
		{10 * time.Second, 2500 * time.Millisecond, 5 * time.Second},
		{60 * time.Second, 15 * time.Second, 30 * time.Second},
		{120 * time.Second, 20 * time.Second, 40 * time.Second},
		{200 * time.Second, 20 * time.Second, 40 * time.Second},
	} {
		if lo, hi := refreshLead(c.d, 0), refreshLead(c.d, 1); lo != c.lo || hi != c.hi {
			t.Errorf("lifetime %s: lead from %s to %s, want from %s to %s", c.d, lo, hi, c.lo, c.hi)
		}
	}
}

// TestStartWindow: the first SUBSCRIBEs are spread over a window that grows
// with the number of extensions, at the rate configured, within a quarter
// of the expiry.
func TestStartWindow(t *testing.T) {
	for _, c := range []struct {
		n, rate int
		expires time.Duration
		want    time.Duration
	}{
		{0, 500, time.Minute, 0},
		{1, 500, time.Minute, 2 * time.Millisecond},
		{1000, 500, 10 * time.Minute, 2 * time.Second},
		{10000, 500, 10 * time.Minute, 20 * time.Second},
		{10000, 100, 10 * time.Minute, 100 * time.Second},
		{10000, 2000, 10 * time.Minute, 5 * time.Second},
		{100000, 500, 10 * time.Minute, 150 * time.Second},
		{10000, 500, time.Minute, 15 * time.Second},
	} {
		if got := startWindow(c.n, c.rate, c.expires); got != c.want {
			t.Errorf("startWindow(%d, %d, %s) = %s, want %s", c.n, c.rate, c.expires, got, c.want)
		}
	}
	for range 1000 {
		if d := retryJitter(2 * time.Second); d < 2*time.Second || d > 2200*time.Millisecond {
			t.Fatalf("retryJitter(2s) = %s, want within [2s, 2.2s]", d)
		}
	}
}

// TestRetryAfter: a SUBSCRIBE answered 503 with Retry-After, and a NOTIFY
// with Subscription-State: terminated;retry-after, hold the next SUBSCRIBE
// for the time the PBX asked (the back-off alone would send it within a
// second).
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, how string }{{"ServiceUnavailable", "503"}, {"TerminatedNotify", "notify"}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var times []time.Time
			n := startNotifier(t, func(*sipmsg.Request) (int, int) {
				mu.Lock()
				defer mu.Unlock()
				times = append(times, time.Now())
				if c.how == "503" && len(times) == 1 {
					return sipmsg.StatusServiceUnavailable, 0
				}
				return 0, 60
			})
			st := testpbx.OpenStore(t)
			ext := map[string]string{"503": "170", "notify": "171"}[c.how]
			if err := st.AddExtensions(t.Context(), []string{ext}); err != nil {
				t.Fatal(err)
			}
			startSubscriber(t, Config{PBXAddr: n.addr, Domain: "pbx.test", Store: st, Expires: time.Minute, RetryMin: 100 * time.Millisecond})
			first := 1
			if c.how == "notify" {
				testpbx.WaitFor(t, 10*time.Second, func() string {
					if n.sub(ext) == nil {
						return "no subscription"
					}
					return ""
				})
				sub := n.sub(ext)
				if code, err := n.notify(t.Context(), sub, "active;expires=60", ""); err != nil || code != 200 {
					t.Fatalf("first NOTIFY: %d %v", code, err)
				}
				mu.Lock()
				times = append(times[:0], time.Now())
				mu.Unlock()
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				if code, err := n.notify(ctx, sub, "terminated;reason=probation;retry-after=2", ""); err != nil || code != 200 {
					t.Fatalf("terminating NOTIFY: %d %v", code, err)
				}
			}
			testpbx.WaitFor(t, 10*time.Second, func() string {
				mu.Lock()
				defer mu.Unlock()
				if len(times) < first+1 {
					return fmt.Sprintf("%d SUBSCRIBEs", len(times))
				}
				return ""
			})
			mu.Lock()
			gap := times[first].Sub(times[first-1])
			mu.Unlock()
			if gap < 2*time.Second || gap > 4*time.Second {
				t.Errorf("next SUBSCRIBE after %s, want 2s (Retry-After) and a little", gap)
			}
		})
	}
}
