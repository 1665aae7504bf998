package callstate_test

import (
	"testing"
	"time"

	"github.com/callstate/callstate"
)

// TestApplyWhichSourceWins: the rule of the merge between a webhook's
// stated fact, what sipgate's history tells afterwards (learned) and what
// callstate guessed (a timeout end), each case in every order.
func TestApplyWhichSourceWins(t *testing.T) {
	learned := func(answered, ended int, cause string) callstate.Update {
		u := callstate.Update{Key: "c1", Learned: true, State: callstate.StateEnded, Cause: cause,
			StartedAt: at(0), EndedAt: at(ended)}
		if answered >= 0 {
			u.AnsweredAt = at(answered)
		}
		return u
	}
	timeout := callstate.Update{Key: "c1", State: callstate.StateEnded, Cause: callstate.CauseTimeout, Guessed: true}
	cancel := callstate.Update{Key: "c1", Cause: "cancel", State: callstate.StateEnded}
	type want struct {
		cause              string
		answered, ended    time.Time
		endRank, answerRnk callstate.Rank
		learned            bool
	}
	tests := []struct {
		name  string
		steps []step
		want  want
	}{
		{"OK/HangupLostAfterAnswer", []step{{newCall, at(0)}, {answer, at(2)}, {learned(-1, 60, "normalClearing"), at(600)}},
			want{"normalClearing", at(2), at(60), callstate.RankLearned, callstate.RankStated, false}},
		{"OK/HangupLostWhileRinging", []step{{newCall, at(0)}, {learned(-1, 20, "noAnswer"), at(600)}},
			want{"noAnswer", time.Time{}, at(20), callstate.RankLearned, callstate.RankNone, false}},
		{"OK/LearnedReplacesTimeout", []step{{newCall, at(0)}, {timeout, at(1800)}, {learned(-1, 20, "noAnswer"), at(1900)}},
			want{"noAnswer", time.Time{}, at(20), callstate.RankLearned, callstate.RankNone, false}},
		{"OK/LearnedAnswerFillsLostAnswer", []step{{newCall, at(0)}, {timeout, at(1800)}, {learned(5, 60, "normalClearing"), at(1900)}},
			want{"normalClearing", at(5), at(60), callstate.RankLearned, callstate.RankLearned, false}},
		{"OK/WebhookEndStandsOverLearned", []step{{newCall, at(0)}, {learned(5, 60, "normalClearing"), at(30)}, {cancel, at(40)}},
			want{"cancel", time.Time{}, at(40), callstate.RankStated, callstate.RankNone, false}},
		{"OK/WebhookAnswerStandsOverLearnedMiss", []step{{newCall, at(0)}, {answer, at(2)}, {learned(-1, 20, "noAnswer"), at(600)}},
			want{"noAnswer", at(2), at(20), callstate.RankLearned, callstate.RankStated, false}},
		{"OK/TimeoutGivesWayToLateHangup", []step{{newCall, at(0)}, {timeout, at(1800)}, {hangup, at(1900)}},
			want{"normalClearing", time.Time{}, at(1900), callstate.RankStated, callstate.RankNone, false}},
		{"OK/LearnedOnly", []step{{learned(5, 60, "normalClearing"), at(600)}},
			want{"normalClearing", at(5), at(60), callstate.RankLearned, callstate.RankLearned, true}},
		{"OK/LearnedThenLateWebhooks", []step{{learned(5, 60, "normalClearing"), at(600)}, {newCall, at(0)}, {answer, at(3)}, {hangup, at(62)}},
			want{"normalClearing", at(3), at(62), callstate.RankStated, callstate.RankStated, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, order := range permutationsOf(len(tt.steps)) {
				var steps []step
				for _, j := range order {
					steps = append(steps, tt.steps[j])
				}
				c := fold(steps...)
				got := want{c.Cause, c.AnsweredAt, c.EndedAt, c.EndRank, c.AnswerRank, c.Learned}
				if got != tt.want {
					t.Fatalf("order %d %v:\n got  %+v\n want %+v", i, order, got, tt.want)
				}
				if c.State != callstate.StateEnded {
					t.Errorf("state %v, want ended", c.State)
				}
			}
		})
	}
}

func TestValidateStatedTimes(t *testing.T) {
	ev := func(u callstate.Update) callstate.Event {
		u.Key = "c1"
		return callstate.Event{Source: callstate.SourceSipgate, Type: "reconciled", DedupKey: "r", ReceivedAt: at(100), Update: u}
	}
	tests := []struct {
		name string
		u    callstate.Update
		ok   bool
	}{
		{"OK", callstate.Update{Learned: true, State: callstate.StateEnded, StartedAt: at(0), AnsweredAt: at(2), EndedAt: at(9)}, true},
		{"ErrAnsweredBeforeStart", callstate.Update{Learned: true, State: callstate.StateEnded, StartedAt: at(3), AnsweredAt: at(2), EndedAt: at(9)}, false},
		{"ErrEndedBeforeAnswer", callstate.Update{Learned: true, State: callstate.StateEnded, AnsweredAt: at(10), EndedAt: at(9)}, false},
		{"ErrEndWithoutEnded", callstate.Update{Learned: true, State: callstate.StateAnswered, EndedAt: at(9)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ev(tt.u).Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// permutationsOf returns every order of n items as index lists.
func permutationsOf(n int) [][]int {
	if n <= 1 {
		return [][]int{make([]int, n)}
	}
	var out [][]int
	for _, p := range permutationsOf(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

func TestNoNews(t *testing.T) {
	ringing := callstate.Call{Source: callstate.SourceSipgate, State: callstate.StateRinging, UpdatedAt: at(0)}
	tests := []struct {
		name string
		c    callstate.Call
		now  time.Time
		want bool
	}{
		{"OK/Fresh", ringing, at(299), false},
		{"OK/NoNews", ringing, at(300), true},
		{"OK/AnsweredIsNews", func() callstate.Call { c := ringing; c.State = callstate.StateAnswered; return c }(), at(900), false},
		{"OK/SIPHasItsOwnNews", func() callstate.Call { c := ringing; c.Source = callstate.SourceSIP; return c }(), at(900), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.NoNews(tt.now, 5*time.Minute); got != tt.want {
				t.Errorf("NoNews = %v, want %v", got, tt.want)
			}
		})
	}
	if ringing.NoNews(at(9999), 0) {
		t.Error("NoNews with 0: want never")
	}
}
