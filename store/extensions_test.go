package store_test

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
)

func TestExtensions(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	if err := st.AddExtensions(ctx, []string{"101", "100"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddExtensions(ctx, []string{"100", "bad@x"}); !errors.Is(err, store.ErrBadExtension) {
		t.Errorf("bad name: %v, want ErrBadExtension", err)
	}
	if err := st.SetExtensionEnabled(ctx, "101", false); err != nil {
		t.Fatal(err)
	}
	if err := st.AddExtensions(ctx, []string{"101"}); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Extensions(ctx); err != nil || !slices.Equal(got, []string{"100"}) {
		t.Errorf("Extensions = %v, %v; want [100] (101 stays disabled)", got, err)
	}
	if err := st.SetExtensionEnabled(ctx, "999", true); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown extension: %v, want ErrNotFound", err)
	}
	if err := st.SetSubscription(ctx, "100", "bogus", ""); !errors.Is(err, callstate.ErrInvalidEvent) {
		t.Errorf("bad state: %v, want ErrInvalidEvent", err)
	}

	lamp := func() string {
		t.Helper()
		ls, err := st.Lamps(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ls[0].Lamp
	}
	if got := lamp(); got != "unavailable" {
		t.Errorf("pending subscription: lamp %s, want unavailable", got)
	}
	if err := st.SetSubscription(ctx, "100", callstate.SubscriptionActive, ""); err != nil {
		t.Fatal(err)
	}
	if got := lamp(); got != "idle" {
		t.Errorf("active, no calls: lamp %s, want idle", got)
	}
	ev := callstate.Event{Source: callstate.SourceSIP, Type: "dialog", DedupKey: "100/d1/1", ReceivedAt: t0, Payload: []byte("<x/>"),
		Update: callstate.Update{Key: "100/d1", Extension: "100", State: callstate.StateAnswered, OnHold: ptr(true)}}
	if _, err := st.Apply(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if got := lamp(); got != "hold" {
		t.Errorf("held call: lamp %s, want hold", got)
	}
	active, err := st.ActiveCalls(ctx, callstate.SourceSIP, "100")
	if err != nil || len(active) != 1 || active[0].Key != "100/d1" {
		t.Errorf("ActiveCalls = %+v, %v", active, err)
	}
	if err := st.SetPresence(ctx, "100", "busy", "On the phone"); err != nil {
		t.Fatal(err)
	}
	ls, _ := st.Lamps(ctx)
	if ls[0].Presence != "busy" || ls[0].PresenceNote != "On the phone" || ls[0].ActiveCalls != 1 {
		t.Errorf("lamp row %+v", ls[0])
	}
}

func TestSetSubscriptionsAs(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	if err := st.AddExtensions(ctx, []string{"100", "101", "102"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimExtensions(ctx, "a", time.Minute); err != nil {
		t.Fatal(err)
	}
	states := func() map[string]string {
		t.Helper()
		ls, err := st.Lamps(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[string]string)
		for _, l := range ls {
			m[l.Extension] = l.Subscription + "/" + l.Reason + "/" + l.Presence
		}
		return m
	}

	t.Run("OK", func(t *testing.T) {
		err := st.SetSubscriptionsAs(ctx, "a", []string{"100", "101", "999"},
			[]string{callstate.SubscriptionActive, callstate.SubscriptionRetrying, callstate.SubscriptionActive}, []string{"", "503", ""})
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SetPresencesAs(ctx, "a", []string{"100"}, []string{"busy"}, []string{"On the phone"}); err != nil {
			t.Fatal(err)
		}
		got := states()
		want := map[string]string{"100": "active//busy", "101": "retrying/503/", "102": "pending//"}
		if !maps.Equal(got, want) {
			t.Errorf("states %v, want %v", got, want)
		}
	})
	t.Run("OtherOwnerUntouched", func(t *testing.T) {
		if err := st.SetSubscriptionsAs(ctx, "b", []string{"100", "102"}, []string{"terminated", "terminated"}, []string{"", ""}); err != nil {
			t.Fatal(err)
		}
		if err := st.SetPresencesAs(ctx, "b", []string{"100"}, []string{"idle"}, []string{""}); err != nil {
			t.Fatal(err)
		}
		if got := states(); got["100"] != "active//busy" || got["102"] != "pending//" {
			t.Errorf("instance b wrote over a's: %v", got)
		}
	})
	t.Run("ErrInvalidEvent", func(t *testing.T) {
		err := st.SetSubscriptionsAs(ctx, "a", []string{"100", "101"}, []string{"bogus", callstate.SubscriptionActive}, []string{"", ""})
		if !errors.Is(err, callstate.ErrInvalidEvent) {
			t.Errorf("bad state: %v, want ErrInvalidEvent", err)
		}
		if got := states(); got["101"] != "retrying/503/" {
			t.Errorf("a refused batch wrote %v", got)
		}
		if err := st.SetSubscriptionsAs(ctx, "a", []string{"100"}, nil, nil); !errors.Is(err, callstate.ErrInvalidEvent) {
			t.Errorf("slices of different lengths: %v, want ErrInvalidEvent", err)
		}
	})
}
