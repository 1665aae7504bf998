package store

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

func TestUserCachePending(t *testing.T) {
	now := time.Date(2026, 1, 31, 8, 0, 0, 0, time.UTC)
	req := func(src callstate.Source, ext string, ids, names []string) *applyReq {
		return &applyReq{ev: callstate.Event{Source: src, Update: callstate.Update{Extension: ext, UserIDs: ids, Users: names}}}
	}
	tests := []struct {
		name      string
		remember  []string // ids recorded before, with names when "id=name"
		at        time.Time
		batch     []*applyReq
		wantIDs   string
		wantNames string
	}{
		{"NewUsersSortedOnce", nil, now,
			[]*applyReq{req("sipgate", "w1", []string{"w1", "w0"}, []string{"Bob", "Alice"}), req("sipgate", "w0", nil, nil)},
			"[w0 w1]", "[Alice Bob]"},
		{"KnownUsersCostNothing", []string{"w0=Alice", "w1=Bob"}, now.Add(time.Second),
			[]*applyReq{req("sipgate", "w1", []string{"w1", "w0"}, []string{"Bob", "Alice"})}, "[]", "[]"},
		{"NameNewlyKnown", []string{"w0="}, now.Add(time.Second),
			[]*applyReq{req("sipgate", "", []string{"w0"}, []string{"Alice"})}, "[w0]", "[Alice]"},
		{"KnownWithoutNameNeedsNoName", []string{"w0="}, now.Add(time.Second),
			[]*applyReq{req("sipgate", "w0", nil, nil)}, "[]", "[]"},
		{"RecordedAgainAfterTTL", []string{"w0=Alice"}, now.Add(userTTL),
			[]*applyReq{req("sipgate", "w0", nil, nil)}, "[w0]", "[]"},
		{"FewerNamesThanIDs", nil, now,
			[]*applyReq{req("sipgate", "", []string{"w0", "w1"}, []string{"Alice"})}, "[w0 w1]", "[Alice ]"},
		{"AnswerNamesWhoAnswered", []string{"w0="}, now.Add(time.Second),
			[]*applyReq{{ev: callstate.Event{Source: "sipgate", Update: callstate.Update{Extension: "w0", PinExtension: true, AnsweredBy: "Alice"}}}},
			"[w0]", "[Alice]"},
		{"SIPEventsHaveNoUsers", nil, now,
			[]*applyReq{req("sip", "101", nil, nil)}, "[]", "[]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c userCache
			for _, r := range tt.remember {
				id, name, _ := strings.Cut(r, "=")
				c.remember([]string{id}, []string{name}, now)
			}
			ids, names := c.pending(tt.batch, tt.at)
			if got := fmt.Sprint(ids); got != tt.wantIDs {
				t.Errorf("ids %v, want %s", ids, tt.wantIDs)
			}
			if got := fmt.Sprint(names); got != tt.wantNames {
				t.Errorf("names %q, want %s", names, tt.wantNames)
			}
		})
	}
}
