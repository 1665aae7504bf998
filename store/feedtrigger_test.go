package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store/storetest"
)

// feedCallReference is callstate_feed_call as migration 028 wrote it (a
// union of the transitions, a set difference of the presses, one sort),
// writing to call_feed_reference instead of the feed: the reference the
// leaner trigger (migration 037) must equal row for row.
const feedCallReference = `
CREATE TABLE call_feed_reference (LIKE call_feed INCLUDING DEFAULTS);
ALTER TABLE call_feed_reference ALTER COLUMN seq SET DEFAULT nextval('call_feed_reference_seq');
CREATE FUNCTION callstate_feed_call_reference() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    IF TG_OP = 'UPDATE' AND
       (OLD.call_id, OLD.orig_call_id, OLD.extension, OLD.direction, OLD.from_party, OLD.to_party,
        OLD.users, OLD.user_ids, OLD.full_user_ids, OLD.answered_by, OLD.answering_number,
        OLD.diversion, OLD.xcid, OLD.state, OLD.on_hold, OLD.hangup_cause, OLD.dtmf_presses,
        OLD.started_at, OLD.answered_at, OLD.ended_at)
       IS NOT DISTINCT FROM
       (NEW.call_id, NEW.orig_call_id, NEW.extension, NEW.direction, NEW.from_party, NEW.to_party,
        NEW.users, NEW.user_ids, NEW.full_user_ids, NEW.answered_by, NEW.answering_number,
        NEW.diversion, NEW.xcid, NEW.state, NEW.on_hold, NEW.hangup_cause, NEW.dtmf_presses,
        NEW.started_at, NEW.answered_at, NEW.ended_at) THEN
        RETURN NULL;
    END IF;
    INSERT INTO call_feed_reference (type, at, journey_id, source, call_key, data, call_id, state, on_hold,
                                     answered_at, ended_at, cause, answered_by, change_seq, updated_at)
    SELECT e.type, coalesce(e.at, NEW.updated_at), NEW.journey_id, NEW.source, NEW.call_key, e.extra,
           NEW.id, NEW.state, NEW.on_hold, NEW.answered_at, NEW.ended_at, NEW.hangup_cause,
           NEW.answered_by, NEW.change_seq, NEW.updated_at
    FROM (
        SELECT 1 AS ord, '' AS k, 'call.ringing' AS type, NEW.started_at AS at, NULL::jsonb AS extra
        WHERE TG_OP = 'INSERT'
        UNION ALL
        SELECT 2, '', 'call.answered', NEW.answered_at, NULL
        WHERE NEW.answered_at IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.answered_at IS NULL)
        UNION ALL
        SELECT 3, '', 'call.held', NEW.hold_at, NULL
        WHERE NEW.state <> 'ended' AND (CASE WHEN TG_OP = 'INSERT' THEN NEW.on_hold ELSE OLD.on_hold <> NEW.on_hold END)
        UNION ALL
        SELECT 4, p.k, 'call.dtmf', to_timestamp(split_part(p.k, ':', 1)::bigint / 1000000.0),
               jsonb_build_object('press', p.k)
        FROM (SELECT unnest(NEW.dtmf_presses) AS k
              EXCEPT
              SELECT unnest(CASE WHEN TG_OP = 'INSERT' THEN '{}'::text[] ELSE OLD.dtmf_presses END)) p
        UNION ALL
        SELECT 5, '', 'call.ended', NEW.ended_at, NULL
        WHERE NEW.state = 'ended' AND (TG_OP = 'INSERT' OR OLD.state <> 'ended')
    ) e
    ORDER BY e.ord, e.k;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        INSERT INTO call_feed_reference (type, at, journey_id, source, call_key, call_id, state, on_hold,
                                         answered_at, ended_at, cause, answered_by, change_seq, updated_at)
        VALUES ('call.updated', NEW.updated_at, NEW.journey_id, NEW.source, NEW.call_key,
                NEW.id, NEW.state, NEW.on_hold, NEW.answered_at, NEW.ended_at, NEW.hangup_cause,
                NEW.answered_by, NEW.change_seq, NEW.updated_at);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER call_state_feed_reference AFTER INSERT OR UPDATE ON call_state
    FOR EACH ROW EXECUTE FUNCTION callstate_feed_call_reference();`

// TestFeedCallTriggerAsReference: the call events the feed's trigger
// writes (migration 037) are those of the previous trigger, row for row
// and in the same order, over calls with every transition: rung, answered
// (also in the first event), held and taken back, several presses in one
// event and one at a time (also repeated), hung up, written in every
// order, repeated, updates that change only what no event names, and a
// row written whole again from its journal.
func TestFeedCallTriggerAsReference(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	<-st.Ready()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE SEQUENCE call_feed_reference_seq`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, feedCallReference); err != nil {
		t.Fatal(err)
	}
	held, notHeld := true, false
	sip := func(key string, sec int, u callstate.Update) callstate.Event {
		u.Key = key
		return callstate.Event{Source: callstate.SourceSIP, Type: "dialog", DedupKey: fmt.Sprintf("%s/%d", key, sec),
			ReceivedAt: t0.Add(time.Duration(sec) * time.Second), Payload: []byte("<dialog/>"), Update: u}
	}
	var evs []callstate.Event
	for i, order := range permutations(4) {
		key := fmt.Sprintf("perm%d", i)
		all := callEvents(key)
		all[2].Update.DTMF = "4213" // several presses in one event
		for _, j := range order {
			evs = append(evs, all[j], all[j]) // each twice: the second changes nothing
		}
	}
	for _, key := range []string{"hold1", "hold2"} {
		u := func(s callstate.State, h *bool) callstate.Update {
			return callstate.Update{CallID: key, Extension: "101", Direction: callstate.DirectionIn, From: "4917", To: "101", State: s, OnHold: h}
		}
		evs = append(evs,
			sip(key, 0, u(callstate.StateAnswered, &held)), // answered and held in the first event
			sip(key, 1, u(callstate.StateAnswered, &notHeld)),
			sip(key, 2, u(callstate.StateAnswered, &held)),
			sip(key, 3, callstate.Update{DTMF: "1"}),
			sip(key, 4, callstate.Update{DTMF: "2"}),
			sip(key, 5, callstate.Update{Diversion: "4930"}), // only call.updated
			sip(key, 6, u(callstate.StateEnded, &held)),      // held as it ends: no call.held
		)
	}
	for _, ev := range evs {
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatalf("apply %s: %v", ev.DedupKey, err)
		}
	}
	// A row written again whole from its journal (Recompute, here after
	// the row was lost): every transition, both presses, in one insert.
	if _, err := conn.Exec(ctx, `DELETE FROM call_state WHERE call_key = 'hold1'`); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recompute(ctx, callstate.SourceSIP, "hold1"); err != nil {
		t.Fatal(err)
	}
	const rows = `
SELECT type, at, journey_id, source, call_key, coalesce(data::text, ''), call_id, state, on_hold,
       answered_at, ended_at, cause, answered_by, change_seq, updated_at
FROM %s WHERE call_id IS NOT NULL ORDER BY seq`
	read := func(table string) [][]any {
		t.Helper()
		rs, err := conn.Query(ctx, fmt.Sprintf(rows, table))
		if err != nil {
			t.Fatal(err)
		}
		out, err := pgx.CollectRows(rs, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	got, want := read("call_feed"), read("call_feed_reference")
	types := map[string]int{}
	for _, r := range want {
		types[r[0].(string)]++
	}
	for _, typ := range []string{callstate.EventRinging, callstate.EventAnswered, callstate.EventHeld, callstate.EventDTMF,
		callstate.EventEnded, callstate.EventOther} {
		if types[typ] == 0 {
			t.Errorf("the reference wrote no %s: the calls do not test it (%v)", typ, types)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("the feed has %d call events, the reference %d", len(got), len(want))
	}
	for i := range want {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Fatalf("call event %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}
