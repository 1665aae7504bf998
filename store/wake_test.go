package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

func wakeDevice(id, user, ext string) callstate.Device {
	d := callstate.Device{ID: id, UserID: user, Extension: ext}
	d.Subscription.Endpoint = "https://push.example.net/" + id
	d.Subscription.Keys.P256dh, d.Subscription.Keys.Auth = "p256dh-"+id, "auth-"+id
	return d
}

func hash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// TestWakeVAPIDKeyOnce: instances asking at once for the key on a fresh
// database all get the same one, made once.
func TestWakeVAPIDKeyOnce(t *testing.T) {
	st := openStore(t)
	<-st.Ready()
	var made sync.Map
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := st.WakeVAPIDKey(context.Background(), func() ([]byte, error) {
				b := []byte(fmt.Sprintf("key-%d", i))
				made.Store(i, b)
				return b, nil
			})
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i := range keys {
		if !bytes.Equal(keys[i], keys[0]) || len(keys[0]) == 0 {
			t.Fatalf("instance %d got %q, instance 0 %q", i, keys[i], keys[0])
		}
	}
	if again, _ := st.WakeVAPIDKey(context.Background(), func() ([]byte, error) { return nil, errors.New("asked to make another") }); !bytes.Equal(again, keys[0]) {
		t.Errorf("later: %q", again)
	}
}

// TestWakeEnrollmentOnce: an enrollment token registers one device, for
// its own user, once, even when two use it at once; an expired one none.
func TestWakeEnrollmentOnce(t *testing.T) {
	st := openStore(t)
	<-st.Ready()
	ctx := context.Background()
	if err := st.AddEnrollment(ctx, hash("enroll_a"), "w0", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.AddEnrollment(ctx, hash("enroll_old"), "w0", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddDevice(ctx, wakeDevice("x1", "w1", ""), hash("s"), hash("enroll_a")); !errors.Is(err, callstate.ErrOtherUser) {
		t.Errorf("for another user: %v", err)
	}
	if _, err := st.AddDevice(ctx, wakeDevice("x2", "", "101"), hash("s"), hash("enroll_a")); !errors.Is(err, callstate.ErrOtherUser) {
		t.Errorf("for an extension: %v", err)
	}
	if _, err := st.AddDevice(ctx, wakeDevice("x3", "w0", ""), hash("s"), hash("enroll_old")); !errors.Is(err, callstate.ErrEnrollment) {
		t.Errorf("expired: %v", err)
	}
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = st.AddDevice(ctx, wakeDevice(fmt.Sprintf("d%d", i), "w0", ""), hash("s"), hash("enroll_a"))
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, callstate.ErrEnrollment):
			t.Errorf("AddDevice: %v", err)
		}
	}
	ds, err := st.Devices(ctx)
	if ok != 1 || err != nil || len(ds) != 1 || ds[0].UserID != "w0" {
		t.Errorf("%d registrations took, devices %+v (%v); want one", ok, ds, err)
	}
}

// TestWakeOncePerJourney: of legs and instances asking at once, one claims
// the journey's push; a ready is taken only from a device the call was
// pushed to; the feed clears the journey once.
func TestWakeOncePerJourney(t *testing.T) {
	st := openStore(t)
	<-st.Ready()
	ctx := context.Background()
	for _, d := range []callstate.Device{wakeDevice("a", "w0", ""), wakeDevice("b", "w1", ""), wakeDevice("e", "", "101")} {
		if _, err := st.AddDevice(ctx, d, hash(d.ID), nil); err != nil {
			t.Fatal(err)
		}
	}
	targets, err := st.WakeTargets(ctx)
	if err != nil || !targets.HasUser("w0") || !targets.HasUser("w1") || !targets.HasExtension("101") || targets.HasUser("w2") {
		t.Fatalf("targets %+v %v", targets, err)
	}
	claims := make([]bool, 6)
	var wg sync.WaitGroup
	for i := range claims {
		wg.Go(func() {
			claims[i], _ = st.ClaimWakePush(ctx, "j1", fmt.Sprintf("leg%d", i), []string{"w0"}, "")
		})
	}
	wg.Wait()
	first := -1
	for i, c := range claims {
		if c && first >= 0 {
			t.Fatalf("legs %d and %d both claimed the journey", first, i)
		}
		if c {
			first = i
		}
	}
	if first < 0 {
		t.Fatal("no leg claimed the journey")
	}
	call := fmt.Sprintf("leg%d", first)
	if err := st.WakeReady(ctx, "b", call); !errors.Is(err, callstate.ErrNotFound) {
		t.Errorf("ready of a device of another user: %v", err)
	}
	if err := st.WakeReady(ctx, "a", "other"); !errors.Is(err, callstate.ErrNotFound) {
		t.Errorf("ready for a call not pushed: %v", err)
	}
	for range 2 { // a ready sent twice is taken twice
		if err := st.WakeReady(ctx, "a", call); err != nil {
			t.Fatal(err)
		}
	}
	if ids, err := st.ReadyCalls(ctx, []string{call, "other"}); err != nil || len(ids) != 1 || ids[0] != call {
		t.Errorf("ready calls %v %v", ids, err)
	}

	// The call's answer and hangup: one clear, when answered.
	evs := []callstate.Event{
		{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: "n", ReceivedAt: t0, Payload: []byte("n"),
			Update: callstate.Update{Key: call, CallID: call, OrigCallID: "j1", Direction: callstate.DirectionIn, From: "4917", To: "4930",
				UserIDs: []string{"w0"}, State: callstate.StateRinging}},
		{Source: callstate.SourceSipgate, Type: "answer", DedupKey: "a", ReceivedAt: t0.Add(time.Second), Payload: []byte("a"),
			Update: callstate.Update{Key: call, CallID: call, State: callstate.StateAnswered, AnsweredBy: "Alice", Answering: "4930"}},
		{Source: callstate.SourceSipgate, Type: "hangup", DedupKey: "h", ReceivedAt: t0.Add(2 * time.Second), Payload: []byte("h"),
			Update: callstate.Update{Key: call, CallID: call, State: callstate.StateEnded, Cause: "normalClearing"}},
	}
	for _, ev := range evs {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SyncFeed(ctx); err != nil {
		t.Fatal(err)
	}
	var pushes []callstate.WakePush
	for range 3 { // later reads find nothing more
		ps, _, err := st.WakeFeed(ctx, targets)
		if err != nil {
			t.Fatal(err)
		}
		pushes = append(pushes, ps...)
	}
	if len(pushes) != 1 || pushes[0].Message.Kind != callstate.WakeClear || pushes[0].Message.Reason != callstate.ClearAnswered ||
		pushes[0].Message.Journey != "j1" || pushes[0].Message.Call != call || len(pushes[0].UserIDs) != 1 {
		t.Errorf("pushes %+v, want the one clear of j1, answered", pushes)
	}
	if n, err := st.ForgetWake(ctx, time.Now().Add(time.Hour)); err != nil || n < 2 {
		t.Errorf("ForgetWake: %d %v", n, err)
	}
	if _, err := st.DeviceSecretHash(ctx, "nope"); !errors.Is(err, callstate.ErrNotFound) {
		t.Errorf("secret of no device: %v", err)
	}
	if err := st.DeleteDevice(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteDevice(ctx, "a"); !errors.Is(err, callstate.ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
}

// TestWakeFeedReadsWhatCanPush: the wake-up's read of the feed finds the
// clears of pushed journeys and a PBX extension's early dialog, and moves
// past everything else: calls of journeys not pushed, before and after
// their push (a push recorded after a clear is not cleared by it), and the
// PBX's dialogs when no extension, or another one, has devices.
func TestWakeFeedReadsWhatCanPush(t *testing.T) {
	st := openStore(t)
	<-st.Ready()
	ctx := context.Background()
	apply := func(evs ...callstate.Event) {
		t.Helper()
		for _, ev := range evs {
			if _, err := st.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.SyncFeed(ctx); err != nil {
			t.Fatal(err)
		}
	}
	read := func(targets *callstate.WakeTargets) []callstate.WakePush {
		t.Helper()
		var pushes []callstate.WakePush
		for range 2 { // a second read finds nothing more
			ps, more, err := st.WakeFeed(ctx, targets)
			if err != nil || more {
				t.Fatalf("WakeFeed: more %v, %v", more, err)
			}
			pushes = append(pushes, ps...)
		}
		return pushes
	}
	sipgate := func(key string) []callstate.Event {
		evs := callEvents(key)
		for i := range evs {
			evs[i].DedupKey = key + "/" + evs[i].Type
		}
		return evs
	}
	dialog := func(ext, id string, state callstate.State, sec int) callstate.Event {
		return callstate.Event{Source: callstate.SourceSIP, Type: "dialog", DedupKey: ext + "|" + id + "|" + state.String(),
			ReceivedAt: t0.Add(time.Duration(sec) * time.Second), Payload: []byte("<dialog/>"),
			Update: callstate.Update{Key: ext + "|" + id, CallID: id, Extension: ext, State: state,
				Direction: callstate.DirectionIn, From: "4915112345678", To: ext}}
	}
	none := &callstate.WakeTargets{Users: map[string]struct{}{"w0": {}}, Extensions: map[string]struct{}{}}
	ext101 := &callstate.WakeTargets{Users: map[string]struct{}{}, Extensions: map[string]struct{}{"101": {}}}

	// No push waits and no extension has devices: nothing to push, the
	// PBX's early dialog included.
	apply(append(sipgate("c1"), dialog("101", "d1", callstate.StateRinging, 1))...)
	if ps := read(none); len(ps) != 0 {
		t.Errorf("nothing pushed yet: pushes %+v", ps)
	}
	// A push recorded after its journey's clears were read is not cleared
	// by them; the next journey's push is, once, by its answer.
	for _, j := range []string{"c1", "c2"} {
		if ok, err := st.ClaimWakePush(ctx, j, j, []string{"w0"}, ""); err != nil || !ok {
			t.Fatalf("claim %s: %v %v", j, ok, err)
		}
	}
	apply(append(sipgate("c2"), sipgate("c3")...)...)
	ps := read(none)
	if len(ps) != 1 || ps[0].Message.Kind != callstate.WakeClear || ps[0].Message.Journey != "c2" ||
		ps[0].Message.Reason != callstate.ClearAnswered {
		t.Errorf("pushes %+v, want c2's clear, answered", ps)
	}
	// An extension with devices: its early dialog is pushed and cleared in
	// one read; another extension's dialog is not pushed.
	apply(dialog("101", "d2", callstate.StateRinging, 3), dialog("102", "d3", callstate.StateRinging, 3),
		dialog("101", "d2", callstate.StateEnded, 4))
	ps = read(ext101)
	if len(ps) != 2 || ps[0].Message.Kind != callstate.WakeIncoming || ps[0].Message.Call != "d2" || ps[0].Extension != "101" ||
		ps[1].Message.Kind != callstate.WakeClear || ps[1].Message.Journey != ps[0].Message.Journey ||
		ps[1].Message.Reason != callstate.ClearEnded {
		t.Errorf("pushes %+v, want d2's incoming and its clear, ended", ps)
	}
}
