package store_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// render is a minimal renderer: every event, its journey as order key.
func render(ep callstate.WebhookEndpoint, ev callstate.FeedEvent) (callstate.WebhookDelivery, bool) {
	if !ep.Wants(ev.Type) {
		return callstate.WebhookDelivery{}, false
	}
	return callstate.WebhookDelivery{MsgID: "msg_" + ev.Type + "_" + ev.JourneyID, JourneyID: ev.JourneyID, OrderKey: ev.JourneyID,
		Type: ev.Type, Body: []byte(`{"from":"` + fromOf(ev) + `"}`), ContentType: "application/json"}, true
}

func fromOf(ev callstate.FeedEvent) string {
	if ev.Call != nil {
		return ev.Call.From
	}
	if ev.Journey != nil {
		return ev.Journey.From
	}
	return ""
}

// TestWebhookDeliveriesInOrder: an endpoint gets deliveries of the events
// after it was made; one call's deliveries are taken one at a time, in
// order, whichever instance takes them; a lease keeps a taken one from
// others; forgetting a number erases its deliveries.
func TestWebhookDeliveriesInOrder(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	if _, err := a.Apply(ctx, sg("before", "newCall", 0, callstate.Update{From: "4917", State: callstate.StateRinging})); err != nil {
		t.Fatal(err)
	}
	syncFeed(t, a)
	ep, err := a.CreateWebhook(ctx, callstate.WebhookEndpoint{URL: "https://example.com/", Secrets: []string{"whsec_x"},
		Format: callstate.FormatStandard, Enabled: true, Types: []string{callstate.EventRinging, callstate.EventEnded}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []callstate.Event{
		sg("o1", "newCall", 0, callstate.Update{From: "4915551", State: callstate.StateRinging}),
		sg("o1", "hangup", 5, callstate.Update{Cause: "cancel", State: callstate.StateEnded}),
		sg("o2", "newCall", 1, callstate.Update{From: "4917", State: callstate.StateRinging}),
	} {
		if _, err := a.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	syncFeed(t, a)
	if n, err := b.MakeDeliveries(ctx, render); err != nil || n != 3 {
		t.Fatalf("made %d: %v", n, err)
	}
	if n, err := a.MakeDeliveries(ctx, render); err != nil || n != 0 {
		t.Fatalf("made again %d: %v", n, err)
	}
	// o1's end waits for its ringing: the first claim has o1 ringing and o2.
	first, err := a.ClaimDeliveries(ctx, 10, time.Minute)
	if err != nil || len(first) != 2 {
		t.Fatalf("claimed %v: %v", first, err)
	}
	var o1 callstate.WebhookDelivery
	for _, c := range first {
		if c.Delivery.JourneyID == "o1" {
			o1 = c.Delivery
		}
		if c.Delivery.Attempts != 1 || c.Endpoint.ID != ep.ID {
			t.Errorf("claimed %+v", c)
		}
	}
	if o1.Type != callstate.EventRinging {
		t.Fatalf("o1's first delivery %+v", o1)
	}
	// Leased: the other instance gets nothing, and o1's end still waits.
	if cs, err := b.ClaimDeliveries(ctx, 10, time.Minute); err != nil || len(cs) != 0 {
		t.Fatalf("second claim %v %v", cs, err)
	}
	now := time.Now()
	if err := a.FinishDeliveries(ctx, []callstate.WebhookDelivery{o1},
		[]callstate.WebhookResult{{Attempt: callstate.WebhookAttempt{At: now, Status: 200}, Delivered: true}}); err != nil {
		t.Fatal(err)
	}
	next, err := b.ClaimDeliveries(ctx, 10, time.Minute)
	if err != nil || len(next) != 1 || next[0].Delivery.JourneyID != "o1" || next[0].Delivery.Type != callstate.EventEnded {
		t.Fatalf("after o1's ringing: %+v %v", next, err)
	}
	// A failed try waits for its time and says why.
	if err := b.FinishDeliveries(ctx, []callstate.WebhookDelivery{next[0].Delivery},
		[]callstate.WebhookResult{{Attempt: callstate.WebhookAttempt{At: now, Status: 500, Error: "answered 500"}, NextAt: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	ds, err := a.WebhookDeliveries(ctx, ep.ID, callstate.DeliveryPending, 10)
	if err != nil || len(ds) != 2 {
		t.Fatalf("pending %+v %v", ds, err)
	}
	var failed callstate.WebhookDelivery
	for _, d := range ds {
		if d.JourneyID == "o1" {
			failed = d
		}
	}
	if failed.LastStatus != 500 || failed.LastError != "answered 500" || failed.Attempts != 1 {
		t.Fatalf("failed delivery %+v", failed)
	}
	if as, err := a.WebhookAttempts(ctx, failed.ID); err != nil || len(as) != 1 || as[0].Status != 500 {
		t.Fatalf("attempts %+v %v", as, err)
	}
	// Erasing the caller's number erases the bodies that hold it.
	if _, _, err := a.ForgetNumber(ctx, "4915551"); err != nil {
		t.Fatal(err)
	}
	all, err := a.WebhookDeliveries(ctx, ep.ID, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range all {
		if strings.Contains(string(d.Body), "4915551") {
			t.Errorf("a delivery still holds the number: %+v", d)
		}
	}
	if len(all) != 1 {
		t.Errorf("%d deliveries left, want o2's", len(all))
	}
}

// TestWebhookReplayBackfill: a replay since a time before the endpoint
// existed makes deliveries of the feed's events written since then that
// the endpoint never had, once, in feed order, by any instance; events
// before since, of other types, and those it already had are left out.
func TestWebhookReplayBackfill(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	a, b := openURL(t, url), openURL(t, url)
	if _, err := a.Apply(ctx, sg("long-ago", "newCall", 0, callstate.Update{From: "4910", State: callstate.StateRinging})); err != nil {
		t.Fatal(err)
	}
	syncFeed(t, a)
	time.Sleep(50 * time.Millisecond)
	since := time.Now()
	for _, ev := range []callstate.Event{
		sg("b1", "newCall", 0, callstate.Update{From: "4911", State: callstate.StateRinging}),
		sg("b1", "hangup", 5, callstate.Update{Cause: "cancel", State: callstate.StateEnded}),
		sg("b2", "newCall", 1, callstate.Update{From: "4912", State: callstate.StateRinging}),
	} {
		if _, err := a.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	syncFeed(t, a)
	ep, err := a.CreateWebhook(ctx, callstate.WebhookEndpoint{URL: "https://example.com/", Secrets: []string{"whsec_x"},
		Format: callstate.FormatStandard, Enabled: true, Types: []string{callstate.EventRinging, callstate.EventEnded}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, sg("after", "newCall", 9, callstate.Update{From: "4913", State: callstate.StateRinging})); err != nil {
		t.Fatal(err)
	}
	syncFeed(t, a)
	if n, err := b.MakeDeliveries(ctx, render); err != nil || n != 1 {
		t.Fatalf("made %d: %v, want the one event after the endpoint was made", n, err)
	}
	if _, err := a.ReplayWebhook(ctx, 999999, since); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replay of no endpoint: %v", err)
	}
	for range 2 { // twice: the second finds nothing new
		if _, err := a.ReplayWebhook(ctx, ep.ID, since); err != nil {
			t.Fatal(err)
		}
		if _, err := b.MakeDeliveries(ctx, render); err != nil {
			t.Fatal(err)
		}
		if _, err := a.MakeDeliveries(ctx, render); err != nil {
			t.Fatal(err)
		}
	}
	all, err := a.WebhookDeliveries(ctx, ep.ID, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range all {
		got = append(got, d.Type+" "+d.JourneyID)
	}
	slices.Sort(got)
	want := []string{"call.ended b1", "call.ringing after", "call.ringing b1", "call.ringing b2"}
	if !slices.Equal(got, want) {
		t.Errorf("deliveries %v, want %v", got, want)
	}
	// The backfilled ones are in feed order among themselves.
	var feedIDs []int64
	for _, d := range all {
		if d.JourneyID != "after" {
			feedIDs = append(feedIDs, d.FeedID)
		}
	}
	slices.Reverse(feedIDs) // WebhookDeliveries lists the newest first
	if !slices.IsSorted(feedIDs) {
		t.Errorf("backfilled feed ids %v out of order", feedIDs)
	}
}

// TestClaimWithStaleStatistics: statistics taken while every delivery was
// done, then 30,000 waiting (an endpoint back after an outage, before
// autovacuum looks again). Claiming must stay a look-up per due delivery:
// a plan that read every waiting delivery for each one took 104 s for
// 15,000. Then the first of each call has failed and waits a minute for
// its next try, and the 20,000 behind them are moved behind them, a window
// at a time. The bound below is a
// hundred times what the claims need, not a measure.
func TestClaimWithStaleStatistics(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ep, err := st.CreateWebhook(ctx, callstate.WebhookEndpoint{URL: "https://example.com/", Secrets: []string{"whsec_x"},
		Format: callstate.FormatStandard, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`ALTER TABLE webhook_delivery SET (autovacuum_enabled = false)`,
		// Three deliveries for each of 10,000 calls, all done.
		`INSERT INTO webhook_delivery (endpoint_id, feed_id, msg_id, order_key, type, body, content_type, status)
		 SELECT $1, g, 'msg_' || g, 'call' || (g / 3), 'call.ringing', '\x7b7d', 'application/json', 'delivered'
		 FROM generate_series(0, 29999) g`,
		`ANALYZE webhook_delivery`,
		`UPDATE webhook_delivery SET status = 'pending', next_at = now() - interval '1 minute'`,
	} {
		args := []any{}
		if strings.Contains(sql, "$1") {
			args = append(args, ep.ID)
		}
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	claimed, err := st.ClaimDeliveries(cctx, 64, time.Minute)
	if err != nil {
		t.Fatalf("claim with 15,000 waiting: %v", err)
	}
	if len(claimed) != 64 {
		t.Fatalf("claimed %d of 64", len(claimed))
	}
	for _, c := range claimed {
		if c.Delivery.FeedID%3 != 0 {
			t.Errorf("claimed %s (feed id %d), not its call's first waiting delivery", c.Delivery.MsgID, c.Delivery.FeedID)
		}
	}

	if _, err := pool.Exec(ctx, `UPDATE webhook_delivery SET next_at = now() + interval '1 minute', attempts = 1, last_status = 503 WHERE feed_id % 3 = 0`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(store.MoveEvery) // the claims look for deliveries to move once a second
	for i := range 2 {
		claimed, err := st.ClaimDeliveries(cctx, 64, time.Minute)
		if err != nil {
			t.Fatalf("claim %d behind 10,000 failed ones: %v", i+1, err)
		}
		if len(claimed) != 0 {
			t.Fatalf("claimed %d behind their calls' first deliveries", len(claimed))
		}
	}
	var due int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM webhook_delivery WHERE status = 'pending' AND next_at <= now()`).Scan(&due); err != nil {
		t.Fatal(err)
	}
	if due != 0 {
		t.Errorf("%d deliveries still due behind their calls' first ones", due)
	}
}

// TestClaimBehindAFailingOne: one call's first delivery fails and waits an
// hour for its next try, 5,000 more of that call are due behind it, and
// 100 other calls have one due delivery each, later. A claim moves the
// call's waiting ones behind its first and sends the others; when the
// first is delivered, the next of the call is due at once.
func TestClaimBehindAFailingOne(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ep, err := st.CreateWebhook(ctx, callstate.WebhookEndpoint{URL: "https://example.com/", Secrets: []string{"whsec_x"},
		Format: callstate.FormatStandard, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `
		INSERT INTO webhook_delivery (endpoint_id, feed_id, msg_id, order_key, type, body, content_type, next_at, attempts, last_status)
		SELECT $1, g, 'msg_busy_' || g, 'busy', 'call.ringing', '\x7b7d', 'application/json',
		       CASE WHEN g = 0 THEN now() + interval '1 hour' ELSE now() - interval '2 minutes' END,
		       CASE WHEN g = 0 THEN 1 ELSE 0 END, CASE WHEN g = 0 THEN 500 ELSE 0 END
		FROM generate_series(0, 4999) g`, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, `
		INSERT INTO webhook_delivery (endpoint_id, feed_id, msg_id, order_key, type, body, content_type, next_at)
		SELECT $1, 10000 + g, 'msg_other_' || g, 'other' || g, 'call.ringing', '\x7b7d', 'application/json', now() - interval '1 minute'
		FROM generate_series(1, 100) g`, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := st.ClaimDeliveries(ctx, 64, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 64 {
		t.Fatalf("claimed %d of 64 other calls' deliveries", len(claimed))
	}
	for _, c := range claimed {
		if c.Delivery.OrderKey == "busy" {
			t.Errorf("claimed %s behind the failing first one", c.Delivery.MsgID)
		}
	}
	var due int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM webhook_delivery WHERE order_key = 'busy' AND status = 'pending' AND next_at <= now()`).Scan(&due); err != nil {
		t.Fatal(err)
	}
	if due != 0 {
		t.Errorf("%d of the failing call's deliveries still due behind it", due)
	}

	// The first one's next try: it is sent, and delivered.
	if _, err := pool.Exec(ctx, `UPDATE webhook_delivery SET next_at = now() - interval '1 second' WHERE msg_id = 'msg_busy_0'`); err != nil {
		t.Fatal(err)
	}
	claimed, err = st.ClaimDeliveries(ctx, 64, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var head []callstate.WebhookDelivery
	for _, c := range claimed {
		if c.Delivery.OrderKey == "busy" {
			head = append(head, c.Delivery)
		}
	}
	if len(head) != 1 || head[0].MsgID != "msg_busy_0" {
		t.Fatalf("claimed of the failing call %+v, want its first only", head)
	}
	err = st.FinishDeliveries(ctx, head, []callstate.WebhookResult{{Delivered: true,
		Attempt: callstate.WebhookAttempt{DeliveryID: head[0].ID, At: time.Now(), Status: 200}}})
	if err != nil {
		t.Fatal(err)
	}
	claimed, err = st.ClaimDeliveries(ctx, 64, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 1 || claimed[0].Delivery.MsgID != "msg_busy_1" {
		var got []string
		for _, c := range claimed {
			got = append(got, c.Delivery.MsgID)
		}
		t.Fatalf("after the first was delivered, claimed %v, want msg_busy_1", got)
	}
}

// TestClaimBehindASlowOne: behind a first try that began over a second
// ago the call's next deliveries are moved; behind one that just began
// they stay due (moving them and back would cost two writes each, and
// most tries are over in milliseconds).
func TestClaimBehindASlowOne(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ep, err := st.CreateWebhook(ctx, callstate.WebhookEndpoint{URL: "https://example.com/", Secrets: []string{"whsec_x"},
		Format: callstate.FormatStandard, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	// The first of each call was claimed with a lease of a minute: 'slow'
	// two seconds ago, 'quick' a fifth of a second ago.
	_, err = pool.Exec(ctx, `
		INSERT INTO webhook_delivery (endpoint_id, feed_id, msg_id, order_key, type, body, content_type, next_at, attempts)
		SELECT $1, k * 10 + g, 'msg_' || c || '_' || g, c, 'call.ringing', '\x7b7d', 'application/json',
		       CASE WHEN g > 0 THEN now() - interval '1 minute'
		            WHEN c = 'slow' THEN now() + interval '58 seconds' ELSE now() + interval '59.8 seconds' END,
		       CASE WHEN g = 0 THEN 1 ELSE 0 END
		FROM (VALUES (1, 'slow'), (2, 'quick')) AS calls(k, c), generate_series(0, 3) g`, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	claimed, err := st.ClaimDeliveries(ctx, 64, time.Minute)
	if err != nil || len(claimed) != 0 {
		t.Fatalf("claimed %d behind tries being made: %v", len(claimed), err)
	}
	due := map[string]int{}
	rows, _ := pool.Query(ctx, `SELECT order_key, count(*) FILTER (WHERE next_at <= now()) FROM webhook_delivery GROUP BY 1`)
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		due[k] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if due["slow"] != 0 || due["quick"] != 3 {
		t.Errorf("due behind the slow try %d (want 0), behind the quick one %d (want 3)", due["slow"], due["quick"])
	}
}

// TestClaimPastADisabledEndpoint: a disabled endpoint's 3,000 due
// deliveries do not keep another endpoint's from being sent, and are due
// again when it is enabled.
func TestClaimPastADisabledEndpoint(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	mk := func(url string) callstate.WebhookEndpoint {
		ep, err := st.CreateWebhook(ctx, callstate.WebhookEndpoint{URL: url, Secrets: []string{"whsec_x"},
			Format: callstate.FormatStandard, Enabled: true})
		if err != nil {
			t.Fatal(err)
		}
		return ep
	}
	off, on := mk("https://off.example.com/"), mk("https://on.example.com/")
	for _, q := range []struct {
		ep    int64
		n     int
		ago   string
		label string
	}{{off.ID, 3000, "2 minutes", "off"}, {on.ID, 10, "1 minute", "on"}} {
		_, err := pool.Exec(ctx, `
			INSERT INTO webhook_delivery (endpoint_id, feed_id, msg_id, order_key, type, body, content_type, next_at)
			SELECT $1, g, 'msg_' || $3 || '_' || g, $3 || g, 'call.ringing', '\x7b7d', 'application/json', now() - $4::interval
			FROM generate_series(1, $2::int) g`, q.ep, q.n, q.label, q.ago)
		if err != nil {
			t.Fatal(err)
		}
	}
	off.Enabled = false
	if off, err = st.UpdateWebhook(ctx, off); err != nil {
		t.Fatal(err)
	}
	claimed, err := st.ClaimDeliveries(ctx, 64, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 10 {
		t.Fatalf("claimed %d, want the enabled endpoint's 10", len(claimed))
	}
	for _, c := range claimed {
		if c.Endpoint.ID != on.ID {
			t.Errorf("claimed %s of the disabled endpoint", c.Delivery.MsgID)
		}
	}
	off.Enabled = true
	if _, err := st.UpdateWebhook(ctx, off); err != nil {
		t.Fatal(err)
	}
	claimed, err = st.ClaimDeliveries(ctx, 64, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 64 || claimed[0].Endpoint.ID != off.ID {
		t.Fatalf("after enabling: claimed %d", len(claimed))
	}
}
