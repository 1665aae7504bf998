package store_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
	"github.com/callstate/callstate/webpush"
)

// TestPushThrottleShared: a push service that tells one instance to wait
// (429, Retry-After) gets no push from another instance meanwhile: the
// wait is kept in the database for all. A later wait recorded stays over
// an earlier one; an ended wait is forgotten with the old pushes.
func TestPushThrottleShared(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	key, err := webpush.NewVAPIDKey()
	if err != nil {
		t.Fatal(err)
	}
	v, err := webpush.ParseVAPID(key, "mailto:ops@example.com")
	if err != nil {
		t.Fatal(err)
	}
	sub, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	msg := webpush.Message{Endpoint: srv.URL + "/push/1", P256dh: sub.PublicKey().Bytes(), Auth: auth,
		Payload: []byte(`{"v":1}`), TTL: 30 * time.Second, Urgency: webpush.UrgencyHigh}
	ca := webpush.New(v, webpush.Options{AllowHTTP: true, Throttle: a})
	cb := webpush.New(v, webpush.Options{AllowHTTP: true, Throttle: b})

	if _, err := ca.Send(ctx, msg); !errors.Is(err, webpush.ErrThrottled) {
		t.Fatalf("first push: %v", err)
	}
	r, err := cb.Send(ctx, msg)
	if !errors.Is(err, webpush.ErrThrottled) || hits.Load() != 1 {
		t.Fatalf("the other instance's push: %+v, %v; the push service was asked %d times, want 1", r, err, hits.Load())
	}
	if r.RetryAfter < 55*time.Second || r.RetryAfter > 60*time.Second {
		t.Errorf("the other instance waits %s more, want about 60s", r.RetryAfter)
	}

	origin := srv.URL
	held, err := b.PushesHeldUntil(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.HoldPushes(ctx, origin, held.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if again, _ := b.PushesHeldUntil(ctx, origin); !again.Equal(held) {
		t.Errorf("an earlier wait replaced a later one: %s, was %s", again, held)
	}
	if n, err := a.ForgetWake(ctx, held.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("forget: %d rows, %v", n, err)
	}
	if none, err := b.PushesHeldUntil(ctx, origin); err != nil || !none.IsZero() {
		t.Fatalf("after the wait ended and was forgotten: %s, %v", none, err)
	}
}

// TestWakeClearLost: a clear recorded by the wake-up's read of the feed
// and never marked sent (its instance died first) is taken once, by one
// of two instances, to be sent again; one marked sent is not.
func TestWakeClearLost(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	<-a.Ready()
	if _, err := a.AddDevice(ctx, wakeDevice("d", "w0", ""), hash("d"), nil); err != nil {
		t.Fatal(err)
	}
	targets, err := a.WakeTargets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range []string{"lost", "sent"} {
		if ok, err := a.ClaimWakePush(ctx, j, j+"-leg", []string{"w0"}, ""); !ok || err != nil {
			t.Fatalf("claim %s: %v %v", j, ok, err)
		}
		for i, u := range []callstate.Update{
			{Key: j + "-leg", CallID: j + "-leg", OrigCallID: j, Direction: callstate.DirectionIn, From: "4917", To: "4930",
				UserIDs: []string{"w0"}, State: callstate.StateRinging},
			{Key: j + "-leg", CallID: j + "-leg", State: callstate.StateAnswered, AnsweredBy: "Alice", Answering: "4930"},
		} {
			ev := callstate.Event{Source: callstate.SourceSipgate, Type: []string{"newCall", "answer"}[i], DedupKey: fmt.Sprint(j, i),
				ReceivedAt: t0.Add(time.Duration(i) * time.Second), Payload: []byte("x"), Update: u}
			if _, err := a.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.SyncFeed(ctx); err != nil {
		t.Fatal(err)
	}
	var clears []string
	for range 2 {
		ps, _, err := a.WakeFeed(ctx, targets)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			clears = append(clears, p.Message.Journey)
		}
	}
	if len(clears) != 2 {
		t.Fatalf("clears %v, want lost and sent", clears)
	}
	if err := a.ClearSent(ctx, "sent"); err != nil {
		t.Fatal(err)
	}
	if ps, err := b.UnsentClears(ctx, time.Now().Add(-time.Minute), 10); err != nil || len(ps) != 0 {
		t.Fatalf("clears recorded just now are not lost yet: %+v %v", ps, err)
	}
	var (
		mu    sync.Mutex
		taken []callstate.WakePush
		wg    sync.WaitGroup
	)
	for _, st := range []*store.Store{a, b, a, b} {
		wg.Go(func() {
			ps, err := st.UnsentClears(ctx, time.Now().Add(time.Minute), 10)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			taken = append(taken, ps...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(taken) != 1 || taken[0].Message.Journey != "lost" || taken[0].Message.Kind != callstate.WakeClear ||
		taken[0].Message.Call != "lost-leg" || taken[0].Message.Reason != callstate.ClearAnswered || len(taken[0].UserIDs) != 1 {
		t.Fatalf("taken to send again: %+v, want the clear of lost once", taken)
	}
}
