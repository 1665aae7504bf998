package store_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

func TestLampsAndCalls(t *testing.T) {
	st := openStore(t)
	ctx := t.Context()
	apply := func(key, ext string, state callstate.State) {
		t.Helper()
		ev := callstate.Event{Source: callstate.SourceSipgate, Type: "x", DedupKey: key + state.String(), ReceivedAt: t0,
			Payload: []byte("{}"), Update: callstate.Update{Key: key, Extension: ext, State: state}}
		if _, err := st.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	apply("c1", "w0", callstate.StateRinging)
	apply("c2", "w1", callstate.StateAnswered)
	apply("c3", "w2", callstate.StateEnded)
	lamps, calls, err := st.LampsAndCalls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[0].Key != "c1" || calls[1].Key != "c2" {
		t.Errorf("calls = %+v, want c1 and c2 (c3 has ended)", calls)
	}
	got := map[string]string{}
	for _, l := range lamps {
		got[l.Extension] = l.Lamp
	}
	if got["w0"] != "ringing" || got["w1"] != "busy" || got["w2"] != "idle" {
		t.Errorf("lamps = %v, want w0 ringing, w1 busy, w2 idle", got)
	}
}

func TestPresenceAccountsAndAliases(t *testing.T) {
	url := storetest.NewDatabase(t)
	st := openURL(t, url)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`INSERT INTO presence_account (username, realm, ha1) VALUES ('desk1', 'callstate', '0123456789abcdef0123456789abcdef')`,
		`INSERT INTO presence_account (username, realm, ha1, enabled) VALUES ('old', 'callstate', '0123456789abcdef0123456789abcdef', false)`,
		`INSERT INTO presence_account (username, realm, ha1) VALUES ('other', 'elsewhere', '0123456789abcdef0123456789abcdef')`,
		`INSERT INTO presence_alias (alias, source, extension) VALUES ('+49 211 1234', 'sipgate', 'w0'), ('reception', 'sip', '100')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{
		`INSERT INTO presence_account (username, realm, ha1) VALUES ('x', 'r', 'plaintext-password')`,
		`INSERT INTO presence_account (username, realm, ha1) VALUES ('a@b', 'r', '0123456789abcdef0123456789abcdef')`,
		`INSERT INTO presence_alias (alias, source, extension) VALUES ('x', 'pbx', '100')`,
	} {
		if _, err := conn.Exec(ctx, bad); err == nil {
			t.Errorf("accepted: %s", bad)
		}
	}
	accts, err := st.PresenceAccounts(ctx, "callstate")
	if err != nil || len(accts) != 1 || accts["desk1"] != "0123456789abcdef0123456789abcdef" {
		t.Errorf("PresenceAccounts = %v, %v; want desk1 only", accts, err)
	}
	as, err := st.PresenceAliases(ctx)
	want := []store.PresenceAlias{{"+49 211 1234", callstate.SourceSipgate, "w0"}, {"reception", callstate.SourceSIP, "100"}}
	if err != nil || len(as) != 2 || as[0] != want[0] || as[1] != want[1] {
		t.Errorf("PresenceAliases = %v, %v; want %v", as, err, want)
	}
}
