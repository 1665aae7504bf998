package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/internal/reference"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// messyCall returns the events of one call with everything that can make
// a merge depend on order: DTMF presses, one of them a copy of the same
// request, hold stated back and forth, a hang-up received before the
// answer, two causes, a first guess of the extension and who answered.
func messyCall(r *rand.Rand, key string) []callstate.Event {
	var evs []callstate.Event
	n := 0
	add := func(typ string, ms int, u callstate.Update) {
		u.Key = key
		n++
		evs = append(evs, callstate.Event{
			Source: callstate.SourceSipgate, Type: typ, DedupKey: fmt.Sprintf("%s/%d", key, n),
			ReceivedAt: t0.Add(time.Duration(ms) * time.Millisecond), Payload: []byte(typ), Update: u,
		})
	}
	add("newCall", r.IntN(50), callstate.Update{CallID: key, Direction: callstate.DirectionIn, From: "491701", To: "4930",
		Users: []string{"Alice", "Bob"}, UserIDs: []string{"w0", "w1"}, Extension: "w0", State: callstate.StateRinging,
		Rule: []string{"", "block list", "vip to owner"}[r.IntN(3)]})
	if r.IntN(3) == 0 { // a newCall of the same call answered after a reload by another rule: the earliest stays
		add("newCall", r.IntN(50), callstate.Update{CallID: key, State: callstate.StateRinging, Rule: []string{"after hours", "vip to owner"}[r.IntN(2)]})
	}
	answered := r.IntN(3) > 0 // else the answer was lost
	if answered {
		add("answer", 1000+r.IntN(5000), callstate.Update{CallID: key, Extension: fmt.Sprintf("w%d", r.IntN(2)), PinExtension: true,
			AnsweredBy: "Bob", Answering: "4930", State: callstate.StateAnswered})
	}
	for i := range 2 + r.IntN(3) {
		d := string("0123456789*#"[r.IntN(12)])
		ms := 2000 + 1000*i + r.IntN(3000)
		add("dtmf", ms, callstate.Update{DTMF: d, DTMFDigest: "d" + d})
		if r.IntN(3) == 0 {
			add("dtmf", ms+r.IntN(2500), callstate.Update{DTMF: d, DTMFDigest: "d" + d})
		}
	}
	for range r.IntN(4) * b2i(answered) { // hold, said of an answered call
		add("dialog", 3000+r.IntN(3000), callstate.Update{State: callstate.StateAnswered, OnHold: ptr(r.IntN(2) == 0)})
	}
	if r.IntN(4) > 0 { // else the hangup was lost
		add("hangup", 4000+r.IntN(4000), callstate.Update{Cause: "normalClearing", State: callstate.StateEnded})
	}
	if r.IntN(2) == 0 {
		add("hangup", 4000+r.IntN(4000), callstate.Update{Cause: "cancel", Answering: "4930", State: callstate.StateEnded})
	}
	// What reconciliation may add: a timeout end (a guess), and ends
	// learned from sipgate's history with and without an answer, stating
	// their own times, learned at any time.
	if r.IntN(2) == 0 {
		add("timeout", 1_800_000+r.IntN(60_000), callstate.Update{State: callstate.StateEnded, Cause: callstate.CauseTimeout, Guessed: true})
	}
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for range r.IntN(3) {
		u := callstate.Update{Learned: true, State: callstate.StateEnded, StartedAt: ms(r.IntN(100)),
			Cause: []string{"normalClearing", "noAnswer", "busy", "cancel"}[r.IntN(4)], EndedAt: ms(6000 + r.IntN(4000))}
		if r.IntN(2) == 0 {
			u.AnsweredAt = ms(500 + r.IntN(5000))
		}
		add("reconciled", r.IntN(3_000_000), u)
	}
	return evs
}

// learnedCall returns the events of a call known from sipgate's history
// only (its webhooks never came), and sometimes a late webhook.
func learnedCall(r *rand.Rand, key string) []callstate.Event {
	var evs []callstate.Event
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for i := range 1 + r.IntN(2) {
		u := callstate.Update{Key: key, CallID: key, Direction: callstate.DirectionIn, From: "491701", To: "4930",
			Learned: true, State: callstate.StateEnded, StartedAt: ms(r.IntN(100)), Cause: "normalClearing", EndedAt: ms(6000 + r.IntN(4000))}
		if r.IntN(2) == 0 {
			u.AnsweredAt = ms(500 + r.IntN(5000))
		}
		evs = append(evs, callstate.Event{Source: callstate.SourceSipgate, Type: "reconciled", DedupKey: fmt.Sprintf("%s/r%d", key, i),
			ReceivedAt: ms(3_000_000 + r.IntN(100_000)), Payload: []byte("reconciled"), Update: u})
	}
	if r.IntN(2) == 0 {
		evs = append(evs, callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: key + "/n",
			ReceivedAt: ms(r.IntN(200)), Payload: []byte("newCall"),
			Update: callstate.Update{Key: key, CallID: key, Direction: callstate.DirectionIn, From: "491701", To: "4930", State: callstate.StateRinging}})
	}
	return evs
}

// forwardedLegs returns, for the sipgate call key, the legs sipgate starts
// for its forwards and the voicemail (origCallId key): each offered to
// users, some answered by a person, one perhaps by the voicemail (no user,
// no number), ended by a cause of the vocabulary or still going.
func forwardedLegs(r *rand.Rand, key string) []callstate.Event {
	var evs []callstate.Event
	n := 0
	for leg := range 1 + r.IntN(2) {
		legKey := fmt.Sprintf("%s-f%d", key, leg)
		add := func(typ string, ms int, u callstate.Update) {
			u.Key, u.CallID, u.OrigCallID = legKey, legKey, key
			n++
			evs = append(evs, callstate.Event{
				Source: callstate.SourceSipgate, Type: typ, DedupKey: fmt.Sprintf("%s/%d", legKey, n),
				ReceivedAt: t0.Add(time.Duration(ms) * time.Millisecond), Payload: []byte(typ), Update: u,
			})
		}
		voicemail := r.IntN(3) == 0
		id := fmt.Sprintf("w%d", 2+r.IntN(6))
		users, ids := []string{"User " + id}, []string{id}
		if voicemail {
			users, ids = []string{"voicemail"}, nil
		}
		add("newCall", 500+r.IntN(3000), callstate.Update{Direction: callstate.DirectionIn, From: []string{"", "491701"}[r.IntN(2)],
			To: "4930", Users: users, UserIDs: ids, State: callstate.StateRinging})
		if r.IntN(2) == 0 {
			u := callstate.Update{State: callstate.StateAnswered}
			if !voicemail && r.IntN(2) == 0 {
				u.AnsweredBy, u.Extension, u.PinExtension = "User "+id, id, true
			}
			add("answer", 3000+r.IntN(4000), u)
		}
		if r.IntN(4) > 0 {
			cause := []string{callstate.CauseNormalClearing, callstate.CauseForwarded, callstate.CauseNotFound,
				callstate.CauseCongestion, callstate.CauseBusy, callstate.CauseCancel, callstate.CauseNoAnswer}[r.IntN(7)]
			add("hangup", 6000+r.IntN(6000), callstate.Update{Cause: cause, State: callstate.StateEnded})
		}
	}
	return evs
}

// sipDialogs returns the dialogs of one SIP call (one Call-ID) on one to
// three watched extensions, as the SIP watcher journals them: one of them
// perhaps answered, put on hold and off, each ended by a dialog event of
// RFC 4235 or by the watcher itself, or still going; in or out.
func sipDialogs(r *rand.Rand, callID string, exts []string) []callstate.Event {
	var evs []callstate.Event
	n := 0
	dir := []callstate.Direction{callstate.DirectionIn, callstate.DirectionOut}[r.IntN(2)]
	from, to := "sip:491701@pbx", "sip:"+exts[0]+"@pbx"
	if dir == callstate.DirectionOut {
		from, to = to, "sip:4930555@pbx"
	}
	answerer := r.IntN(len(exts) + 1) // len(exts): nobody answers
	for i, ext := range exts {
		key := fmt.Sprintf("%s/%s-d%d", ext, callID, i)
		add := func(ms int, u callstate.Update) {
			u.Key, u.CallID, u.Extension = key, callID, ext
			n++
			evs = append(evs, callstate.Event{
				Source: callstate.SourceSIP, Type: "dialog", DedupKey: fmt.Sprintf("%s/%d", key, n),
				ReceivedAt: t0.Add(time.Duration(ms) * time.Millisecond), Payload: []byte("dialog"), Update: u,
			})
		}
		add(r.IntN(300), callstate.Update{Direction: dir, From: from, To: to, State: callstate.StateRinging})
		if i == answerer {
			add(1000+r.IntN(3000), callstate.Update{Direction: dir, State: callstate.StateAnswered, OnHold: ptr(false)})
			for range r.IntN(3) {
				add(2000+r.IntN(3000), callstate.Update{State: callstate.StateAnswered, OnHold: ptr(r.IntN(2) == 0)})
			}
		}
		if r.IntN(5) > 0 {
			causes := []string{callstate.CauseCancelled, callstate.CauseRejected, callstate.CauseReplaced, callstate.CauseError,
				callstate.CauseTimeout, callstate.CauseVanished, callstate.CausePBXRestart, "486"}
			if i == answerer {
				causes = append(causes, callstate.CauseLocalBye, callstate.CauseRemoteBye, callstate.CauseLocalBye)
			}
			add(5000+r.IntN(5000), callstate.Update{State: callstate.StateEnded, Cause: causes[r.IntN(len(causes))]})
		}
	}
	return evs
}

// TestApplyOrderIndependent is the conformance suite of the rules written
// in SQL and in Go: generated calls (sipgate calls with their forward and
// voicemail legs, calls learned from sipgate's history, SIP dialogs of one
// Call-ID on several extensions), their events in any order, split across
// any number of concurrent appliers (as several instances and their
// spools would apply them), some of them applied twice, give
//
//   - the rows that callstate.Call.Apply gives, every field, the journey
//     id included (internal/reference.JourneyID): the same row whatever
//     the order;
//   - the journeys that internal/reference.JourneyOf gives for those rows,
//     every field (outcome, times, who answered, wait and talk, ...);
//   - the lamps that callstate.ExtensionLamp and callstate.UserLamp give
//     for them, for every watched extension and sipgate user.
func TestApplyOrderIndependent(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	r := rand.New(rand.NewPCG(7, 8))
	type call struct {
		source callstate.Source
		key    string
		want   callstate.Call
	}
	var calls []call
	var all []callstate.Event
	exts := []string{"100", "101", "102", "103", "104", "105", "106", "107", "108", "109", "110", "111"}
	if err := st.AddExtensions(ctx, exts); err != nil {
		t.Fatal(err)
	}
	for _, e := range exts {
		if err := st.SetSubscription(ctx, e, callstate.SubscriptionActive, ""); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		key := fmt.Sprintf("messy-%03d", i)
		var evs []callstate.Event
		switch {
		case i%6 == 5:
			shuffled := slices.Clone(exts)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			evs = sipDialogs(r, "sip-"+key, shuffled[:1+r.IntN(3)])
		case i%5 == 0:
			evs = learnedCall(r, key)
		default:
			evs = messyCall(r, key)
			if r.IntN(3) == 0 {
				evs = append(evs, forwardedLegs(r, key)...)
			}
		}
		legs := map[string]*call{}
		var order []string
		for _, ev := range evs {
			k := string(ev.Source) + "/" + ev.Update.Key
			c, ok := legs[k]
			if !ok {
				c = &call{source: ev.Source, key: ev.Update.Key}
				c.want.Source = ev.Source
				legs[k] = c
				order = append(order, k)
			}
			c.want = c.want.Apply(ev.Update, ev.ReceivedAt)
		}
		for _, k := range order {
			calls = append(calls, *legs[k])
		}
		all = append(all, evs...)
		for range r.IntN(2) { // applied twice, by another applier
			all = append(all, evs[r.IntN(len(evs))])
		}
	}
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	appliers := 1 + r.IntN(6)
	queues := make([][]callstate.Event, appliers)
	for _, ev := range all {
		k := r.IntN(appliers)
		queues[k] = append(queues[k], ev)
	}
	var wg sync.WaitGroup
	errs := make(chan error, appliers)
	for _, q := range queues {
		wg.Go(func() {
			for _, ev := range q {
				if _, err := st.Apply(ctx, ev); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d events of %d legs through %d appliers", len(all), len(calls), appliers)
	var legs []callstate.Call
	for _, c := range calls {
		got, err := st.Call(ctx, c.source, c.key)
		if err != nil {
			t.Fatal(err)
		}
		c.want.ID = got.ID
		assertCall(t, got, c.want)
		if !got.AnsweredAt.IsZero() && (got.AnsweredAt.Before(got.StartedAt) || (!got.EndedAt.IsZero() && got.EndedAt.Before(got.AnsweredAt))) {
			t.Errorf("%s: started %v answered %v ended %v", c.key, got.StartedAt, got.AnsweredAt, got.EndedAt)
		}
		legs = append(legs, c.want)
	}
	assertJourneys(t, st, url, legs)
	assertLamps(t, st, legs)
}

// assertJourneys checks every journey of legs that the store keeps against
// internal/reference.JourneyOf of the same legs, field by field.
func assertJourneys(t *testing.T, st *store.Store, url string, legs []callstate.Call) {
	t.Helper()
	ctx := context.Background()
	syncJourneys(t, st)
	byID := map[string][]callstate.Call{}
	var ids []string
	for _, c := range legs {
		id := reference.JourneyID(c)
		if _, ok := byID[id]; !ok {
			ids = append(ids, id)
		}
		byID[id] = append(byID[id], c)
	}
	got, err := st.JourneysByID(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids) {
		t.Fatalf("the store keeps %d journeys of %d", len(got), len(ids))
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	outcomes := map[callstate.Outcome]int{}
	for _, g := range got {
		// Learned is what journey_stats_rows reads: no leg but learned ones.
		if err := conn.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM call_state c WHERE c.journey_id = $1 AND NOT c.learned)`,
			g.ID).Scan(&g.Learned); err != nil {
			t.Fatal(err)
		}
		want := reference.JourneyOf(byID[g.ID])
		outcomes[want.Outcome]++
		if gn, wn := normJourney(g), normJourney(want); !reflect.DeepEqual(gn, wn) {
			t.Errorf("journey %s: SQL\n %+v\nreference\n %+v", g.ID, gn, wn)
		}
	}
	t.Logf("%d journeys: %v", len(got), outcomes)
	for _, o := range callstate.Outcomes {
		if outcomes[o] == 0 && o != callstate.OutcomeUnreached {
			t.Errorf("no journey ended %s: the generated calls do not reach every rule", o)
		}
	}
}

// journeyFields is a journey with its times in UTC, its lists nil when
// empty and its wait and talk to the microsecond, as PostgreSQL keeps them.
type journeyFields struct {
	callstate.Journey
	Wait, Talk int64 // microseconds; -1: none
}

func normJourney(j callstate.Journey) journeyFields {
	for _, p := range []*time.Time{&j.StartedAt, &j.AnsweredAt, &j.EndedAt, &j.VoicemailAt} {
		if !p.IsZero() {
			*p = p.UTC()
		}
	}
	if len(j.UserIDs) == 0 {
		j.UserIDs = nil
	}
	us := func(p *float64) int64 {
		if p == nil {
			return -1
		}
		return int64(math.Round(*p * 1e6))
	}
	f := journeyFields{Journey: j, Wait: us(j.WaitSeconds), Talk: us(j.TalkSeconds)}
	f.WaitSeconds, f.TalkSeconds = nil, nil
	return f
}

// assertLamps checks the lamp of every watched extension and every
// sipgate user the store shows against callstate.ExtensionLamp and
// callstate.UserLamp of the same calls.
func assertLamps(t *testing.T, st *store.Store, legs []callstate.Call) {
	t.Helper()
	lamps, _, err := st.LampsAndCalls(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, l := range lamps {
		var want string
		switch l.Source {
		case callstate.SourceSIP:
			var mine []callstate.Call
			for _, c := range legs {
				if c.Source == callstate.SourceSIP && c.Extension == l.Extension && c.Active() {
					mine = append(mine, c)
				}
			}
			want = callstate.ExtensionLamp(mine)
		case callstate.SourceSipgate:
			want = reference.UserLamp(l.Extension, legs)
		}
		seen[string(l.Source)+" "+l.Lamp]++
		if l.Lamp != want {
			t.Errorf("lamp %s/%s: SQL %s, Go %s", l.Source, l.Extension, l.Lamp, want)
		}
	}
	t.Logf("lamps: %v", seen)
	if len(seen) < 3 {
		t.Errorf("lamps %v: the generated calls light too few kinds", seen)
	}
}

// TestRecompute: a row computed again from the journal alone is the row
// the writes made; a row spoiled by hand is put right.
func TestRecompute(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 20 {
		key := fmt.Sprintf("re-%02d", i)
		evs := messyCall(r, key)
		r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
		for _, ev := range evs {
			if _, err := st.Apply(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		want, err := st.Call(ctx, callstate.SourceSipgate, key)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := st.ExecForTest(ctx, `UPDATE call_state SET dtmf = 'x', state = 'ringing', answered_at = NULL WHERE call_key = '`+key+`'`); err != nil {
				t.Fatal(err)
			}
		}
		got, err := st.Recompute(ctx, callstate.SourceSipgate, key)
		if err != nil {
			t.Fatal(err)
		}
		assertCall(t, got, want)
		stored, err := st.Call(ctx, callstate.SourceSipgate, key)
		if err != nil {
			t.Fatal(err)
		}
		assertCall(t, stored, want)
	}
	if _, err := st.Recompute(ctx, callstate.SourceSipgate, "no-such-call"); !errors.Is(err, callstate.ErrNotFound) {
		t.Errorf("Recompute of an unknown call: %v, want ErrNotFound", err)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
