package handlers_test

import (
	"context"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
)

// todayJSON is what these tests read of GET /api/today.
type todayJSON struct {
	Day            string   `json:"day"`
	CallsIn        int      `json:"calls_in"`
	Answered       int      `json:"answered"`
	Missed         int      `json:"missed"`
	Voicemail      int      `json:"voicemail"`
	MissedOpen     int      `json:"missed_not_called_back"`
	Abandoned      int      `json:"abandoned"`
	ShortAbandoned int      `json:"short_abandoned"`
	ServiceLevel   *float64 `json:"service_level"`
	SLASeconds     float64  `json:"sla_seconds"`
	MissedCalls    []struct {
		JourneyID string `json:"journey_id"`
		Number    string `json:"number"`
		Outcome   string `json:"outcome"`
	} `json:"missed_calls"`
	Thresholds struct {
		Levels map[string]struct{ Warn, Bad float64 } `json:"levels"`
	} `json:"thresholds"`
}

// returnJSON is a call to return as GET /api/missed shows it.
type returnJSON struct {
	JourneyID    string     `json:"journey_id"`
	Outcome      string     `json:"outcome"`
	Number       string     `json:"number"`
	CalledBack   bool       `json:"called_back"`
	CalledBackAt *time.Time `json:"called_back_at"`
	DoneAt       *time.Time `json:"done_at"`
	DoneBy       string     `json:"done_by"`
}

func near(a *float64, b float64) bool { return a != nil && math.Abs(*a-b) < 1e-9 }

// TestCallsToReturnAndServiceLevel is a team's day in Berlin, posted
// through the webhook with a clock, counted by hand:
//
//	10:00 4917001 offered to w1, w2; w1 answers at 5 s      answered, within the SLA (20 s)
//	10:10 4917002 offered to w1, w2; w2 answers at 30 s     answered, not within
//	10:20 4917003 offered to w1, w2; hangs up at 3 s        abandoned, short (< 5 s)
//	10:30 4917004 offered to w1, w2; hangs up at 40 s       abandoned
//	11:00 4917005 offered to w1; voicemail at 20 s          voicemail, not within
//
// Team: 5 in, 2 answered, 2 missed, 2 abandoned (1 short), 1 voicemail;
// service level = answered within 20 s / offered without short abandons =
// 1 / 4. w1 could have answered 10:00, 10:20, 10:30 and 11:00 (not 10:10,
// which w2 answered): answer ratio 1 / 4, service level 1 / 3 (10:20 is a
// short abandon). w2: 10:10, 10:20, 10:30: ratio 1 / 3, service level 0 / 2.
//
// Then the voicemail stays a call to return until a call back is
// answered (while that call is still going on); a missed call at 23:46
// stays open past midnight, when today's counts start again from zero; a
// lead marks one done.
func TestCallsToReturnAndServiceLevel(t *testing.T) {
	db := storetest.NewDatabase(t)
	clk := &clock{}
	in := newInstanceClock(t, db, handlers.DashboardOptions{}, handlers.StreamOptions{}, clk.now)
	ctx := context.Background()
	if _, err := in.store.SetTimeZone(ctx, "Europe/Berlin"); err != nil {
		t.Fatal(err)
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(d, h, m, s int) time.Time { return time.Date(2026, 11, d, h, m, s, 0, berlin) }
	post := func(when time.Time, form url.Values) {
		t.Helper()
		clk.set(when)
		in.post(t, form.Encode())
	}
	both := []string{"Ann", "Ben"}
	bothIDs := []string{"w1", "w2"}
	in1 := func(id, from string, when time.Time) {
		post(when, fNew(id, id, "in", from, "4930555", both, bothIDs))
	}
	in1("d1", "4917001", at(24, 10, 0, 0))
	post(at(24, 10, 0, 5), fAnswer("d1", "d1", "Ann", "w1", "4930555"))
	post(at(24, 10, 2, 0), fHangup("d1", "d1", "normalClearing"))
	in1("d2", "4917002", at(24, 10, 10, 0))
	post(at(24, 10, 10, 30), fAnswer("d2", "d2", "Ben", "w2", "4930555"))
	post(at(24, 10, 12, 0), fHangup("d2", "d2", "normalClearing"))
	in1("d3", "4917003", at(24, 10, 20, 0))
	post(at(24, 10, 20, 3), fHangup("d3", "d3", "cancel"))
	in1("d4", "4917004", at(24, 10, 30, 0))
	post(at(24, 10, 30, 40), fHangup("d4", "d4", "cancel"))
	post(at(24, 11, 0, 0), fNew("d5", "d5", "in", "4917005", "4930555", []string{"Ann"}, []string{"w1"}))
	post(at(24, 11, 0, 19), fHangup("d5", "d5", "forwarded"))
	post(at(24, 11, 0, 19), fNew("d5v", "d5", "in", "4917005", "4930555", []string{"voicemail"}, nil))
	post(at(24, 11, 0, 20), fAnswer("d5v", "d5", "", "", ""))
	post(at(24, 11, 1, 0), fHangup("d5v", "d5", "normalClearing"))
	syncJourneys(t, in)

	today := func(now time.Time) todayJSON {
		t.Helper()
		clk.set(now)
		var td todayJSON
		if code, body := get(t, in, "/api/today", nil, &td); code != 200 {
			t.Fatalf("GET /api/today: %d %s", code, body)
		}
		return td
	}
	td := today(at(24, 12, 0, 0))
	if td.Day != "2026-11-24" || td.CallsIn != 5 || td.Answered != 2 || td.Missed != 2 || td.Voicemail != 1 ||
		td.Abandoned != 2 || td.ShortAbandoned != 1 || !near(td.ServiceLevel, 0.25) || td.SLASeconds != 20 {
		t.Errorf("today %+v, service level %v; want 5 in, 2 answered, 2 missed, 1 voicemail, 2 abandoned, 1 short, service level 0.25", td, deref(td.ServiceLevel))
	}
	if lv := td.Thresholds.Levels["service_level"]; lv.Warn != 0.9 || lv.Bad != 0.8 {
		t.Errorf("thresholds %+v; want the default service_level=0.9:0.8", td.Thresholds)
	}

	var stats struct {
		Stats []struct {
			UserID         string   `json:"user_id"`
			Answered       int64    `json:"answered"`
			Ratio          *float64 `json:"answer_ratio"`
			Abandoned      int64    `json:"abandoned"`
			ShortAbandoned int64    `json:"short_abandoned"`
			ServiceLevel   *float64 `json:"service_level"`
		} `json:"stats"`
	}
	if code, body := get(t, in, "/api/stats?from=2026-11-24&to=2026-11-24", nil, &stats); code != 200 || len(stats.Stats) != 3 {
		t.Fatalf("GET /api/stats: %d %s", code, body)
	}
	want := map[string]struct {
		answered, abandoned, short int64
		ratio, sl                  float64
	}{
		"":   {2, 2, 1, 2.0 / 5, 1.0 / 4},
		"w1": {1, 2, 1, 1.0 / 4, 1.0 / 3},
		"w2": {1, 2, 1, 1.0 / 3, 0},
	}
	for _, s := range stats.Stats {
		w := want[s.UserID]
		if s.Answered != w.answered || s.Abandoned != w.abandoned || s.ShortAbandoned != w.short || !near(s.Ratio, w.ratio) || !near(s.ServiceLevel, w.sl) {
			t.Errorf("stats of %q: answered %d abandoned %d short %d ratio %v service level %v; want %+v",
				s.UserID, s.Answered, s.Abandoned, s.ShortAbandoned, deref(s.Ratio), deref(s.ServiceLevel), w)
		}
	}

	// A call learned only from sipgate's history (its webhooks never came)
	// has no wait anyone saw: counted in, answered, but not in the service
	// level.
	learned := callstate.Event{Source: callstate.SourceSipgate, Type: "history", DedupKey: "history:h1", ReceivedAt: at(24, 18, 0, 0),
		Payload: []byte(`{}`), Update: callstate.Update{Key: "h1", CallID: "h1", Learned: true, Direction: callstate.DirectionIn,
			From: "4917099", To: "4930555", Users: []string{"Ann"}, UserIDs: []string{"w1"}, Extension: "w1", PinExtension: true,
			AnsweredBy: "Ann", State: callstate.StateEnded, Cause: "normalClearing",
			StartedAt: at(24, 15, 0, 0), AnsweredAt: at(24, 15, 0, 3), EndedAt: at(24, 15, 2, 0)}}
	if _, err := in.store.Apply(ctx, learned); err != nil {
		t.Fatal(err)
	}
	syncJourneys(t, in)
	if code, body := get(t, in, "/api/stats?from=2026-11-24&to=2026-11-24&user=", nil, &stats); code != 200 || len(stats.Stats) != 1 ||
		stats.Stats[0].Answered != 3 || !near(stats.Stats[0].ServiceLevel, 1.0/4) {
		t.Errorf("with a learned call: %d %s; want 3 answered and service level still 0.25", code, body)
	}

	// SLA_SECONDS 30: the call answered at 30 s counts as within, once
	// the stats are computed again.
	if changed, err := in.store.SetServiceLevel(ctx, 30*time.Second, 5*time.Second); err != nil || !changed {
		t.Fatalf("SetServiceLevel: %t, %v", changed, err)
	}
	if changed, err := in.store.SetServiceLevel(ctx, 30*time.Second, 5*time.Second); err != nil || changed {
		t.Fatalf("SetServiceLevel again: %t, %v; want no change", changed, err)
	}
	if code, body := get(t, in, "/api/stats?from=2026-11-24&to=2026-11-24&user=", nil, &stats); code != 200 || len(stats.Stats) != 1 ||
		!near(stats.Stats[0].ServiceLevel, 2.0/4) || stats.Stats[0].Answered != 3 {
		t.Errorf("with SLA 30 s: %d %s; want service level 0.5", code, body)
	}
	if _, err := in.store.SetServiceLevel(ctx, 20*time.Second, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	open := func() map[string]returnJSON {
		t.Helper()
		var out struct {
			Missed []returnJSON `json:"missed"`
		}
		if code, body := get(t, in, "/api/missed?open=true", nil, &out); code != 200 {
			t.Fatalf("GET /api/missed: %d %s", code, body)
		}
		m := map[string]returnJSON{}
		for _, r := range out.Missed {
			m[r.Number] = r
		}
		return m
	}
	o := open()
	if len(o) != 3 || o["4917003"].Outcome != "missed" || o["4917004"].Outcome != "missed" || o["4917005"].Outcome != "voicemail" {
		t.Fatalf("open calls to return %+v; want 4917003, 4917004 missed and 4917005 voicemail", o)
	}

	// A call back to the voicemail's caller: ringing, it is still to
	// return; answered, it is not, though the call goes on.
	post(at(24, 13, 0, 0), fNew("b5", "", "out", "4930555", "4917005", []string{"Ann"}, []string{"w1"}))
	syncJourneys(t, in)
	if _, ok := open()["4917005"]; !ok {
		t.Error("voicemail of 4917005 not to return while the call back rings")
	}
	post(at(24, 13, 0, 9), fAnswer("b5", "", "Ann", "w1", ""))
	syncJourneys(t, in)
	if r, ok := open()["4917005"]; ok {
		t.Errorf("voicemail of 4917005 still to return once the call back was answered: %+v", r)
	}
	var all struct {
		Missed []returnJSON `json:"missed"`
	}
	get(t, in, "/api/missed?open=false", nil, &all)
	for _, r := range all.Missed {
		if r.Number == "4917005" && (!r.CalledBack || r.CalledBackAt == nil || !r.CalledBackAt.Equal(at(24, 13, 0, 9))) {
			t.Errorf("voicemail of 4917005: %+v; want called back at the answer, 13:00:09", r)
		}
	}

	// A missed call at 23:46 (22:46 UTC) is today's; past midnight in
	// Berlin (23:00 UTC) the day's counts start again, and it stays open.
	in1("n6", "4917006", at(24, 23, 46, 0))
	post(at(24, 23, 46, 25), fHangup("n6", "n6", "noAnswer"))
	syncJourneys(t, in)
	td = today(at(24, 23, 50, 0))
	if td.Day != "2026-11-24" || td.Missed != 3 || len(td.MissedCalls) != 4 {
		t.Errorf("at 23:50: %+v; want day 2026-11-24, 3 missed, 4 calls to return listed", td)
	}
	// 00:30 in Berlin is 23:30 UTC of the day before: the new day's.
	in1("n7", "4917007", at(25, 0, 30, 0))
	post(at(25, 0, 30, 4), fAnswer("n7", "n7", "Ann", "w1", "4930555"))
	post(at(25, 0, 31, 0), fHangup("n7", "n7", "normalClearing"))
	syncJourneys(t, in)
	td = today(at(25, 0, 40, 0))
	if td.Day != "2026-11-25" || td.CallsIn != 1 || td.Answered != 1 || td.Missed != 0 || len(td.MissedCalls) != 0 ||
		td.Abandoned != 0 || !near(td.ServiceLevel, 1) {
		t.Errorf("at 00:40: %+v; want day 2026-11-25 with the 00:30 call alone", td)
	}
	o = open()
	if _, ok := o["4917006"]; !ok || len(o) != 3 {
		t.Errorf("after midnight, open calls to return %+v; want 4917003, 4917004, 4917006", o)
	}

	// A lead marks 4917004 done: it leaves the open list, with who did it.
	id := o["4917004"].JourneyID
	path := "/api/missed/" + url.PathEscape(id) + "/done"
	clk.set(at(25, 8, 0, 0))
	if code, body := postJSON(t, in, path, "application/json", `{"by": "Lena Lead"}`); code != 201 || !contains(body, `"done_by":"Lena Lead"`) {
		t.Errorf("POST %s: %d %s; want 201 with done_by", path, code, body)
	}
	clk.set(at(25, 8, 5, 0))
	if code, body := postJSON(t, in, path, "application/json", `{"by": "Other"}`); code != 200 || !contains(body, `"done_by":"Lena Lead"`) {
		t.Errorf("POST %s again: %d %s; want 200 with the first mark", path, code, body)
	}
	o = open()
	if _, ok := o["4917004"]; ok || len(o) != 2 {
		t.Errorf("after the mark, open calls to return %+v", o)
	}
	get(t, in, "/api/missed?open=false", nil, &all)
	for _, r := range all.Missed {
		if r.Number == "4917004" && (r.DoneBy != "Lena Lead" || r.DoneAt == nil || !r.DoneAt.Equal(at(25, 8, 0, 0))) {
			t.Errorf("marked call %+v", r)
		}
	}

	// Bad marks are refused and store nothing.
	for _, c := range []struct {
		name, path, ct, body string
		code                 int
		want                 string
	}{
		{"ErrUnknownJourney", "/api/missed/nope/done", "application/json", `{"by":"Lena"}`, 404, "no missed or voicemail call"},
		{"ErrAnsweredJourney", "/api/missed/d1/done", "application/json", `{"by":"Lena"}`, 404, "no missed or voicemail call"},
		{"ErrNoBy", path, "application/json", `{"by":"  "}`, 400, "by must name who"},
		{"ErrLongBy", "/api/missed/d3/done", "application/json", `{"by":"` + strings.Repeat("x", 101) + `"}`, 400, "1 to 100 characters"},
		{"ErrControlBy", "/api/missed/d3/done", "application/json", `{"by":"a\u0007b"}`, 400, "no control characters"},
		{"ErrUnknownField", "/api/missed/d3/done", "application/json", `{"by":"Lena","who":1}`, 400, "body must be a JSON object"},
		{"ErrNotJSON", "/api/missed/d3/done", "text/plain", `by=Lena`, 415, "Content-Type must be application/json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body := postJSON(t, in, c.path, c.ct, c.body)
			if code != c.code || !contains(body, c.want) {
				t.Errorf("POST %s %s: %d %s; want %d with %q", c.path, c.body, code, body, c.code, c.want)
			}
		})
	}
	if _, ok := open()["4917003"]; !ok {
		t.Error("4917003 no longer open after refused marks")
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
