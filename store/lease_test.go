package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// storeAndConn opens a store on a fresh database and a plain connection to
// the same database, for what the store has no method for.
func storeAndConn(t *testing.T) (*store.Store, *pgx.Conn) {
	t.Helper()
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return st, conn
}

// TestClaimExtensions plays two instances sharing six extensions: the
// first takes all, a second joining gets half, a dead one's share is taken
// over once its leases run out, and a disabled extension is given back.
func TestClaimExtensions(t *testing.T) {
	ctx := context.Background()
	st, conn := storeAndConn(t)
	if _, err := conn.Exec(ctx, `INSERT INTO sip_extension (extension) SELECT '10' || g FROM generate_series(0, 5) g`); err != nil {
		t.Fatal(err)
	}
	const ttl = time.Second
	claim := func(who string) []string {
		t.Helper()
		got, err := st.ClaimExtensions(ctx, who, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	if got := claim("a"); len(got) != 6 {
		t.Fatalf("alone, a holds %v", got)
	}
	if got := claim("b"); len(got) != 0 {
		t.Fatalf("b took leased extensions: %v", got)
	}
	a := claim("a") // a sees b and gives back what is over its share
	b := claim("b")
	if len(a) != 3 || len(b) != 3 {
		t.Fatalf("after rebalancing a=%v b=%v", a, b)
	}
	for _, e := range a {
		if slices.Contains(b, e) {
			t.Fatalf("%s held by both", e)
		}
	}

	// a dies: its leases run out, b takes everything.
	time.Sleep(ttl + 200*time.Millisecond)
	if got := claim("b"); len(got) != 6 {
		t.Fatalf("after a died, b holds %v", got)
	}
	var lamp string
	if err := conn.QueryRow(ctx, `SELECT lamp FROM sip_lamp WHERE extension = '100'`).Scan(&lamp); err != nil || lamp != "unavailable" {
		t.Errorf("lamp of a pending subscription: %q %v", lamp, err)
	}

	if _, err := conn.Exec(ctx, `UPDATE sip_extension SET enabled = false WHERE extension = '105'`); err != nil {
		t.Fatal(err)
	}
	if got := claim("b"); slices.Contains(got, "105") || len(got) != 5 {
		t.Errorf("after disabling 105, b holds %v", got)
	}

	if err := st.ReleaseExtensions(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got := claim("c"); len(got) != 5 {
		t.Errorf("after b released, c holds %v", got)
	}
}

// TestExpiredLeaseMakesLampUnavailable: an active subscription whose
// watcher stopped renewing shows unavailable.
func TestExpiredLeaseMakesLampUnavailable(t *testing.T) {
	ctx := context.Background()
	_, conn := storeAndConn(t)
	lamp := func() string {
		var l string
		if err := conn.QueryRow(ctx, `SELECT lamp FROM sip_lamp WHERE extension = '200'`).Scan(&l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	if _, err := conn.Exec(ctx, `INSERT INTO sip_extension (extension, subscription, owner, lease_until) VALUES ('200', 'active', 'x', now() + interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	if l := lamp(); l != "idle" {
		t.Fatalf("leased and active: %s", l)
	}
	if _, err := conn.Exec(ctx, `UPDATE sip_extension SET lease_until = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if l := lamp(); l != "unavailable" {
		t.Errorf("lease run out: %s", l)
	}
}
