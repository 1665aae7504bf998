package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// sg builds a sipgate event of call id received sec seconds after t0.
func sg(id, typ string, sec float64, u callstate.Update) callstate.Event {
	u.Key, u.CallID = id, id
	at := t0.Add(time.Duration(sec * float64(time.Second)))
	return callstate.Event{Source: callstate.SourceSipgate, Type: typ,
		DedupKey: fmt.Sprintf("%s/%s/%v", id, typ, sec), ReceivedAt: at, Payload: []byte("event=" + typ), Update: u}
}

// syncJourneys waits until the journeys of every call written so far are
// computed again.
func syncJourneys(tb testing.TB, st *store.Store) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.SyncJourneys(ctx); err != nil {
		tb.Fatal(err)
	}
}

type journeyRow struct {
	Outcome, Direction, From, To, AnsweredBy string
	Wait, Talk                               *float64
	Users                                    []string
	Legs                                     int
}

func readJourney(tb testing.TB, st *store.Store, pool *pgxpool.Pool, id string) journeyRow {
	tb.Helper()
	syncJourneys(tb, st)
	var r journeyRow
	err := pool.QueryRow(context.Background(), `
		SELECT outcome, direction, from_party, to_party, answered_by, wait_seconds, talk_seconds, user_ids, legs
		FROM call_journey WHERE journey_id = $1`, id).
		Scan(&r.Outcome, &r.Direction, &r.From, &r.To, &r.AnsweredBy, &r.Wait, &r.Talk, &r.Users, &r.Legs)
	if err != nil {
		tb.Fatalf("journey %s: %v", id, err)
	}
	return r
}

// TestJourneyVoicemailForward is sipgate.io issue 134's sequence: the
// first leg rings, ends "forwarded", and a voicemail leg with the first
// leg's origCallId answers. In every order, it is one journey, voicemail.
func TestJourneyVoicemailForward(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for i := range 6 {
		a, b := fmt.Sprintf("A%d", i), fmt.Sprintf("B%d", i)
		evs := []callstate.Event{
			sg(a, "newCall", 0, callstate.Update{OrigCallID: a, Direction: "in", From: "49178", To: "49203",
				Users: []string{"Oliver"}, UserIDs: []string{"w1"}, Extension: "w1", State: callstate.StateRinging}),
			sg(a, "hangup", 21.5, callstate.Update{OrigCallID: a, Direction: "in", From: "49178", To: "49203",
				Cause: "forwarded", State: callstate.StateEnded}),
			sg(b, "newCall", 21.6, callstate.Update{OrigCallID: a, Direction: "in", From: "49178", To: "49203",
				Users: []string{"voicemail"}, Diversion: "49203", State: callstate.StateRinging}),
			sg(b, "answer", 22, callstate.Update{OrigCallID: a, Direction: "in", From: "49178", To: "49203",
				State: callstate.StateAnswered}),
			sg(b, "hangup", 50, callstate.Update{OrigCallID: a, Cause: "normalClearing", State: callstate.StateEnded}),
		}
		rand.Shuffle(len(evs), func(x, y int) { evs[x], evs[y] = evs[y], evs[x] })
		for _, ev := range evs {
			if _, err := st.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		got := readJourney(t, st, pool, a)
		if got.Outcome != "voicemail" || got.Legs != 2 || got.Direction != "in" || got.From != "49178" ||
			got.Wait == nil || *got.Wait != 22 || got.Talk != nil || len(got.Users) != 1 || got.Users[0] != "w1" {
			t.Errorf("order %d: journey %+v", i, got)
		}
	}
	var n int
	syncJourneys(t, st)
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM call_journey`).Scan(&n); err != nil || n != 6 {
		t.Errorf("journeys = %d, %v; want 6", n, err)
	}
}

// TestJourneyConcurrentLegs writes the legs of many journeys from several
// goroutines at once, in random order: each journey ends up computed from
// all its legs, as computing it again from scratch gives.
func TestJourneyConcurrentLegs(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var evs []callstate.Event
	for i := range 40 {
		a, b := fmt.Sprintf("J%d", i), fmt.Sprintf("J%d-fwd", i)
		evs = append(evs,
			sg(a, "newCall", 0, callstate.Update{OrigCallID: a, Direction: "in", From: "4917", To: "4930",
				UserIDs: []string{"w1"}, Extension: "w1", State: callstate.StateRinging}),
			sg(a, "hangup", 10, callstate.Update{OrigCallID: a, Cause: "forwarded", State: callstate.StateEnded}),
			sg(b, "newCall", 10, callstate.Update{OrigCallID: a, Direction: "in", From: "4917", To: "4930",
				UserIDs: []string{"w2"}, Extension: "w2", Diversion: "4930", State: callstate.StateRinging}),
			sg(b, "answer", 14, callstate.Update{OrigCallID: a, AnsweredBy: "Bea", Extension: "w2", PinExtension: true,
				State: callstate.StateAnswered}),
			sg(b, "hangup", 74, callstate.Update{OrigCallID: a, Cause: "normalClearing", State: callstate.StateEnded}))
	}
	rand.Shuffle(len(evs), func(x, y int) { evs[x], evs[y] = evs[y], evs[x] })
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(evs); i += 8 {
				if _, err := st.Apply(ctx, evs[i]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	var bad int
	syncJourneys(t, st)
	err = pool.QueryRow(ctx, `
		SELECT count(*) FROM journey_from_legs f FULL JOIN journey j USING (journey_id)
		WHERE (f.outcome, f.legs, f.answered_by, f.talk_seconds, f.user_ids) IS DISTINCT FROM (j.outcome, j.legs, j.answered_by, j.talk_seconds, j.user_ids)`).Scan(&bad)
	if err != nil || bad != 0 {
		t.Fatalf("journeys that differ from their legs: %d, %v", bad, err)
	}
	got := readJourney(t, st, pool, "J7")
	if got.Outcome != "answered" || got.AnsweredBy != "Bea" || got.Legs != 2 || *got.Wait != 14 || *got.Talk != 60 {
		t.Errorf("journey %+v", got)
	}
}

// TestJourneyViews reads the missed-call and stats views: an outgoing busy
// call is no missed call, a missed call is called back by a later
// answered outgoing call to the number, and a day's stats count journeys.
func TestJourneyViews(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	evs := []callstate.Event{
		// outgoing, busy
		sg("o1", "newCall", 0, callstate.Update{Direction: "out", From: "4930", To: "4917", UserIDs: []string{"w1"}, Extension: "w1", State: callstate.StateRinging}),
		sg("o1", "hangup", 3, callstate.Update{Cause: "busy", State: callstate.StateEnded}),
		// incoming, caller gives up
		sg("m1", "newCall", 10, callstate.Update{Direction: "in", From: "4917", To: "4930", UserIDs: []string{"w1", "w2"}, State: callstate.StateRinging}),
		sg("m1", "hangup", 25, callstate.Update{Cause: "cancel", State: callstate.StateEnded}),
		// incoming, answered by w2 after 4 s, 30 s talk
		sg("a1", "newCall", 40, callstate.Update{Direction: "in", From: "4916", To: "4930", UserIDs: []string{"w1", "w2"}, State: callstate.StateRinging}),
		sg("a1", "answer", 44, callstate.Update{AnsweredBy: "Bea", Extension: "w2", PinExtension: true, State: callstate.StateAnswered}),
		sg("a1", "hangup", 74, callstate.Update{Cause: "normalClearing", State: callstate.StateEnded}),
	}
	for _, ev := range evs {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if got := readJourney(t, st, pool, "o1"); got.Outcome != "outgoing-unreached" {
		t.Errorf("outgoing busy: %+v", got)
	}
	if got := readJourney(t, st, pool, "m1"); got.Outcome != "missed" || *got.Wait != 15 {
		t.Errorf("caller gave up: %+v", got)
	}
	missed := func() (n int, back bool) {
		t.Helper()
		syncJourneys(t, st)
		if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(bool_or(called_back), false) FROM missed_call`).Scan(&n, &back); err != nil {
			t.Fatal(err)
		}
		return n, back
	}
	if n, back := missed(); n != 1 || back {
		t.Errorf("missed calls = %d, called back %v; want 1, false", n, back)
	}
	for _, ev := range []callstate.Event{
		sg("cb", "newCall", 100, callstate.Update{Direction: "out", From: "4930", To: "4917", UserIDs: []string{"w1"}, Extension: "w1", State: callstate.StateRinging}),
		sg("cb", "answer", 105, callstate.Update{Extension: "w1", PinExtension: true, AnsweredBy: "Al", State: callstate.StateAnswered}),
		sg("cb", "hangup", 125, callstate.Update{Cause: "normalClearing", State: callstate.StateEnded}),
	} {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if n, back := missed(); n != 1 || !back {
		t.Errorf("after the call back: missed calls = %d, called back %v; want 1, true", n, back)
	}
	type stat struct {
		in, out, answered, missed, vm int64
		ratio, mean, talk             float64
	}
	read := func(user string) stat {
		t.Helper()
		var s stat
		syncJourneys(t, st)
		if err := pool.QueryRow(ctx, `
			SELECT calls_in, calls_out, answered, missed, voicemail, answer_ratio, mean_answer_seconds, talk_seconds
			FROM journey_stats_day WHERE day = $1 AND user_id = $2`, t0, user).
			Scan(&s.in, &s.out, &s.answered, &s.missed, &s.vm, &s.ratio, &s.mean, &s.talk); err != nil {
			t.Fatalf("stats %q: %v", user, err)
		}
		return s
	}
	if got, want := read(""), (stat{in: 2, out: 2, answered: 1, missed: 1, ratio: 0.5, mean: 4, talk: 50}); got != want {
		t.Errorf("team stats %+v, want %+v", got, want)
	}
	if got, want := read("w2"), (stat{in: 2, answered: 1, missed: 1, ratio: 0.5, mean: 4, talk: 30}); got != want {
		t.Errorf("w2 stats %+v, want %+v", got, want)
	}
}

// TestJourneyTimeZone: the stats' day is cut in the time zone set; a new
// zone computes every journey's day again, and an unknown one is refused.
func TestJourneyTimeZone(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	late := sg("tz1", "newCall", 13.5*3600, callstate.Update{Direction: "in", From: "4917", To: "4930", State: callstate.StateRinging}) // 23:30 UTC
	if _, err := st.Apply(ctx, late); err != nil {
		t.Fatal(err)
	}
	day := func() string {
		t.Helper()
		var d time.Time
		syncJourneys(t, st)
		if err := pool.QueryRow(ctx, `SELECT day FROM call_journey WHERE journey_id = 'tz1'`).Scan(&d); err != nil {
			t.Fatal(err)
		}
		return d.Format(time.DateOnly)
	}
	if got := day(); got != "2026-11-22" {
		t.Errorf("UTC day %s", got)
	}
	if changed, err := st.SetTimeZone(ctx, "Europe/Berlin"); err != nil || !changed {
		t.Fatalf("SetTimeZone: %v %v", changed, err)
	}
	if got := day(); got != "2026-11-23" {
		t.Errorf("Europe/Berlin day %s", got)
	}
	if changed, err := st.SetTimeZone(ctx, "Europe/Berlin"); err != nil || changed {
		t.Errorf("SetTimeZone again: %v %v", changed, err)
	}
	if _, err := st.SetTimeZone(ctx, "Mars/Olympus"); !errors.Is(err, store.ErrBadTimeZone) {
		t.Errorf("unknown zone: %v", err)
	}

	// A new database has no journeys whose day could move: the first
	// start's zone says nothing moved.
	fresh := openURL(t, storetest.NewDatabase(t))
	if moved, err := fresh.SetTimeZone(ctx, "Europe/Berlin"); err != nil || moved {
		t.Errorf("SetTimeZone on a new database: moved %v, err %v", moved, err)
	}
}

// TestJourneyStatsCompaction: the stats read the same before and after
// the changes are compacted, writes during a compaction are kept, and a
// journey whose time to answer went down no longer counts with its former
// value once compacted.
func TestJourneyStatsCompaction(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	stats := func() string {
		t.Helper()
		var s string
		syncJourneys(t, st)
		if err := pool.QueryRow(ctx, `SELECT coalesce(string_agg(concat_ws(',', day, user_id, calls_in, calls_out, answered, missed, voicemail,
			answer_ratio, mean_answer_seconds, talk_seconds), ' ' ORDER BY day, user_id), '') FROM journey_stats_day`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	parts := func() (n int) {
		t.Helper()
		syncJourneys(t, st)
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM journey_stats_part`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	apply := func(evs ...callstate.Event) {
		t.Helper()
		for _, ev := range evs {
			if _, err := st.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 20 {
		id := fmt.Sprintf("k%d", i)
		apply(sg(id, "newCall", float64(i), callstate.Update{Direction: "in", From: "4917", To: "4930", UserIDs: []string{"w1", "w2"}, State: callstate.StateRinging}),
			sg(id, "answer", float64(i)+map[bool]float64{true: 30, false: 5}[i == 0], callstate.Update{AnsweredBy: "Bea", Extension: "w2", PinExtension: true, State: callstate.StateAnswered}),
			sg(id, "hangup", float64(i)+65, callstate.Update{Cause: "normalClearing", State: callstate.StateEnded}))
	}
	// A late answer, earlier than the one known: k0's wait was 30 s and
	// is 2 s now; until the compaction, the longest wait still says 30.
	// (Once the 30 s are counted: the refresher may otherwise see both
	// answers at once.)
	syncJourneys(t, st)
	apply(sg("k0", "answer", 2, callstate.Update{AnsweredBy: "Bea", Extension: "w2", PinExtension: true, State: callstate.StateAnswered}))
	maxAnswer := func() (v float64) {
		t.Helper()
		syncJourneys(t, st)
		if err := pool.QueryRow(ctx, `SELECT max_answer_seconds FROM journey_stats_day WHERE user_id = ''`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := maxAnswer(); v != 30 {
		t.Errorf("max answer before the compaction %v; want the former 30", v)
	}
	before, n := stats(), parts()
	if days, err := st.CompactJourneyStats(ctx); err != nil || days != 1 {
		t.Fatalf("compact: %d %v", days, err)
	}
	after, m := stats(), parts()
	if before != after {
		t.Errorf("stats changed by the compaction:\n%s\n%s", before, after)
	}
	if m != 3 || m >= n {
		t.Errorf("parts %d before, %d after; want 3 after (team, w1, w2)", n, m)
	}
	if days, err := st.CompactJourneyStats(ctx); err != nil || days != 0 {
		t.Errorf("compact again: %d %v", days, err)
	}
	if v := maxAnswer(); v != 5 {
		t.Errorf("max answer after the compaction %v; want 5 (k1..k19)", v)
	}
	apply(sg("k99", "newCall", 100, callstate.Update{Direction: "in", From: "4917", To: "4930", UserIDs: []string{"w1"}, State: callstate.StateRinging}),
		sg("k99", "hangup", 130, callstate.Update{Cause: "cancel", State: callstate.StateEnded}))
	before = stats()
	if _, err := st.CompactJourneyStats(ctx); err != nil {
		t.Fatal(err)
	}
	if after := stats(); after != before {
		t.Errorf("stats changed by the second compaction:\n%s\n%s", before, after)
	}
	var missed int64
	syncJourneys(t, st)
	if err := pool.QueryRow(ctx, `SELECT missed FROM journey_stats_day WHERE user_id = 'w1'`).Scan(&missed); err != nil || missed != 1 {
		t.Errorf("w1 missed %d %v", missed, err)
	}
}

// TestJourneySIPFork: the dialogs of one call on two watched extensions
// (a forking proxy: one Call-ID) are one journey, answered by the
// extension that took it; a dialog of another Call-ID is a journey of its
// own.
func TestJourneySIPFork(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sipEv := func(key, callID, ext string, sec float64, st callstate.State, cause string) callstate.Event {
		return callstate.Event{Source: callstate.SourceSIP, Type: "dialog", DedupKey: fmt.Sprintf("%s/%v/%s", key, sec, st),
			ReceivedAt: t0.Add(time.Duration(sec * float64(time.Second))), Payload: []byte("<dialog-info/>"),
			Update: callstate.Update{Key: key, CallID: callID, Extension: ext, Direction: "in", From: "sip:200@pbx", To: "sip:100@pbx", State: st, Cause: cause}}
	}
	for _, ev := range []callstate.Event{
		sipEv("101/d1~a", "c1@pbx", "101", 0, callstate.StateRinging, ""),
		sipEv("102/d2~a", "c1@pbx", "102", 0, callstate.StateRinging, ""),
		sipEv("102/d2~a", "c1@pbx", "102", 6, callstate.StateAnswered, ""),
		sipEv("101/d1~a", "c1@pbx", "101", 6, callstate.StateEnded, "cancelled"),
		sipEv("102/d2~a", "c1@pbx", "102", 66, callstate.StateEnded, "remote-bye"),
		sipEv("103/d3~b", "c2@pbx", "103", 10, callstate.StateRinging, ""),
		sipEv("103/d3~b", "c2@pbx", "103", 40, callstate.StateEnded, "timeout"),
	} {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if got := readJourney(t, st, pool, "sip:c1@pbx"); got.Outcome != "answered" || got.AnsweredBy != "102" || got.Legs != 2 ||
		*got.Wait != 6 || *got.Talk != 60 || len(got.Users) != 2 {
		t.Errorf("forked call: %+v", got)
	}
	if got := readJourney(t, st, pool, "sip:c2@pbx"); got.Outcome != "missed" || got.Legs != 1 {
		t.Errorf("ring-out: %+v", got)
	}
}

// TestJourneyLeftByACrash: an instance committed a leg and died while its
// refresh held the leg's queued row (a transaction that never commits, its
// connection then gone). Another instance, writing nothing itself, computes
// the journey within 5 s of the death.
func TestJourneyLeftByACrash(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// The dead instance's writer: the leg and its queued row, committed.
	if _, err := pool.Exec(ctx, `
WITH leg AS (
    INSERT INTO call_state (source, call_key, call_id, direction, state, started_at, ended_at, updated_at, last_event_id, hangup_cause, cause_at)
    VALUES ('sipgate', 'crash1', 'crash1', 'in', 'ended', now() - interval '1 minute', now(), now(), 0, 'cancel', now())
)
INSERT INTO journey_pending (source, call_key) VALUES ('sipgate', 'crash1')`); err != nil {
		t.Fatal(err)
	}
	// Its refresher took the row and is stuck in its transaction.
	dead, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := dead.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT id FROM journey_pending FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	outcome := func() string {
		var o string
		if err := pool.QueryRow(ctx, `SELECT coalesce((SELECT outcome FROM journey WHERE journey_id = 'crash1'), '')`).Scan(&o); err != nil {
			t.Fatal(err)
		}
		return o
	}
	time.Sleep(2 * refreshPollForTest) // the live instance looks, and must leave the held row alone
	if o := outcome(); o != "" {
		t.Fatalf("journey computed while the row was held: %q", o)
	}
	// The instance dies: its connection goes, its transaction with it.
	died := time.Now()
	if err := dead.Conn().Close(ctx); err != nil {
		t.Fatal(err)
	}
	dead.Release()
	for outcome() != "missed" {
		if time.Since(died) > 5*time.Second {
			t.Fatalf("journey after 5 s: %q", outcome())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("journey computed %s after the death", time.Since(died))
	syncFeed(t, st)
	if got := typesOf(readFeed(t, st, 0), "crash1"); !slices.Equal(got, []string{callstate.EventRinging, callstate.EventEnded, callstate.EventJourneyEnded, callstate.EventMissed}) {
		t.Errorf("feed %v", got)
	}
}

// refreshPollForTest is store's refreshPoll.
const refreshPollForTest = time.Second

// TestJourneyRule: a forwarded call's journey keeps the rule of the leg
// routed first, in every order its events come in, as JourneyOf says.
func TestJourneyRule(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	for i := range 4 {
		a, b := fmt.Sprintf("RA%d", i), fmt.Sprintf("RB%d", i)
		evs := []callstate.Event{
			sg(a, "newCall", 0, callstate.Update{OrigCallID: a, Direction: "in", From: "49178", To: "49203", State: callstate.StateRinging, Rule: "vip to owner"}),
			sg(a, "hangup", 10, callstate.Update{OrigCallID: a, Cause: "forwarded", State: callstate.StateEnded}),
			sg(b, "newCall", 10.1, callstate.Update{OrigCallID: a, Direction: "in", From: "49178", To: "49203", State: callstate.StateRinging, Rule: "alice busy"}),
			sg(b, "hangup", 20, callstate.Update{OrigCallID: a, Cause: "normalClearing", State: callstate.StateEnded}),
		}
		rand.Shuffle(len(evs), func(x, y int) { evs[x], evs[y] = evs[y], evs[x] })
		for _, ev := range evs {
			if _, err := st.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		syncJourneys(t, st)
		js, err := st.JourneysByID(ctx, []string{a})
		if err != nil || len(js) != 1 || js[0].Rule != "vip to owner" {
			t.Fatalf("order %d: journeys %+v, %v; want the rule of the leg routed first", i, js, err)
		}
		c, err := st.Call(ctx, callstate.SourceSipgate, b)
		if err != nil || c.Rule != "alice busy" || !c.RuleAt.Equal(t0.Add(10100*time.Millisecond)) {
			t.Fatalf("leg %s: rule %q at %v, %v", b, c.Rule, c.RuleAt, err)
		}
	}
}

// TestJourneyHeldForAnswer: a journey whose legs have all ended with no
// answer yet is held for a grace instead of ending missed (migrations 029
// and 031): five graces when sipgate's hang-up says the call was talked
// on, so that its answer, committing late, makes it answered without a
// call.missed in the feed; one grace otherwise, after which it ends missed.
func TestJourneyHeldForAnswer(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	apply := func(evs ...callstate.Event) {
		t.Helper()
		for _, ev := range evs {
			if _, err := st.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	// heldOutcome waits until the refresher has looked at every write and
	// only held rows are left, and returns the journey's outcome then.
	heldOutcome := func(id string) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var unheld, held int
			var outcome string
			err := pool.QueryRow(ctx, `
				SELECT count(*) FILTER (WHERE NOT held), count(*) FILTER (WHERE held),
				       coalesce((SELECT outcome FROM journey WHERE journey_id = $1), 'active')
				FROM journey_pending`, id).Scan(&unheld, &held, &outcome)
			if err != nil {
				t.Fatal(err)
			}
			if unheld == 0 && held > 0 {
				return outcome
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d rows not looked at, %d held; outcome %s", id, unheld, held, outcome)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	newCall := func(id string) callstate.Event {
		return sg(id, "newCall", 0, callstate.Update{Direction: "in", From: "49178", To: "49203",
			Users: []string{"Oliver"}, UserIDs: []string{"w1"}, Extension: "w1", State: callstate.StateRinging})
	}

	talked := "held-talked"
	apply(newCall(talked), sg(talked, "hangup", 30, callstate.Update{Cause: callstate.CauseNormalClearing, State: callstate.StateEnded}))
	if got := heldOutcome(talked); got != string(callstate.OutcomeActive) {
		t.Fatalf("talked-on call before its answer: outcome %s, want it held active", got)
	}
	apply(sg(talked, "answer", 2, callstate.Update{AnsweredBy: "Oliver", State: callstate.StateAnswered}))
	if got := readJourney(t, st, pool, talked).Outcome; got != string(callstate.OutcomeAnswered) {
		t.Errorf("talked-on call after its answer: outcome %s", got)
	}

	missed := "held-missed"
	apply(newCall(missed), sg(missed, "hangup", 20, callstate.Update{Cause: callstate.CauseCancel, State: callstate.StateEnded}))
	if got := heldOutcome(missed); got != string(callstate.OutcomeActive) {
		t.Fatalf("cancelled call within the grace: outcome %s, want it held active", got)
	}
	if got := readJourney(t, st, pool, missed).Outcome; got != string(callstate.OutcomeMissed) {
		t.Errorf("cancelled call after the grace: outcome %s", got)
	}

	syncFeed(t, st)
	feed := readFeed(t, st, 0)
	if got := typesOf(feed, talked); slices.Contains(got, callstate.EventMissed) || !slices.Contains(got, callstate.EventJourneyEnded) {
		t.Errorf("talked-on call's events %v: want journey.ended and no call.missed", got)
	}
	if got := typesOf(feed, missed); !slices.Contains(got, callstate.EventMissed) {
		t.Errorf("cancelled call's events %v: want call.missed", got)
	}
}

// TestJourneyStatsFoldMatchesRebuild: 300 journeys, answered, abandoned
// and missed, the longest waits going down by answers that arrive late, compacted every 40 calls
// (the changes folded into the base rows), read the same as the stats
// computed again from the journeys.
func TestJourneyStatsFoldMatchesRebuild(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	stats := func() string {
		t.Helper()
		var s string
		if err := pool.QueryRow(ctx, `SELECT coalesce(string_agg(concat_ws(',', day, user_id, calls_in, calls_out, answered, missed, voicemail,
			round(answer_ratio::numeric, 9), round(mean_answer_seconds::numeric, 6), max_answer_seconds, round(talk_seconds::numeric, 6),
			abandoned, short_abandoned, sl_answered, sl_offered), ' ' ORDER BY day, user_id), '') FROM journey_stats_day`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	users := []string{"w1", "w2", "w3"}
	for i := range 300 {
		id := fmt.Sprintf("f%d", i)
		at := float64(i * 10)
		user := users[i%3]
		wait := float64(1 + (i*7)%45)
		evs := []callstate.Event{sg(id, "newCall", at, callstate.Update{Direction: "in", From: "4917", To: "4930",
			UserIDs: []string{user, users[(i+1)%3]}, State: callstate.StateRinging})}
		switch i % 5 {
		case 0, 1, 2:
			evs = append(evs,
				sg(id, "answer", at+wait, callstate.Update{AnsweredBy: user, Extension: user, PinExtension: true, State: callstate.StateAnswered}),
				sg(id, "hangup", at+wait+30.25, callstate.Update{Cause: "normalClearing", State: callstate.StateEnded}))
		case 3:
			evs = append(evs, sg(id, "hangup", at+wait/4, callstate.Update{Cause: "cancel", State: callstate.StateEnded}))
		case 4:
			evs = append(evs, sg(id, "hangup", at+wait, callstate.Update{Cause: "busy", State: callstate.StateEnded}))
		}
		for _, ev := range evs {
			if _, err := st.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		if i%40 == 39 {
			syncJourneys(t, st)
			// The longest waits of the batch were shorter than known:
			// answered earlier.
			for j := i - 39; j <= i; j++ {
				if j%5 <= 2 && 1+(j*7)%45 >= 38 {
					late := sg(fmt.Sprintf("f%d", j), "answer", float64(j*10)+0.5, callstate.Update{AnsweredBy: users[j%3],
						Extension: users[j%3], PinExtension: true, State: callstate.StateAnswered})
					late.DedupKey += "/earlier"
					if _, err := st.Apply(ctx, late); err != nil {
						t.Fatal(err)
					}
				}
			}
			syncJourneys(t, st)
			if _, err := st.CompactJourneyStats(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	syncJourneys(t, st)
	if _, err := st.CompactJourneyStats(ctx); err != nil {
		t.Fatal(err)
	}
	folded := stats()
	if _, err := pool.Exec(ctx, `SELECT callstate_rebuild_journey_stats()`); err != nil {
		t.Fatal(err)
	}
	if rebuilt := stats(); folded != rebuilt {
		t.Errorf("folded stats differ from the stats computed again:\n%s\n%s", folded, rebuilt)
	}
	if !strings.Contains(folded, "w1") {
		t.Errorf("no stats for w1: %s", folded)
	}
}
