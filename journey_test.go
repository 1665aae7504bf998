package callstate_test

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/reference"
)

var j0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// leg is one event of a scenario: the call it is about and when it came.
type legEvent struct {
	source callstate.Source
	key    string
	sec    float64
	u      callstate.Update
}

func sgEv(key string, sec float64, u callstate.Update) legEvent {
	u.Key, u.CallID = key, key
	return legEvent{callstate.SourceSipgate, key, sec, u}
}

// journeyOf applies events in the given order and returns the journey of
// the resulting legs.
func journeyOf(evs []legEvent) callstate.Journey {
	calls := map[string]callstate.Call{}
	var keys []string
	for _, e := range evs {
		k := string(e.source) + "/" + e.key
		c, ok := calls[k]
		if !ok {
			keys = append(keys, k)
			c.Source = e.source
		}
		calls[k] = c.Apply(e.u, j0.Add(time.Duration(e.sec*float64(time.Second))))
	}
	var legs []callstate.Call
	for _, k := range keys {
		legs = append(legs, calls[k])
	}
	return reference.JourneyOf(legs)
}

var (
	in  = callstate.DirectionIn
	out = callstate.DirectionOut
)

func jNew(orig string, dir callstate.Direction, from, to string, users, ids []string) callstate.Update {
	u := callstate.Update{OrigCallID: orig, Direction: dir, From: from, To: to, Users: users, UserIDs: ids, State: callstate.StateRinging}
	if len(ids) == 1 {
		u.Extension = ids[0]
	}
	return u
}

func jAnswer(orig, user, userID, number string) callstate.Update {
	return callstate.Update{OrigCallID: orig, AnsweredBy: user, Extension: userID, PinExtension: userID != "", Answering: number, State: callstate.StateAnswered}
}

func jHangup(orig, cause string) callstate.Update {
	return callstate.Update{OrigCallID: orig, Cause: cause, State: callstate.StateEnded}
}

func TestJourneyOf(t *testing.T) {
	team := []string{"w1", "w2", "w3"}
	names := []string{"Ann", "Ben", "Cem"}
	tests := []struct {
		name       string
		evs        []legEvent
		outcome    callstate.Outcome
		by, byID   string
		wait, talk float64 // seconds; -1: none
		legs       int
		users      []string
		dir        callstate.Direction
	}{
		{"InboundAnswered", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 4, jAnswer("A", "Ann", "w1", "4930")),
			sgEv("A", 64, jHangup("A", "normalClearing")),
		}, callstate.OutcomeAnswered, "Ann", "w1", 4, 60, 1, []string{"w1"}, in},
		{"RingsSeveralOneAnswers", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names, team)),
			sgEv("A", 7, jAnswer("A", "Ben", "w2", "4930")),
			sgEv("A", 37, jHangup("A", "normalClearing")),
		}, callstate.OutcomeAnswered, "Ben", "w2", 7, 30, 1, team, in},
		{"ForwardedToMobileAnsweredThere", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 20, jHangup("A", "forwarded")),
			sgEv("B", 20.1, jNew("A", in, "4917", "4930", nil, nil)),
			sgEv("B", 26, jAnswer("A", "", "", "49170555")),
			sgEv("B", 86, jHangup("A", "normalClearing")),
		}, callstate.OutcomeAnswered, "49170555", "", 26, 60, 2, []string{"w1"}, in},
		{"ForwardedNotAnswered", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 20, jHangup("A", "forwarded")),
			sgEv("B", 20.1, jNew("A", in, "4917", "4930", names[1:2], team[1:2])),
			sgEv("B", 45, jHangup("A", "cancel")),
		}, callstate.OutcomeMissed, "", "", 45, -1, 2, []string{"w1", "w2"}, in},
		{"ForwardedOutOfReach", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 15, jHangup("A", "forwarded")),
		}, callstate.OutcomeForwarded, "", "", 15, -1, 1, []string{"w1"}, in},
		{"VoicemailLeg", []legEvent{ // sipgate.io issue 134
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 21.5, jHangup("A", "forwarded")),
			sgEv("B", 21.6, jNew("A", in, "4917", "4930", []string{"voicemail"}, nil)),
			sgEv("B", 22, jAnswer("A", "", "", "")),
			sgEv("B", 52, jHangup("A", "normalClearing")),
		}, callstate.OutcomeVoicemail, "", "", 22, -1, 2, []string{"w1"}, in},
		{"VoicemailSameLeg", []legEvent{ // sipgate.io issue 70: answer with an empty user
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 10, jAnswer("A", "", "", "")),
			sgEv("A", 40, jHangup("A", "normalClearing")),
		}, callstate.OutcomeVoicemail, "", "", 10, -1, 1, []string{"w1"}, in},
		{"CallerHangsUpWhileRinging", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names, team)),
			sgEv("A", 12, jHangup("A", "cancel")),
		}, callstate.OutcomeMissed, "", "", 12, -1, 1, team, in},
		{"RejectedBusy", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 2, jHangup("A", "busy")),
		}, callstate.OutcomeMissed, "", "", 2, -1, 1, []string{"w1"}, in},
		{"RingOut", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 30, jHangup("A", "noAnswer")),
		}, callstate.OutcomeMissed, "", "", 30, -1, 1, []string{"w1"}, in},
		{"Transfer", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 3, jAnswer("A", "Ann", "w1", "4930")),
			sgEv("A", 40, jHangup("A", "forwarded")),
			sgEv("B", 40.1, jNew("A", in, "4917", "4930", names[1:2], team[1:2])),
			sgEv("B", 45, jAnswer("A", "Ben", "w2", "4930")),
			sgEv("B", 103, jHangup("A", "normalClearing")),
		}, callstate.OutcomeAnswered, "Ann", "w1", 3, 100, 2, []string{"w1", "w2"}, in},
		{"OutgoingBusy", []legEvent{
			sgEv("A", 0, jNew("", out, "4930", "4917", names[:1], team[:1])),
			sgEv("A", 3, jHangup("", "busy")),
		}, callstate.OutcomeUnreached, "", "", 3, -1, 1, []string{"w1"}, out},
		{"OutgoingNoAnswer", []legEvent{
			sgEv("A", 0, jNew("", out, "4930", "4917", names[:1], team[:1])),
			sgEv("A", 40, jHangup("", "noAnswer")),
		}, callstate.OutcomeUnreached, "", "", 40, -1, 1, []string{"w1"}, out},
		{"OutgoingNotFound", []legEvent{
			sgEv("A", 0, jNew("", out, "4930", "4999", names[:1], team[:1])),
			sgEv("A", 1, jHangup("", "notFound")),
		}, callstate.OutcomeUnreached, "", "", 1, -1, 1, []string{"w1"}, out},
		{"OutgoingAnswered", []legEvent{
			sgEv("A", 0, jNew("", out, "4930", "4917", names[:1], team[:1])),
			sgEv("A", 5, jAnswer("", "Ann", "w1", "")),
			sgEv("A", 25, jHangup("", "normalClearing")),
		}, callstate.OutcomeAnswered, "Ann", "w1", 5, 20, 1, []string{"w1"}, out},
		{"HangupMissingWhileRinging", []legEvent{ // ended by callstate's timeout
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 1800, jHangup("", "timeout")),
		}, callstate.OutcomeFailed, "", "", 1800, -1, 1, []string{"w1"}, in},
		{"HangupMissingAfterAnswer", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 5, jAnswer("A", "Ann", "w1", "4930")),
			sgEv("A", 43205, jHangup("", "timeout")),
		}, callstate.OutcomeAnswered, "Ann", "w1", 5, 43200, 1, []string{"w1"}, in},
		{"StillRinging", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
		}, callstate.OutcomeActive, "", "", -1, -1, 1, []string{"w1"}, in},
		{"Congestion", []legEvent{
			sgEv("A", 0, jNew("A", in, "4917", "4930", names[:1], team[:1])),
			sgEv("A", 1, jHangup("A", "congestion")),
		}, callstate.OutcomeFailed, "", "", 1, -1, 1, []string{"w1"}, in},
		{"SIPVanishedWhileRinging", []legEvent{ // its end never came: answered or not, nobody knows
			{callstate.SourceSIP, "101/d1~x", 0, callstate.Update{Key: "101/d1~x", CallID: "c1@pbx", Extension: "101", Direction: in, From: "sip:200@pbx", To: "sip:101@pbx", State: callstate.StateRinging}},
			{callstate.SourceSIP, "101/d1~x", 9, callstate.Update{Key: "101/d1~x", State: callstate.StateEnded, Cause: callstate.CauseVanished}},
		}, callstate.OutcomeFailed, "", "", 9, -1, 1, []string{"101"}, in},
		{"SIPVanishedAfterAnswer", []legEvent{
			{callstate.SourceSIP, "101/d1~x", 0, callstate.Update{Key: "101/d1~x", CallID: "c1@pbx", Extension: "101", Direction: in, From: "sip:200@pbx", To: "sip:101@pbx", State: callstate.StateRinging}},
			{callstate.SourceSIP, "101/d1~x", 4, callstate.Update{Key: "101/d1~x", State: callstate.StateAnswered}},
			{callstate.SourceSIP, "101/d1~x", 9, callstate.Update{Key: "101/d1~x", State: callstate.StateEnded, Cause: callstate.CauseVanished}},
		}, callstate.OutcomeAnswered, "101", "101", 4, 5, 1, []string{"101"}, in},
		{"SIPForkOneAnswers", []legEvent{
			{callstate.SourceSIP, "101/d1~x", 0, callstate.Update{Key: "101/d1~x", CallID: "c1@pbx", Extension: "101", Direction: in, From: "sip:200@pbx", To: "sip:100@pbx", State: callstate.StateRinging}},
			{callstate.SourceSIP, "102/d2~x", 0, callstate.Update{Key: "102/d2~x", CallID: "c1@pbx", Extension: "102", Direction: in, From: "sip:200@pbx", To: "sip:100@pbx", State: callstate.StateRinging}},
			{callstate.SourceSIP, "102/d2~x", 6, callstate.Update{Key: "102/d2~x", State: callstate.StateAnswered}},
			{callstate.SourceSIP, "101/d1~x", 6, callstate.Update{Key: "101/d1~x", State: callstate.StateEnded, Cause: "cancelled"}},
			{callstate.SourceSIP, "102/d2~x", 66, callstate.Update{Key: "102/d2~x", State: callstate.StateEnded, Cause: "remote-bye"}},
		}, callstate.OutcomeAnswered, "102", "102", 6, 60, 2, []string{"101", "102"}, in},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := journeyOf(tt.evs)
			if want.Outcome != tt.outcome || want.AnsweredBy != tt.by || want.AnsweredUserID != tt.byID ||
				want.Legs != tt.legs || !slices.Equal(want.UserIDs, tt.users) || want.Direction != tt.dir {
				t.Errorf("journey %+v", want)
			}
			if w, ok := reference.Wait(want); (tt.wait < 0) == ok || (ok && w.Seconds() != tt.wait) {
				t.Errorf("wait %v %v, want %v", w, ok, tt.wait)
			}
			if d, ok := reference.Talk(want); (tt.talk < 0) == ok || (ok && d.Seconds() != tt.talk) {
				t.Errorf("talk %v %v, want %v", d, ok, tt.talk)
			}
			if tt.evs[0].source == callstate.SourceSipgate && want.ID != "A" {
				t.Errorf("journey id %q, want A", want.ID)
			}
			// Any order of the events gives the same journey.
			r := rand.New(rand.NewPCG(1, uint64(len(tt.name))))
			for range 200 {
				evs := slices.Clone(tt.evs)
				r.Shuffle(len(evs), func(a, b int) { evs[a], evs[b] = evs[b], evs[a] })
				if got := journeyOf(evs); !reflect.DeepEqual(got, want) {
					t.Fatalf("order changed the journey:\n got %+v\nwant %+v", got, want)
				}
			}
		})
	}
}

func TestJourneyID(t *testing.T) {
	tests := []struct {
		name string
		c    callstate.Call
		want string
	}{
		{"SipgateFirstLeg", callstate.Call{Source: callstate.SourceSipgate, Key: "A", CallID: "A", OrigCallID: "A"}, "A"},
		{"SipgateForwardLeg", callstate.Call{Source: callstate.SourceSipgate, Key: "B", CallID: "B", OrigCallID: "A"}, "A"},
		{"SipgateNoOrig", callstate.Call{Source: callstate.SourceSipgate, Key: "B", CallID: "B"}, "B"},
		{"SIPCallID", callstate.Call{Source: callstate.SourceSIP, Key: "101/d~h", CallID: "c1@pbx"}, "sip:c1@pbx"},
		{"SIPNoCallID", callstate.Call{Source: callstate.SourceSIP, Key: "101/d"}, "sip:101/d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := reference.JourneyID(tt.c); got != tt.want {
				t.Errorf("JourneyID = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestJourneyServiceCount(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	sec := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	answered := func(wait float64, by string) callstate.Journey {
		return callstate.Journey{Direction: callstate.DirectionIn, StartedAt: t0, AnsweredAt: sec(wait), EndedAt: sec(wait + 60),
			Outcome: callstate.OutcomeAnswered, AnsweredUserID: by, UserIDs: []string{"w1", "w2"}}
	}
	missed := func(wait float64, cause string) callstate.Journey {
		return callstate.Journey{Direction: callstate.DirectionIn, StartedAt: t0, EndedAt: sec(wait), Outcome: callstate.OutcomeMissed,
			Cause: cause, UserIDs: []string{"w1", "w2"}}
	}
	active := answered(8, "w1")
	active.Outcome, active.EndedAt = callstate.OutcomeActive, time.Time{}
	ringing := callstate.Journey{Direction: callstate.DirectionIn, StartedAt: t0, Outcome: callstate.OutcomeActive}
	voicemail := callstate.Journey{Direction: callstate.DirectionIn, StartedAt: t0, VoicemailAt: sec(20), EndedAt: sec(50),
		Outcome: callstate.OutcomeVoicemail}
	out := answered(3, "w1")
	out.Direction = callstate.DirectionOut
	history := answered(3, "w1")
	history.StartedAt = time.Time{}
	learned := answered(3, "w1")
	learned.Learned = true
	const sla, short = 20 * time.Second, 5 * time.Second
	for _, c := range []struct {
		name                    string
		j                       callstate.Journey
		user                    string
		offered, within, abando bool
	}{
		{"AnsweredAt5s", answered(5, "w1"), "", true, true, false},
		{"AnsweredAtTheSLA", answered(20, "w1"), "", true, true, false},
		{"AnsweredAt30s", answered(30, "w1"), "", true, false, false},
		{"AbandonedAt3sIsShort", missed(3, "cancel"), "", false, false, true},
		{"AbandonedAt40s", missed(40, "cancel"), "", true, false, true},
		{"SIPCancelled", missed(40, "cancelled"), "", true, false, true},
		{"RingOutIsNoAbandon", missed(3, "noAnswer"), "", true, false, false},
		{"BusyIsNoAbandon", missed(2, "busy"), "", true, false, false},
		{"Voicemail", voicemail, "", true, false, false},
		{"AnsweredGoingOnCountsForTheTeam", active, "", true, true, false},
		{"AnsweredGoingOnNotYetForAUser", active, "w1", false, false, false},
		{"Ringing", ringing, "", false, false, false},
		{"Outgoing", out, "", false, false, false},
		{"WithoutStart", history, "", false, false, false},
		{"LearnedFromHistory", learned, "", false, false, false},
		{"MineWithin", answered(5, "w1"), "w1", true, true, false},
		{"ColleagueAnsweredNotMine", answered(5, "w2"), "w1", false, false, false},
		{"MissedCountsForEveryone", missed(40, "cancel"), "w1", true, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			offered, within := reference.ServiceCount(c.j, c.user, sla, short)
			if offered != c.offered || within != c.within || reference.Abandoned(c.j) != c.abando {
				t.Errorf("offered %t within %t abandoned %t; want %t %t %t", offered, within, reference.Abandoned(c.j), c.offered, c.within, c.abando)
			}
		})
	}
}

func TestRegionTimeZone(t *testing.T) {
	for region, want := range map[string]string{
		"DE": "Europe/Berlin", "de": "Europe/Berlin", "AT": "Europe/Vienna", "CH": "Europe/Zurich", "FR": "Europe/Paris",
		"GB": "Europe/London", "IE": "Europe/Dublin", "IT": "Europe/Rome",
		"US": "", "ES": "", "RU": "", "CA": "", "XX": "", "": "",
	} {
		got, ok := callstate.RegionTimeZone(region)
		if got != want || ok != (want != "") {
			t.Errorf("RegionTimeZone(%q) = %q, %t; want %q", region, got, ok, want)
		}
		if ok {
			if _, err := time.LoadLocation(got); err != nil {
				t.Errorf("%s: %v", got, err)
			}
		}
	}
}

// TestJourneyRule: a journey keeps the rule of the leg routed first,
// whatever order its legs' events come in.
func TestJourneyRule(t *testing.T) {
	evs := []legEvent{
		sgEv("A", 0, callstate.Update{Direction: "in", From: "4917", To: "4930", State: callstate.StateRinging, Rule: "vip to owner"}),
		sgEv("B", 2, callstate.Update{OrigCallID: "A", Direction: "in", State: callstate.StateRinging, Rule: "alice busy"}),
		sgEv("B", 3, callstate.Update{OrigCallID: "A", State: callstate.StateEnded, Cause: "normalClearing"}),
		sgEv("A", 4, callstate.Update{State: callstate.StateEnded, Cause: "forwarded"}),
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		if j := journeyOf(evs); j.Rule != "vip to owner" {
			t.Fatalf("rule %q, want the first leg's", j.Rule)
		}
	}
}
