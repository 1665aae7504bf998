package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/sipgateapi/sipgatetest"
	"github.com/callstate/callstate/store/storetest"
)

// postHook posts one sipgate webhook (form fields) to the service.
func postHook(t *testing.T, base string, fields url.Values) {
	t.Helper()
	resp, err := http.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(fields.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("webhook %v: %s", fields, resp.Status)
	}
}

func hook(event, callID string, kv ...string) url.Values {
	v := url.Values{"event": {event}, "callId": {callID}, "direction": {"in"}, "from": {"4915799912345"}, "to": {"4930123456"}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// entry is a CALL entry of the stand-in's history.
func entry(callID string, created time.Time, direction, status, callStatus string, duration int, eps ...sipgatetest.Endpoint) sipgatetest.Entry {
	return sipgatetest.Entry{ID: "h-" + callID, CallID: callID, Type: "CALL", Source: "+4915799912345", Target: "+4930123456",
		Direction: direction, Incoming: !strings.HasSuffix(direction, "OUTGOING"), Status: status, CallStatus: callStatus,
		Created: created, LastModified: created.Add(time.Duration(duration+15) * time.Second), Duration: duration,
		Labels: []string{}, ConnectionID: []string{}, Endpoints: append([]sipgatetest.Endpoint{}, eps...)}
}

// TestReconcileScenarios runs two instances reconciling against one
// database with a sipgate stand-in, through the real webhook endpoint:
// hangups lost after the answer and while ringing, an answered call
// sipgate no longer lists, 20 calls only the history has, a disagreeing
// entry, a forward and a voicemail learned only from the history, an
// erased call, sipgate unreachable for a while. Once sipgate answers, no
// call is left stuck within two intervals (and the client's retry in
// flight); every fill is journaled once; the day's answered, missed and
// voicemail counts equal the hand count.
func TestReconcileScenarios(t *testing.T) {
	const interval = 2 * time.Second
	s := sipgatetest.New(t)
	s.SetDown(true) // sipgate unreachable while the webhooks come
	dbURL := storetest.NewDatabase(t)
	env := func(id string) map[string]string {
		return map[string]string{"DATABASE_URL": dbURL, "SIPGATE_VERIFY_SIGNATURE": "false", "LOG_LEVEL": "warn",
			"INSTANCE_ID": id, "SIPGATE_TOKEN_ID": sipgatetest.TokenID, "SIPGATE_TOKEN": sipgatetest.Token,
			"SIPGATE_API_URL": s.URL + "/v2", "SIPGATE_RECONCILE_INTERVAL": interval.String(),
			"PHONE_REGION": "DE", "STATS_TIME_ZONE": "UTC"}
	}
	a, _, _ := startService(t, env("a"))
	b, _, _ := startService(t, env("b"))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	now := time.Now().UTC().Truncate(time.Second)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	// The webhooks that came, to either instance.
	postHook(t, a, hook("newCall", "r-ans", "user[]", "Alice", "userId[]", "w0"))
	postHook(t, b, hook("answer", "r-ans", "user", "Alice", "userId", "w0", "answeringNumber", "4930123456"))
	postHook(t, a, hook("newCall", "r-ring", "user[]", "Alice", "userId[]", "w0"))
	postHook(t, a, hook("newCall", "r-gone", "user[]", "Bob", "userId[]", "w1"))
	postHook(t, b, hook("answer", "r-gone", "user", "Bob", "userId", "w1", "answeringNumber", "4930123457"))
	postHook(t, a, hook("newCall", "r-live", "user[]", "Bob", "userId[]", "w1"))
	postHook(t, b, hook("answer", "r-live", "user", "Bob", "userId", "w1", "answeringNumber", "4930123457"))
	postHook(t, a, hook("newCall", "r-dis", "user[]", "Alice", "userId[]", "w0"))
	postHook(t, b, hook("hangup", "r-dis", "cause", "cancel"))
	postHook(t, a, hook("newCall", "r-erase", "from", "4917100000001"))
	postHook(t, a, hook("hangup", "r-erase", "from", "4917100000001", "cause", "cancel"))
	if err := run(ctx, []string{"forget", "4917100000001", "-env-file", "/dev/null"}, envFunc(env("cli")), &lockedBuffer{}); err != nil {
		t.Fatalf("forget: %v", err)
	}
	s.SetLive("r-live")

	// sipgate's record: one entry per leg.
	type want struct{ answered, missed, voicemail int }
	var hand want
	add := func(e sipgatetest.Entry, counts string) {
		s.AddHistory(e)
		switch counts {
		case "answered":
			hand.answered++
		case "missed":
			hand.missed++
		case "voicemail":
			hand.voicemail++
		}
	}
	add(entry("r-ans", ago(10*time.Second), "INCOMING", "PICKUP", "SUCCESS", 3, sipgatetest.Ext("ROUTED", "w0", "USER")), "answered")
	add(entry("r-ring", ago(10*time.Second), "MISSED_INCOMING", "NOPICKUP", "MISSED", 0), "missed")
	add(entry("r-dis", ago(10*time.Second), "INCOMING", "PICKUP", "SUCCESS", 30), "missed") // the webhook's cancel stands
	add(entry("r-erase", ago(10*time.Second), "MISSED_INCOMING", "NOPICKUP", "MISSED", 0), "")
	for i := range 20 {
		id := fmt.Sprintf("h-only-%02d", i)
		at := ago(time.Duration(40-i) * time.Minute)
		switch i % 4 {
		case 0, 1:
			add(entry(id, at, "INCOMING", "PICKUP", "SUCCESS", 60+i, sipgatetest.Ext("ROUTED", "w0", "USER")), "answered")
		case 2:
			add(entry(id, at, "MISSED_INCOMING", "NOPICKUP", "MISSED", 0), "missed")
		case 3:
			add(entry(id, at, "INCOMING", "PICKUP", "VOICEMAIL_NO_MESSAGE", 20, sipgatetest.Ext("FORWARDED", "v0", "VOICEMAIL")), "voicemail")
		}
	}
	add(entry("h-fwd", ago(5*time.Minute), "INCOMING", "FORWARD", "", 0, sipgatetest.Ext("FORWARDED", "e5", "PHONE")), "")
	add(entry("h-vm", ago(4*time.Minute), "MISSED_INCOMING", "NOPICKUP", "", 0), "voicemail")
	s.AddHistory(sipgatetest.Entry{ID: "vm-1", Type: "VOICEMAIL", Source: "+4915799912345", Target: "+4930123456",
		Created: ago(4*time.Minute - 20*time.Second), LastModified: ago(3 * time.Minute), Duration: 12, Labels: []string{}})

	// sipgate stays unreachable a while: rounds fail, nothing stored is harmed.
	waitUntil(t, 20*time.Second, "a failed round counted", func() (bool, string) {
		n := mustMetric(t, a, "callstate_reconcile_failures_total", nil) + mustMetric(t, b, "callstate_reconcile_failures_total", nil)
		return n >= 1, fmt.Sprint(n, " failures")
	})
	if st := callState(t, conn, "r-ans"); st.state != "answered" {
		t.Fatalf("while sipgate is unreachable r-ans is %+v", st)
	}

	time.Sleep(interval) // r-gone has been answered for longer than an interval
	s.SetDown(false)
	took := waitUntil(t, 2*interval+5*time.Second, "no stuck call", func() (bool, string) {
		var active []string
		rows, _ := conn.Query(ctx, `SELECT call_key FROM call_state WHERE state <> 'ended' ORDER BY 1`)
		active, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return len(active) == 1 && active[0] == "r-live", fmt.Sprint("active: ", active)
	})
	t.Logf("no stuck call %s after sipgate answered again (interval %s)", took.Round(100*time.Millisecond), interval)
	// The API agrees: only the call sipgate still lists is active.
	var page struct {
		Calls []struct {
			Key string `json:"key"`
		} `json:"calls"`
	}
	getJSON(t, a+"/api/calls?active=true", &page)
	if len(page.Calls) != 1 || page.Calls[0].Key != "r-live" {
		t.Errorf("/api/calls?active=true: %+v, want r-live alone", page.Calls)
	}
	// Let every h-only call be created, then a few more rounds run on
	// both instances: nothing is done twice.
	waitUntil(t, 3*interval+5*time.Second, "the history's calls created", func() (bool, string) {
		var n int
		conn.QueryRow(ctx, `SELECT count(*) FROM call_state WHERE learned`).Scan(&n)
		return n == 22, fmt.Sprint(n, " learned")
	})
	time.Sleep(3 * interval)

	for key, w := range map[string]struct {
		state, cause string
		answered     bool
		learned      bool
	}{
		"r-ans":     {"ended", "normalClearing", true, false},
		"r-ring":    {"ended", "noAnswer", false, false},
		"r-gone":    {"ended", "normalClearing", true, false},
		"r-live":    {"answered", "", true, false},
		"r-dis":     {"ended", "cancel", false, false},
		"h-fwd":     {"ended", "forwarded", false, true},
		"h-vm":      {"ended", "normalClearing", true, true},
		"h-only-00": {"ended", "normalClearing", true, true},
		"h-only-02": {"ended", "noAnswer", false, true},
	} {
		got := callState(t, conn, key)
		if got.state != w.state || got.cause != w.cause || got.answered != w.answered || got.learned != w.learned {
			t.Errorf("%s: %+v, want %+v", key, got, w)
		}
	}
	if got := callState(t, conn, "r-erase"); got.state != "" {
		t.Errorf("the erased call came back: %+v", got)
	}
	// r-ans ended at its answer plus sipgate's duration.
	var talk float64
	conn.QueryRow(ctx, `SELECT extract(epoch FROM ended_at - answered_at) FROM call_state WHERE call_key = 'r-ans'`).Scan(&talk)
	if talk != 3 {
		t.Errorf("r-ans talked %vs, want sipgate's 3", talk)
	}
	// Every fill is journaled once, whichever instance made it.
	rows, _ := conn.Query(ctx, `SELECT call_key, count(*) FROM call_event WHERE type = 'reconciled' GROUP BY 1 HAVING count(*) > 1`)
	twice, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(twice) > 0 {
		t.Errorf("filled more than once: %v %v", twice, err)
	}
	var fills int
	conn.QueryRow(ctx, `SELECT count(*) FROM call_event WHERE type = 'reconciled'`).Scan(&fills)
	if fills != 3+22 { // r-ans, r-ring, r-gone; 20 + h-fwd + h-vm created
		t.Errorf("%d fills journaled, want 25", fills)
	}
	// The day's numbers equal the hand count of sipgate's record.
	var got want
	if err := conn.QueryRow(ctx, `SELECT sum(answered), sum(missed), sum(voicemail) FROM journey_stats_day WHERE user_id = ''`).
		Scan(&got.answered, &got.missed, &got.voicemail); err != nil {
		t.Fatal(err)
	}
	// r-gone was never in the history: answered by the webhooks. r-live is active.
	hand.answered++
	if got != hand {
		t.Errorf("day's answered/missed/voicemail %+v, want the hand count %+v", got, hand)
	}
	metrics := func(name string) float64 {
		return mustMetric(t, a, name, nil) + mustMetric(t, b, name, nil)
	}
	if n := metrics("callstate_reconcile_calls_created_total"); n != 22 {
		t.Errorf("created %v, want 22", n)
	}
	if n := metrics("callstate_reconcile_calls_ended_total"); n != 3 {
		t.Errorf("ended %v, want 3", n)
	}
	if n := metrics("callstate_reconcile_calls_disagreeing_total"); n < 1 || n > 2 {
		t.Errorf("disagreeing %v, want r-dis counted (once per instance at most)", n)
	}
	for _, base := range []string{a, b} {
		if last := mustMetric(t, base, "callstate_reconcile_last_success_timestamp_seconds", nil); time.Since(time.Unix(int64(last), 0)) > 3*interval {
			t.Errorf("%s: last success %v", base, time.Unix(int64(last), 0))
		}
	}
}

type callStateRow struct {
	state, cause      string
	answered, learned bool
}

func callState(t *testing.T, conn *pgx.Conn, key string) callStateRow {
	t.Helper()
	var r callStateRow
	err := conn.QueryRow(context.Background(), `SELECT state::text, hangup_cause, answered_at IS NOT NULL, learned
		FROM call_state WHERE source = 'sipgate' AND call_key = $1`, key).Scan(&r.state, &r.cause, &r.answered, &r.learned)
	if err != nil && err != pgx.ErrNoRows {
		t.Fatal(err)
	}
	return r
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	took, ok, last := waitFor(limit, cond)
	if !ok {
		t.Fatalf("not within %s: %s (%s)", limit, what, last)
	}
	return took
}

// TestReconcileCommand: "callstate reconcile -since" backfills from the
// history, a date meaning its midnight in STATS_TIME_ZONE, prints what it
// filled, and fills nothing twice; without a token or with a bad time it
// says what is wrong; a missing scope is named.
func TestReconcileCommand(t *testing.T) {
	s := sipgatetest.New(t)
	dbURL := storetest.NewDatabase(t)
	env := map[string]string{"DATABASE_URL": dbURL, "SIPGATE_TOKEN_ID": sipgatetest.TokenID, "SIPGATE_TOKEN": sipgatetest.Token,
		"SIPGATE_API_URL": s.URL + "/v2", "STATS_TIME_ZONE": "Europe/Berlin", "LOG_LEVEL": "warn"}
	midnight := time.Date(2026, 12, 1, 0, 0, 0, 0, time.FixedZone("CET", 3600))
	s.AddHistory(
		entry("before", midnight.Add(-30*time.Minute), "MISSED_INCOMING", "NOPICKUP", "MISSED", 0),
		entry("after-1", midnight.Add(30*time.Minute), "INCOMING", "PICKUP", "SUCCESS", 90),
		entry("after-2", midnight.Add(90*time.Minute), "MISSED_INCOMING", "NOPICKUP", "MISSED", 0),
	)
	out, err := runCLI(t, env, "reconcile", "-since", "2026-12-01", "-env-file", os.DevNull)
	if err != nil {
		t.Fatalf("reconcile: %v\n%s", err, out)
	}
	for _, want := range []string{"created  after-1  answered", "created  after-2  missed", "2 history entries", "0 calls ended, 2 created"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "before") {
		t.Errorf("reconciled a call before the 1st in Berlin:\n%s", out)
	}
	out, err = runCLI(t, env, "reconcile", "-since", "2026-12-01T00:00:00+01:00", "-env-file", os.DevNull)
	if err != nil || !strings.Contains(out, "0 calls ended, 0 created") {
		t.Errorf("again: %v\n%s", err, out)
	}

	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"ErrNoToken", map[string]string{"DATABASE_URL": dbURL}, []string{"-since", "2026-12-01"}, 2, "SIPGATE_TOKEN_ID"},
		{"ErrNoSince", env, nil, 2, "-since"},
		{"ErrBadSince", env, []string{"-since", "yesterday"}, 2, "RFC 3339"},
		{"ErrFuture", env, []string{"-since", "2999-01-01"}, 2, "not in the past"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCLI(t, tt.env, append(append([]string{"reconcile"}, tt.args...), "-env-file", os.DevNull)...)
			if exitCode(err) != tt.code || !strings.Contains(fmt.Sprint(err), tt.want) {
				t.Errorf("exit %d, %v; want %d naming %q", exitCode(err), err, tt.code, tt.want)
			}
		})
	}
	t.Run("ErrForbiddenNamesScope", func(t *testing.T) {
		s.Revoke("history:read")
		_, err := runCLI(t, env, "reconcile", "-since", "2026-12-01", "-env-file", os.DevNull)
		if err == nil || !strings.Contains(err.Error(), "history:read") {
			t.Errorf("err = %v, want the scope named", err)
		}
	})
}
