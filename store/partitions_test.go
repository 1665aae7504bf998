package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// journalDB returns a Store and a connection of its own on a fresh database.
func journalDB(t *testing.T) (*store.Store, *pgx.Conn) {
	t.Helper()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return st, conn
}

// eventAt is one event of call key, with its own dedup key, received at.
func eventAt(key, dedup string, at time.Time, u callstate.Update) callstate.Event {
	u.Key = key
	if u.State == callstate.StateUnknown {
		u.State = callstate.StateRinging
	}
	return callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: dedup,
		ReceivedAt: at, Payload: []byte("from=" + u.From), Update: u}
}

func apply(t *testing.T, st *store.Store, ev callstate.Event) bool {
	t.Helper()
	applied, err := st.Apply(context.Background(), ev)
	if err != nil {
		t.Fatalf("Apply %s: %v", ev.DedupKey, err)
	}
	return applied
}

func partitionNames(t *testing.T, st *store.Store) []string {
	t.Helper()
	ps, err := st.JournalPartitions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return names
}

func count(t *testing.T, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestJournalPartitionsAhead: opening the store makes today's partition and
// the next days', and an event of a day without one gets one.
func TestJournalPartitionsAhead(t *testing.T) {
	st, conn := journalDB(t)
	names := partitionNames(t, st)
	today := time.Now().UTC()
	for _, d := range []time.Time{today, today.AddDate(0, 0, store.JournalAheadDays)} {
		if want := "call_event_" + d.Format("20060102"); !slices.Contains(names, want) {
			t.Errorf("partitions %v lack %s", names, want)
		}
	}
	old := time.Date(2020, 2, 29, 12, 0, 0, 0, time.UTC)
	if !apply(t, st, eventAt("old", "old/1", old, callstate.Update{From: "1"})) {
		t.Fatal("an event of a day without a partition was not applied")
	}
	if n := count(t, conn, `SELECT count(*) FROM call_event_20200229`); n != 1 {
		t.Errorf("call_event_20200229 holds %d events, want 1", n)
	}
	if n, err := st.EnsureJournalPartitions(context.Background(), time.Now()); err != nil || n != 0 {
		t.Errorf("EnsureJournalPartitions again: made %d, %v; want none", n, err)
	}
}

// TestJournalRetention: DropJournalBefore drops the partitions of the days
// before the cutoff's, with their dedup keys, and keeps the cutoff's day
// and the newer ones, and the calls' rows.
func TestJournalRetention(t *testing.T) {
	ctx := context.Background()
	st, conn := journalDB(t)
	days := []time.Time{t0.AddDate(0, 0, -2), t0.AddDate(0, 0, -1), t0, t0.AddDate(0, 0, 1)}
	for i, d := range days {
		apply(t, st, eventAt(d.Format("c20060102"), d.Format("e20060102"), d, callstate.Update{From: "1"}))
		if i == 0 { // a second event of the oldest call, late in its day
			apply(t, st, eventAt(d.Format("c20060102"), "late", d.Add(13*time.Hour+59*time.Minute), callstate.Update{From: "1"}))
		}
	}
	parts, keys, err := st.DropJournalBefore(ctx, t0) // 10:00 on t0's day: its day is kept
	if err != nil || parts != 2 || keys != 3 {
		t.Fatalf("DropJournalBefore: %d partitions, %d keys, %v; want 2 and 3", parts, keys, err)
	}
	names := partitionNames(t, st)
	for i, d := range days {
		name := "call_event_" + d.Format("20060102")
		if kept := slices.Contains(names, name); kept != (i >= 2) {
			t.Errorf("%s kept=%v; partitions now %v", name, kept, names)
		}
		j, err := st.Journal(ctx, callstate.SourceSipgate, d.Format("c20060102"))
		if err != nil || (len(j) > 0) != (i >= 2) {
			t.Errorf("journal of %s: %d events, %v", d.Format(time.DateOnly), len(j), err)
		}
		if _, err := st.Call(ctx, callstate.SourceSipgate, d.Format("c20060102")); err != nil {
			t.Errorf("the call of %s went with its journal: %v", d.Format(time.DateOnly), err)
		}
	}
	if n := count(t, conn, `SELECT count(*) FROM call_event_key WHERE received_at < $1`, days[2]); n != 0 {
		t.Errorf("%d dedup keys of the dropped days left", n)
	}
	if n := count(t, conn, `SELECT count(*) FROM call_event_key`); n != 2 {
		t.Errorf("%d dedup keys left, want the 2 of the kept days", n)
	}
	// A kept day's event repeated is a repeat; a dropped day's is new again.
	if apply(t, st, eventAt(t0.Format("c20060102"), t0.Format("e20060102"), t0.AddDate(0, 0, 2), callstate.Update{From: "1"})) {
		t.Error("a repeat of a kept day's event was journaled again")
	}
	if !apply(t, st, eventAt(days[0].Format("c20060102"), days[0].Format("e20060102"), days[0], callstate.Update{From: "1"})) {
		t.Error("a repeat of a dropped day's event was not journaled")
	}
	// Again, the same: nothing but the day just made again for that event.
	if parts, keys, err := st.DropJournalBefore(ctx, t0); err != nil || parts != 1 || keys != 1 {
		t.Errorf("DropJournalBefore again: %d partitions, %d keys, %v; want 1 and 1", parts, keys, err)
	}
}

// TestDedupAcrossPartitions: an event repeated on a later day (a sender's
// retry after midnight, a spool's copy) is still a repeat.
func TestDedupAcrossPartitions(t *testing.T) {
	ctx := context.Background()
	st, conn := journalDB(t)
	first := time.Date(2026, 11, 22, 23, 59, 59, 0, time.UTC)
	if !apply(t, st, eventAt("x", "dup", first, callstate.Update{From: "1", To: "2"})) {
		t.Fatal("first event not applied")
	}
	for _, at := range []time.Time{first.Add(2 * time.Second), first.AddDate(0, 0, 30), first.AddDate(0, 0, -3)} {
		if apply(t, st, eventAt("x", "dup", at, callstate.Update{From: "9", To: "9", State: callstate.StateEnded})) {
			t.Errorf("the repeat received %s was applied", at)
		}
	}
	if j, err := st.Journal(ctx, callstate.SourceSipgate, "x"); err != nil || len(j) != 1 || !j[0].ReceivedAt.Equal(first) {
		t.Errorf("journal: %+v, %v; want the first event only", j, err)
	}
	c, err := st.Call(ctx, callstate.SourceSipgate, "x")
	if err != nil || c.State != callstate.StateRinging || c.From != "1" {
		t.Errorf("call: %+v, %v; want the first event's", c, err)
	}
	if n := count(t, conn, `SELECT count(*) FROM call_event`); n != 1 {
		t.Errorf("%d journal rows, want 1", n)
	}
}

// TestForgetNumberAcrossPartitions: a call over midnight is erased from
// both days' partitions, and no table holds the number afterwards.
func TestForgetNumberAcrossPartitions(t *testing.T) {
	ctx := context.Background()
	st, conn := journalDB(t)
	const number = "4915188888"
	night := time.Date(2026, 11, 22, 23, 59, 58, 0, time.UTC)
	apply(t, st, eventAt("night", "n1", night, callstate.Update{From: number, To: "4930"}))
	apply(t, st, eventAt("night", "n2", night.Add(4*time.Second), callstate.Update{From: number, State: callstate.StateEnded}))
	apply(t, st, eventAt("other", "o1", night, callstate.Update{From: "4917000000", To: "4930"}))
	plan, err := callstate.NewNumberPlan("DE")
	if err != nil {
		t.Fatal(err)
	}
	var contacts []callstate.Contact
	for name, numbers := range map[string][]string{"Only": {"+" + number}, "Both": {"+" + number, "+4917000000"}} {
		c, err := callstate.NewContact(plan, name, numbers)
		if err != nil {
			t.Fatal(err)
		}
		contacts = append(contacts, c)
	}
	if _, _, err := st.AddContacts(ctx, contacts); err != nil {
		t.Fatal(err)
	}
	calls, events, err := st.ForgetNumber(ctx, number)
	if err != nil || calls != 1 || events != 2 {
		t.Fatalf("ForgetNumber: %d calls, %d events, %v; want 1 and 2", calls, events, err)
	}
	if n := count(t, conn, `SELECT count(*) FROM call_event_20261122`) + count(t, conn, `SELECT count(*) FROM call_event_20261123`); n != 1 {
		t.Errorf("the two days hold %d events, want the other call's 1", n)
	}
	if j, _ := st.Journal(ctx, callstate.SourceSipgate, "night"); len(j) != 1 || j[0].Type != "erased" {
		t.Errorf("erased call's journal: %+v, want its erased mark", j)
	}
	if tables := tablesHolding(t, conn, number); len(tables) > 0 {
		t.Errorf("the number is still in %v", tables)
	}
	if tables := tablesHolding(t, conn, "4917000000"); len(tables) == 0 {
		t.Error("the other call's number is nowhere: the search cannot find anything")
	}
	if cs, err := st.Contacts(ctx); err != nil || len(cs) != 1 || cs[0].Name != "Both" || len(cs[0].Numbers) != 1 || cs[0].Numbers[0] != "4917000000" {
		t.Errorf("phonebook after forgetting: %+v %v; want Both with its other number only", cs, err)
	}
	// Erasing again (the call came back) keeps one mark.
	apply(t, st, eventAt("night", "n3", night.AddDate(0, 0, 1), callstate.Update{From: number}))
	if _, _, err := st.ForgetNumber(ctx, number); err != nil {
		t.Fatal(err)
	}
	if j, _ := st.Journal(ctx, callstate.SourceSipgate, "night"); len(j) != 1 || j[0].Type != "erased" {
		t.Errorf("erased twice, the journal: %+v, want one erased mark", j)
	}
}

// tablesHolding returns the tables (partitions included) and columns of
// the public schema in which some text, bytea, array or JSON value
// contains s.
func tablesHolding(t *testing.T, conn *pgx.Conn, s string) []string {
	t.Helper()
	ctx := context.Background()
	rows, _ := conn.Query(ctx, `
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'public' AND c.relkind = 'r'
ORDER BY 1, 2`)
	type col struct{ table, column, typ string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		err := r.Scan(&c.table, &c.column, &c.typ)
		return c, err
	})
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, c := range cols {
		var cond string
		switch c.typ {
		case "bytea":
			cond = `position(convert_to($1, 'UTF8') in %s) > 0`
		case "text", "text[]", "jsonb", "json":
			cond = `%s::text LIKE '%%' || $1 || '%%'`
		default:
			continue
		}
		ident := pgx.Identifier{c.column}.Sanitize()
		q := `SELECT count(*) FROM ` + pgx.Identifier{c.table}.Sanitize() + ` WHERE ` + fmt.Sprintf(cond, ident)
		var n int
		if err := conn.QueryRow(ctx, q, s).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if n > 0 {
			found = append(found, c.table+"."+c.column)
		}
	}
	return found
}

// TestEventsOfManyDaysAtOnce: events of days without partitions, written
// at once with a bad event among them (so that batches fail and are
// written again one by one), are each journaled in a partition made for
// them; only the bad one fails.
func TestEventsOfManyDaysAtOnce(t *testing.T) {
	st, conn := journalDB(t)
	const n = 40
	errs := make(chan error, n+1)
	for i := range n + 1 {
		go func() {
			day, key := time.Date(2019, 1, 1, 12, 0, 0, 0, time.UTC).AddDate(0, 0, i), fmt.Sprint("many", i)
			u := callstate.Update{From: "1"}
			if i == n {
				// Refused by PostgreSQL (NUL in text), of a day with a
				// partition, and first in a batch (by its key): the
				// batch fails for it before any missing partition.
				u.From, day, key = "bad\x00", time.Now(), "a-bad"
			}
			_, err := st.Apply(context.Background(), eventAt(key, fmt.Sprint("m", i), day, u))
			errs <- err
		}()
	}
	var failed int
	for range n + 1 {
		if err := <-errs; err != nil {
			failed++
			if !errors.Is(err, callstate.ErrInvalidEvent) {
				t.Errorf("Apply: %v, want an invalid event", err)
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d events failed, want the bad one", failed)
	}
	if got := count(t, conn, `SELECT count(*) FROM call_event WHERE received_at < '2020-01-01'`); got != n {
		t.Errorf("%d events journaled, want %d", got, n)
	}
}
