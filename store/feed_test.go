package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// syncFeed waits until everything written so far is in the feed, numbered.
func syncFeed(tb testing.TB, sts ...*store.Store) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, st := range sts {
		if err := st.SyncFeed(ctx); err != nil {
			tb.Fatal(err)
		}
	}
}

// readFeed returns the whole feed after id after.
func readFeed(tb testing.TB, st *store.Store, after int64) []callstate.FeedEvent {
	tb.Helper()
	var all []callstate.FeedEvent
	for {
		evs, err := st.Feed(context.Background(), after, 1000)
		if err != nil {
			tb.Fatal(err)
		}
		all = append(all, evs...)
		if len(evs) < 1000 {
			return all
		}
		after = evs[len(evs)-1].ID
	}
}

// typesOf returns the types of the events about the call or journey id,
// in feed order, without call.updated.
func typesOf(evs []callstate.FeedEvent, id string) []string {
	var out []string
	for _, e := range evs {
		if e.JourneyID == id && e.Type != callstate.EventOther {
			out = append(out, e.Type)
		}
	}
	return out
}

// TestFeedOncePerTransition applies a call's events in every order, each
// twice and by two instances at once, and finds each transition in the
// feed exactly once (and no call.missed, whatever the order), in a call's order of transitions where the order of
// arrival allows it, with ids in increasing order.
func TestFeedOncePerTransition(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	want := []string{callstate.EventRinging, callstate.EventAnswered, callstate.EventDTMF, callstate.EventEnded, callstate.EventJourneyEnded}
	for i, order := range permutations(4) {
		key := fmt.Sprintf("perm%d", i)
		evs := callEvents(key)
		var wg sync.WaitGroup
		for _, st := range []*store.Store{a, b} {
			wg.Go(func() {
				for _, j := range order {
					for range 2 {
						if _, err := st.Apply(ctx, evs[j]); err != nil {
							t.Error(err)
						}
					}
				}
			})
		}
		wg.Wait()
	}
	syncFeed(t, a, b)
	feed := readFeed(t, a, 0)
	for i := range feed[1:] {
		if feed[i+1].ID <= feed[i].ID {
			t.Fatalf("ids out of order: %d after %d", feed[i+1].ID, feed[i].ID)
		}
	}
	for i, order := range permutations(4) {
		key := fmt.Sprintf("perm%d", i)
		got := typesOf(feed, key)
		// Also when the hang-up came before the answer: the journey is
		// held, not told missed (migration 029).
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		w := slices.Clone(want)
		slices.Sort(w)
		if !slices.Equal(sorted, w) {
			t.Errorf("order %v: events %v, want each of %v once", order, got, want)
		}
		if order[0] == 0 && got[0] != callstate.EventRinging {
			t.Errorf("order %v: first event %s", order, got[0])
		}
	}
	// The call events carry the call as the transition left it; the
	// journey event the journey. Checked on the call whose events came in
	// their own order: where the hang-up comes before the answer (perm0
	// is 3 2 1 0), the journey may end missed before the answer is known,
	// and journey.ended, once per transition, tells that.
	inOrder := slices.IndexFunc(permutations(4), func(o []int) bool { return slices.IsSorted(o) })
	key := fmt.Sprintf("perm%d", inOrder)
	for _, e := range feed {
		if e.JourneyID != key {
			continue
		}
		switch e.Type {
		case callstate.EventEnded:
			if e.Call == nil || e.Call.State != callstate.StateEnded || e.Call.Key != key || e.Seq == 0 || e.At != t0.Add(9*time.Second) {
				t.Errorf("call.ended %+v call %+v", e, e.Call)
			}
		case callstate.EventDTMF:
			if e.Press == nil || e.Press.Digits != "42" || e.At != t0.Add(5*time.Second) {
				t.Errorf("call.dtmf %+v press %+v", e, e.Press)
			}
		case callstate.EventJourneyEnded:
			if e.Journey == nil || e.Journey.Outcome != callstate.OutcomeAnswered || e.Journey.AnsweredBy != "Bob" {
				t.Errorf("journey.ended %+v journey %+v", e, e.Journey)
			}
		}
	}
}

// TestFeedMissedAndLamps: a call nobody answers gives call.missed once,
// and the lamps of the user it rang change twice.
func TestFeedMissedAndLamps(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	syncFeed(t, st)
	start := readFeed(t, st, 0)
	var from int64
	if len(start) > 0 {
		from = start[len(start)-1].ID
	}
	n := sg("m1", "newCall", 0, callstate.Update{Direction: "in", From: "4917", To: "4930",
		UserIDs: []string{"u9"}, Users: []string{"Uma"}, Extension: "u9", State: callstate.StateRinging})
	h := sg("m1", "hangup", 20, callstate.Update{Cause: "cancel", State: callstate.StateEnded})
	for _, ev := range []callstate.Event{n} {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	syncFeed(t, st)
	for _, ev := range []callstate.Event{h, n, h} {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	syncFeed(t, st)
	feed := readFeed(t, st, from)
	got := typesOf(feed, "m1")
	want := []string{callstate.EventRinging, callstate.EventEnded, callstate.EventJourneyEnded, callstate.EventMissed}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	var lamps []string
	for _, e := range feed {
		if e.Type == callstate.EventLampChanged && e.Lamp.Extension == "u9" {
			lamps = append(lamps, e.Previous+">"+e.Lamp.Lamp)
		}
	}
	if !slices.Equal(lamps, []string{">ringing", "ringing>idle"}) {
		t.Errorf("lamp changes %v", lamps)
	}
	// Nothing changed: comparing again writes nothing.
	if n, err := st.FeedLamps(ctx); err != nil || n != 0 {
		t.Errorf("lamps again: %d %v", n, err)
	}
}

// TestFeedCommitOrder: an event whose transaction commits late gets an id
// after every event numbered meanwhile, so a reader that read on from the
// last id it saw gets it.
func TestFeedCommitOrder(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // test
	// The slow transaction writes its call first.
	if _, err := tx.Exec(ctx, `
INSERT INTO call_state (source, call_key, call_id, state, started_at, updated_at, last_event_id)
VALUES ('sipgate', 'slow', 'slow', 'ringing', now(), now(), 0)`); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := st.Apply(ctx, sg(fmt.Sprintf("fast%d", i), "newCall", 0, callstate.Update{State: callstate.StateRinging})); err != nil {
			t.Fatal(err)
		}
	}
	syncFeed(t, st)
	seen := readFeed(t, st, 0)
	if len(typesOf(seen, "slow")) != 0 || len(typesOf(seen, "fast4")) == 0 {
		t.Fatalf("before the commit: %v", seen)
	}
	last := seen[len(seen)-1].ID
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	syncFeed(t, st)
	after := readFeed(t, st, last)
	if got := typesOf(after, "slow"); !slices.Equal(got, []string{callstate.EventRinging}) {
		t.Fatalf("read on from %d: %v", last, got)
	}
}

// TestFeedConcurrentCalls: many calls' events, shuffled and repeated, by
// four writers on two instances, give each transition once.
func TestFeedConcurrentCalls(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	var evs []callstate.Event
	for i := range 100 {
		evs = append(evs, callEvents(fmt.Sprintf("c%d", i))...)
	}
	evs = append(evs, evs...)
	rand.Shuffle(len(evs), func(x, y int) { evs[x], evs[y] = evs[y], evs[x] })
	var wg sync.WaitGroup
	for w := range 4 {
		st := []*store.Store{a, b}[w%2]
		wg.Go(func() {
			for i := w; i < len(evs); i += 4 {
				if _, err := st.Apply(ctx, evs[i]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	syncFeed(t, a, b)
	counts := map[string]int{}
	for _, e := range readFeed(t, b, 0) {
		if e.Type != callstate.EventOther && strings.HasPrefix(e.JourneyID, "c") {
			counts[e.Type]++
		}
	}
	for _, typ := range []string{callstate.EventRinging, callstate.EventAnswered, callstate.EventDTMF, callstate.EventEnded, callstate.EventJourneyEnded} {
		if counts[typ] != 100 {
			t.Errorf("%s: %d events for 100 calls", typ, counts[typ])
		}
	}
}

// TestFeedRetentionAndForget: ForgetFeed deletes old events and moves the
// window's floor past them; ForgetNumber erases a number's calls from the
// feed.
func TestFeedRetentionAndForget(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	for _, ev := range callEvents("keep") {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	other := sg("other", "newCall", 0, callstate.Update{Direction: "in", From: "4915550", To: "4930", State: callstate.StateRinging})
	if _, err := st.Apply(ctx, other); err != nil {
		t.Fatal(err)
	}
	syncFeed(t, st)
	if _, _, err := st.ForgetNumber(ctx, "4915550"); err != nil {
		t.Fatal(err)
	}
	syncFeed(t, st)
	feed := readFeed(t, st, 0)
	if len(typesOf(feed, "other")) != 0 || len(typesOf(feed, "keep")) == 0 {
		t.Fatalf("after forget: other %v keep %v", typesOf(feed, "other"), typesOf(feed, "keep"))
	}
	w, err := st.FeedWindow(ctx)
	if err != nil || w.Floor != 0 || w.Head < feed[len(feed)-1].ID || !w.Covers(0) {
		t.Fatalf("window %+v %v", w, err)
	}
	n, err := st.ForgetFeed(ctx, time.Now().Add(time.Minute))
	if err != nil || n != int64(len(feed)) {
		t.Fatalf("forgot %d of %d: %v", n, len(feed), err)
	}
	w, err = st.FeedWindow(ctx)
	if err != nil || w.Floor != feed[len(feed)-1].ID || w.Covers(0) || !w.Covers(w.Head) {
		t.Fatalf("window after %+v %v", w, err)
	}
}

// TestFeedJourneyRule: a journey's events in the feed carry the rule that
// routed its first leg, as GET /api/journeys does.
func TestFeedJourneyRule(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	for _, ev := range []callstate.Event{
		sg("fr1", "newCall", 0, callstate.Update{Direction: "in", From: "49170", To: "4930", State: callstate.StateRinging, Rule: "vip to owner"}),
		sg("fr1", "hangup", 5, callstate.Update{Cause: "cancel", State: callstate.StateEnded}),
		sg("fr2", "newCall", 0, callstate.Update{Direction: "in", From: "49171", To: "4930", State: callstate.StateRinging}),
		sg("fr2", "hangup", 5, callstate.Update{Cause: "cancel", State: callstate.StateEnded}),
	} {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	syncJourneys(t, st)
	syncFeed(t, st)
	seen := map[string]bool{}
	for _, e := range readFeed(t, st, 0) {
		if e.Journey == nil {
			continue
		}
		want := map[string]string{"fr1": "vip to owner", "fr2": ""}[e.JourneyID]
		if e.Journey.Rule != want {
			t.Errorf("%s %s: rule %q, want %q", e.Type, e.JourneyID, e.Journey.Rule, want)
		}
		seen[e.JourneyID] = true
	}
	if !seen["fr1"] || !seen["fr2"] {
		t.Fatalf("journey events of %v, want both journeys", seen)
	}
}

// TestJourneyHangupBeforeAnswer delivers an answered call's answer and
// hang-up through the store in both orders, the second a moment after the
// first, with the journey refresher running in between. The journey ends
// answered in both, and the feed tells journey.ended once and never
// call.missed; a call nobody answers still ends missed, once the grace has
// passed.
func TestJourneyHangupBeforeAnswer(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	syncFeed(t, st)
	from := int64(0)
	if w, err := st.FeedWindow(ctx); err == nil {
		from = w.Head
	}
	for _, tc := range []struct {
		name  string
		order []string
	}{
		{"AnswerFirst", []string{"answer", "hangup"}},
		{"HangupFirst", []string{"hangup", "answer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "hba-" + tc.name
			evs := map[string]callstate.Event{}
			for _, ev := range callEvents(key) {
				evs[ev.Type] = ev
			}
			if _, err := st.Apply(ctx, evs["newCall"]); err != nil {
				t.Fatal(err)
			}
			syncFeed(t, st)
			for i, typ := range tc.order {
				if _, err := st.Apply(ctx, evs[typ]); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					// The refresher takes the first event's call (it
					// gathers for 20 ms once woken) before the second
					// event commits.
					time.Sleep(300 * time.Millisecond)
				}
			}
			syncFeed(t, st)
			got := typesOf(readFeed(t, st, from), key)
			want := []string{callstate.EventRinging, callstate.EventAnswered, callstate.EventEnded, callstate.EventJourneyEnded}
			if tc.name == "HangupFirst" {
				want = []string{callstate.EventRinging, callstate.EventEnded, callstate.EventAnswered, callstate.EventJourneyEnded}
			}
			if !slices.Equal(got, want) {
				t.Errorf("events %v, want %v", got, want)
			}
			for _, e := range readFeed(t, st, from) {
				if e.JourneyID == key && e.Type == callstate.EventJourneyEnded &&
					(e.Journey == nil || e.Journey.Outcome != callstate.OutcomeAnswered) {
					t.Errorf("journey.ended %+v", e.Journey)
				}
			}
		})
	}
	t.Run("Missed", func(t *testing.T) {
		key := "hba-missed"
		n := sg(key, "newCall", 0, callstate.Update{Direction: "in", From: "4917", To: "4930", State: callstate.StateRinging})
		h := sg(key, "hangup", 20, callstate.Update{Cause: "cancel", State: callstate.StateEnded})
		for _, ev := range []callstate.Event{n, h} {
			if _, err := st.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		syncFeed(t, st)
		got := typesOf(readFeed(t, st, from), key)
		want := []string{callstate.EventRinging, callstate.EventEnded, callstate.EventJourneyEnded, callstate.EventMissed}
		if !slices.Equal(got, want) {
			t.Errorf("events %v, want %v", got, want)
		}
		if d := time.Since(start); d < 500*time.Millisecond {
			t.Errorf("missed after %v: the journey was not held for the grace", d)
		}
	})
}

// TestFeedReadsAsTheView: Feed, which reads the feed's rows and their
// calls and journeys apart, gives every event as the call_feed_event view
// that SQL readers use tells it: calls with their presses and holds,
// journeys answered and missed, lamps; and so after a call's and a
// journey's rows are gone.
func TestFeedReadsAsTheView(t *testing.T) {
	ctx := context.Background()
	st := openURL(t, storetest.NewDatabase(t))
	var evs []callstate.Event
	evs = append(evs, callEvents("answered")...)
	evs = append(evs, callEvents("missed")[0], callEvents("missed")[3])
	held := true
	sip := func(sec int, u callstate.Update) callstate.Event {
		u.Key, u.CallID, u.Extension, u.Direction, u.From, u.To = "held", "held", "101", callstate.DirectionIn, "4917", "101"
		return callstate.Event{Source: callstate.SourceSIP, Type: "dialog", DedupKey: fmt.Sprintf("held/%d", sec),
			ReceivedAt: t0.Add(time.Duration(sec) * time.Second), Payload: []byte("<dialog/>"), Update: u}
	}
	evs = append(evs, sip(0, callstate.Update{State: callstate.StateRinging}),
		sip(1, callstate.Update{State: callstate.StateAnswered}),
		sip(2, callstate.Update{State: callstate.StateAnswered, OnHold: &held}),
		sip(3, callstate.Update{State: callstate.StateAnswered, DTMF: "7"}))
	for _, ev := range evs {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	syncFeed(t, st)
	compare := func(when string) {
		t.Helper()
		want, err := st.ViewFeedForTest(ctx, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		got := readFeed(t, st, 0)
		kinds := map[string]bool{}
		for _, e := range want {
			kinds[e.Type] = true
		}
		for _, k := range []string{callstate.EventRinging, callstate.EventAnswered, callstate.EventHeld, callstate.EventDTMF,
			callstate.EventEnded, callstate.EventMissed, callstate.EventJourneyEnded, callstate.EventLampChanged} {
			if !kinds[k] {
				t.Fatalf("%s: the feed has no %s to compare: %v", when, k, kinds)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%s: Feed gives %d events, the view %d", when, len(got), len(want))
		}
		for i := range want {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("%s: event %d %s:\nFeed %s\nview %s", when, want[i].ID, want[i].Type, dump(got[i]), dump(want[i]))
			}
		}
	}
	compare("as written")
	for _, q := range []string{`DELETE FROM call_state WHERE call_key = 'answered'`, `DELETE FROM journey WHERE journey_id = 'missed'`} {
		if n, err := st.ExecForTest(ctx, q); err != nil || n != 1 {
			t.Fatalf("%s: %d rows, %v", q, n, err)
		}
	}
	compare("after a call's and a journey's rows were deleted")
}

// dump shows an event with what its pointers point to.
func dump(e callstate.FeedEvent) string {
	b, _ := json.Marshal(e)
	return string(b)
}

// BenchmarkFeedRead reads 1,000 events of the feed (the calls of 250
// sipgate calls: ringing, answered, dtmf, ended), as the stream, the
// agent and the webhooks do, against the call_feed_event view that builds
// each call as JSON in the query:
//
//	go test ./store -run '^$' -bench FeedRead
func BenchmarkFeedRead(b *testing.B) {
	ctx := context.Background()
	st := openURL(b, storetest.NewDatabase(b))
	for i := range 250 {
		for _, ev := range callEvents(fmt.Sprintf("c%d", i)) {
			if _, err := st.Apply(ctx, ev); err != nil {
				b.Fatal(err)
			}
		}
	}
	syncFeed(b, st)
	if _, err := st.ExecForTest(ctx, `ANALYZE`); err != nil {
		b.Fatal(err)
	}
	for _, r := range []struct {
		name string
		read func() ([]callstate.FeedEvent, error)
	}{
		{"Feed", func() ([]callstate.FeedEvent, error) { return st.Feed(ctx, 0, 1000) }},
		{"View", func() ([]callstate.FeedEvent, error) { return st.ViewFeedForTest(ctx, 0, 1000) }},
	} {
		b.Run(r.name, func(b *testing.B) {
			for b.Loop() {
				evs, err := r.read()
				if err != nil || len(evs) != 1000 {
					b.Fatalf("%d events, %v", len(evs), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "µs/event")
		})
	}
}

// TestFeedReadsByIndexDeep: with a feed of a week's busy days (500,000
// events, 200,000 calls and journeys, analysed), the generic plans of the statements that read the
// feed, the ones prepared statements settle on, find the rows by the ids'
// index and the calls and journeys by theirs: a read at the feed's head
// costs the same as on an empty feed.
func TestFeedReadsByIndexDeep(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a feed of 500,000 events")
	}
	ctx := context.Background()
	st := openURL(t, storetest.NewDatabase(t))
	for _, ev := range callEvents("real") {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	syncFeed(t, st)
	for _, q := range []string{
		`INSERT INTO call_feed (seq, type, at, journey_id, source, call_key, call_id, state, on_hold, change_seq, updated_at)
		 OVERRIDING SYSTEM VALUE
		 SELECT 1000000000 + g, 'call.updated', now(), 'real', 'sipgate', 'real', (SELECT min(id) FROM call_state), 'ended', false, 1, now()
		 FROM generate_series(1, 500000) g`,
		`INSERT INTO call_feed_id (id, seq) SELECT 1000 + g, 1000000000 + g FROM generate_series(1, 500000) g`,
		`UPDATE call_feed_head SET head = 501000`,
		// The calls and journeys of those days, without their triggers.
		`ALTER TABLE call_state DISABLE TRIGGER USER`,
		`INSERT INTO call_state (id, source, call_key, state, updated_at, last_event_id)
		 OVERRIDING SYSTEM VALUE
		 SELECT 1000000000 + g, 'sipgate', 'old' || g, 'ended', now(), 1 FROM generate_series(1, 200000) g`,
		`ALTER TABLE call_state ENABLE TRIGGER USER`,
		`ALTER TABLE journey DISABLE TRIGGER USER`,
		`INSERT INTO journey (journey_id, source, direction, from_party, to_party, outcome, answered_by,
		                      answered_user_id, user_ids, legs, hangup_cause, updated_at)
		 SELECT 'old' || g, 'sipgate', 'in', '', '', 'answered', '', '', '{}', 1, '', now() FROM generate_series(1, 200000) g`,
		`ALTER TABLE journey ENABLE TRIGGER USER`,
		`ANALYZE`,
	} {
		if _, err := st.ExecForTest(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	plans, err := st.FeedPlansForTest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans {
		for _, table := range []string{"call_feed ", "call_feed_id ", "call_state ", "journey "} {
			if strings.Contains(p, "Seq Scan on "+table) {
				t.Errorf("a read of the feed scans %s:\n%s", table, p)
			}
		}
	}
	if evs, err := st.Feed(ctx, 500000, 1000); err != nil || len(evs) != 1000 {
		t.Fatalf("read deep: %d events, %v", len(evs), err)
	}
}
