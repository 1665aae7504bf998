package store_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

// TestTeamDay stores a morning's calls and checks the lead's numbers:
// waiting now, answered, missed with call-back status, and per person.
func TestTeamDay(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	// Days are cut in UTC (callstate_setting time_zone's default).
	day := time.Now().UTC().Truncate(24 * time.Hour)
	// The morning's calls in the day's first seconds (a second for an
	// hour), so that they are today's and past whenever the test runs.
	at := func(h, m, s int) time.Time {
		d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second
		return callstate.EventTime(day.Add(d / 3600))
	}
	n := 0
	apply := func(key, typ string, when time.Time, u callstate.Update) {
		t.Helper()
		n++
		u.Key, u.CallID = key, key
		ev := callstate.Event{Source: callstate.SourceSipgate, Type: typ, DedupKey: key + "/" + typ,
			ReceivedAt: when, Payload: []byte("event=" + typ), Update: u}
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	in := func(key, from string, when time.Time, users ...string) {
		apply(key, "newCall", when, callstate.Update{Direction: callstate.DirectionIn, From: from, To: "4930555",
			UserIDs: users, State: callstate.StateRinging})
	}
	answer := func(key, user string, when time.Time) {
		apply(key, "answer", when, callstate.Update{Extension: user, PinExtension: true, AnsweredBy: "User " + user,
			Answering: "4930555", State: callstate.StateAnswered})
	}
	hangup := func(key, cause string, when time.Time) {
		apply(key, "hangup", when, callstate.Update{Cause: cause, State: callstate.StateEnded})
	}
	// Yesterday's missed call counts for nothing today.
	in("y1", "491701111", day.Add(-time.Hour), "w1")
	hangup("y1", "cancel", day.Add(-time.Hour+20*time.Second))
	// Answered by w1 after 10 s, 2 minutes of talk.
	in("c1", "491702222", at(8, 0, 0), "w1", "w2")
	answer("c1", "w1", at(8, 0, 10))
	hangup("c1", "normalClearing", at(8, 2, 10))
	// Missed, offered to w1 and w2; w2 calls back at 9:00 and is answered.
	in("c2", "491703333", at(8, 30, 0), "w1", "w2")
	hangup("c2", "cancel", at(8, 30, 25))
	apply("c3", "newCall", at(9, 0, 0), callstate.Update{Direction: callstate.DirectionOut, From: "4930555", To: "491703333",
		Users: []string{"User w2"}, UserIDs: []string{"w2"}, Extension: "w2", State: callstate.StateRinging})
	apply("c3", "answer", at(9, 0, 5), callstate.Update{State: callstate.StateAnswered})
	hangup("c3", "normalClearing", at(9, 1, 5))
	// Missed, not called back.
	in("c4", "491704444", at(9, 30, 0), "w2")
	hangup("c4", "cancel", at(9, 30, 40))
	// Answered by w1 and still going on: counts for the team and for w1.
	in("c7", "491707777", at(9, 50, 0), "w1")
	answer("c7", "w1", at(9, 50, 5))
	// Waiting now: two ringing, the older since 9:59:00.
	in("c5", "491705555", at(9, 59, 0), "w1")
	in("c6", "491706666", at(9, 59, 30), "w1", "w2")

	syncJourneys(t, st)
	got, err := st.TeamDay(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got.Day != day.Format(time.DateOnly) || !got.DayStart.Equal(day) {
		t.Errorf("day %s from %v, want %v", got.Day, got.DayStart, day)
	}
	if got.Waiting != 2 || !got.LongestWaitSince.Equal(at(9, 59, 0)) {
		t.Errorf("waiting %d since %v, want 2 since 09:59:00", got.Waiting, got.LongestWaitSince)
	}
	if got.CallsIn != 6 || got.CallsOut != 1 || got.Answered != 2 || got.Missed != 2 || got.MissedOpen != 1 {
		t.Errorf("in %d out %d answered %d missed %d open %d; want 6 1 2 2 1",
			got.CallsIn, got.CallsOut, got.Answered, got.Missed, got.MissedOpen)
	}
	if len(got.MissedCalls) != 2 || got.MissedCalls[0].Number != "491704444" || !got.MissedCalls[0].CalledBackAt.IsZero() ||
		got.MissedCalls[1].Number != "491703333" || !got.MissedCalls[1].CalledBackAt.Equal(at(9, 0, 5)) {
		t.Errorf("missed calls %+v", got.MissedCalls)
	}
	// With SIPGATE_RINGING_STALE, a caller with no news for it is not
	// waiting: c5 has had none for 5 s at 14.99 s past midnight, c6 for
	// just under.
	if err := st.SetRingingStale(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	stale, err := st.TeamDay(ctx, day.Add(14990*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if stale.Waiting != 1 || stale.NoNews != 1 || !stale.LongestWaitSince.Equal(at(9, 59, 30)) {
		t.Errorf("with a stale time: waiting %d since %v, no news %d; want 1 since 09:59:30, 1", stale.Waiting, stale.LongestWaitSince, stale.NoNews)
	}
	if err := st.SetRingingStale(ctx, 0); err != nil {
		t.Fatal(err)
	}
	want := map[string]callstate.PersonDay{
		"w1": {UserID: "w1", Calls: 5, Answered: 2, Missed: 1, TalkSeconds: 120.0 / 3600},
		"w2": {UserID: "w2", Calls: 5, Missed: 2, TalkSeconds: 60.0 / 3600},
	}
	if len(got.People) != len(want) {
		t.Fatalf("people %+v", got.People)
	}
	for _, p := range got.People {
		w := want[p.UserID]
		if math.Abs(p.TalkSeconds-w.TalkSeconds) < 1e-5 {
			p.TalkSeconds = w.TalkSeconds
		}
		if p != w {
			t.Errorf("person %+v, want %+v", p, want[p.UserID])
		}
	}
}
