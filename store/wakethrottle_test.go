package store_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

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
