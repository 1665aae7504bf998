package store_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store/storetest"
)

// TestVocabulary holds callstate's vocabulary (vocab.go) against the live
// schema of a migrated database: every enum and CHECK that lists domain
// words lists exactly the words the domain declares, the syntax CHECKs are
// the domain's patterns to the letter and accept what they accept, and the
// lamp views and the journey rules write no word the domain does not know.
func TestVocabulary(t *testing.T) {
	ctx := context.Background()
	url := storetest.NewDatabase(t)
	openURL(t, url) // migrates
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })

	t.Run("StatesAreCallPhase", func(t *testing.T) {
		var labels []string
		if err := conn.QueryRow(ctx, `SELECT array_agg(enumlabel ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'call_phase'::regtype`).Scan(&labels); err != nil {
			t.Fatal(err)
		}
		var want []string
		for s := callstate.StateUnknown; s <= callstate.StateEnded; s++ {
			want = append(want, s.String())
		}
		if !slices.Equal(labels, want) {
			t.Errorf("call_phase is %q; callstate.State names %q (in order)", labels, want)
		}
	})

	lists := []struct {
		name, table, column string
		want                []string
	}{
		{"Sources", "call_state", "source", []string{string(callstate.SourceSipgate), string(callstate.SourceSIP)}},
		{"AliasSources", "presence_alias", "source", []string{string(callstate.SourceSipgate), string(callstate.SourceSIP)}},
		{"Directions", "call_state", "direction", []string{string(callstate.DirectionUnknown), string(callstate.DirectionIn), string(callstate.DirectionOut)}},
		{"Outcomes", "journey", "outcome", outcomes()},
		{"Subscriptions", "sip_extension", "subscription", callstate.Subscriptions},
		{"PresenceStatuses", "sip_extension", "presence_status", callstate.PresenceStatuses},
		{"FeedEventTypes", "call_feed", "type", callstate.FeedEventTypes},
	}
	for _, l := range lists {
		t.Run(l.name, func(t *testing.T) {
			def := checkOn(t, conn, l.table, l.column)
			got := quoted(def)
			if !sameSet(got, l.want) {
				t.Errorf("%s.%s CHECK allows %q; the domain declares %q\n%s", l.table, l.column, got, l.want, def)
			}
		})
	}

	syntaxes := []struct {
		name, table, column, pattern string
		valid                        func(string) bool
	}{
		{"ExtensionSyntax", "sip_extension", "extension", callstate.ExtensionSyntax, callstate.ValidExtension},
		{"SIPUserSyntax", "presence_account", "username", callstate.SIPUserSyntax, callstate.ValidSIPUser},
	}
	samples := []string{"100", "a.b_c~d*e#f+g-h", "", strings.Repeat("1", 64), strings.Repeat("1", 65), "a b", "a@b", "a;b", "a&b",
		"a'b", "a?b", "a/b", "a=b", "a,b", "a$b", "a!b", "(a)", "a%41", "ä", "a\r\nb", "<a>", `a"b`, "a:b"}
	for _, sx := range syntaxes {
		t.Run(sx.name, func(t *testing.T) {
			def := checkOn(t, conn, sx.table, sx.column)
			m := regexp.MustCompile(`~ '((?:[^']|'')*)'`).FindStringSubmatch(def)
			if m == nil {
				t.Fatalf("%s.%s: no pattern in its CHECK: %s", sx.table, sx.column, def)
			}
			if pat := strings.ReplaceAll(m[1], "''", "'"); pat != sx.pattern {
				t.Errorf("%s.%s CHECK pattern %q; callstate.%s %q", sx.table, sx.column, pat, sx.name, sx.pattern)
			}
			for _, s := range samples {
				var sqlOK bool
				if err := conn.QueryRow(ctx, `SELECT $1 ~ $2`, s, sx.pattern).Scan(&sqlOK); err != nil {
					t.Fatal(err)
				}
				if goOK := sx.valid(s); goOK != sqlOK {
					t.Errorf("%q: Go says %t, PostgreSQL %t", s, goOK, sqlOK)
				}
			}
		})
	}

	t.Run("Lamps", func(t *testing.T) {
		var got []string
		for _, v := range []string{"sip_lamp", "user_lamp"} {
			var def string
			if err := conn.QueryRow(ctx, `SELECT pg_get_viewdef($1::regclass)`, v).Scan(&def); err != nil {
				t.Fatal(err)
			}
			i := strings.Index(def, "CASE")
			j := strings.Index(def, "END AS lamp")
			if i < 0 || j < i {
				t.Fatalf("%s: no lamp CASE in %s", v, def)
			}
			for _, w := range regexp.MustCompile(`(?:THEN|ELSE) '([^']*)'`).FindAllStringSubmatch(def[i:j], -1) {
				if !slices.Contains(got, w[1]) {
					got = append(got, w[1])
				}
			}
		}
		if !sameSet(got, callstate.Lamps) {
			t.Errorf("sip_lamp and user_lamp write %q; callstate.Lamps is %q", got, callstate.Lamps)
		}
	})

	t.Run("CausesInRules", func(t *testing.T) {
		// Every cause the SQL rules name (journey failures, abandons) is
		// one the domain declares.
		rows, err := conn.Query(ctx, `
SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = current_schema() AND p.prokind = 'f'
UNION ALL
SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('v', 'm')`)
		if err != nil {
			t.Fatal(err)
		}
		defs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
			var d [2]string
			return d, r.Scan(&d[0], &d[1])
		})
		if err != nil {
			t.Fatal(err)
		}
		causes := []string{"" /* none stated */, callstate.CauseNormalClearing, callstate.CauseBusy, callstate.CauseCancel, callstate.CauseNoAnswer,
			callstate.CauseCongestion,
			callstate.CauseNotFound, callstate.CauseForwarded, callstate.CauseCancelled,
			callstate.CauseRejected, callstate.CauseReplaced, callstate.CauseLocalBye, callstate.CauseRemoteBye,
			callstate.CauseError, callstate.CauseTimeout, callstate.CauseVanished, callstate.CausePBXRestart}
		re := regexp.MustCompile(`hangup_cause\)?\s*(?:=|<>|IN|= ANY)\s*\(?(?:ARRAY\[)?('[^)\]]*)`)
		seen := 0
		for _, d := range defs {
			for _, m := range re.FindAllStringSubmatch(d[1], -1) {
				for _, c := range quoted(m[1]) {
					seen++
					if !slices.Contains(causes, c) {
						t.Errorf("%s names hangup cause %q, which the domain does not declare", d[0], c)
					}
				}
			}
		}
		if seen == 0 {
			t.Fatal("found no hangup cause in the schema's functions and views: the pattern no longer matches")
		}
	})
}

func outcomes() []string {
	var s []string
	for _, o := range callstate.Outcomes {
		s = append(s, string(o))
	}
	return s
}

// checkOn returns the definition of the one CHECK constraint of table
// that names column alone.
func checkOn(t *testing.T, conn *pgx.Conn, table, column string) string {
	t.Helper()
	var defs []string
	err := conn.QueryRow(context.Background(), `
SELECT coalesce(array_agg(pg_get_constraintdef(c.oid)), '{}')
FROM pg_constraint c
WHERE c.conrelid = $1::regclass AND c.contype = 'c'
  AND c.conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2)]`,
		table, column).Scan(&defs)
	if err != nil {
		t.Fatal(err)
	}
	if len(defs) != 1 {
		t.Fatalf("%s.%s has %d CHECK constraints, want 1: %q", table, column, len(defs), defs)
	}
	return defs[0]
}

// quoted returns the SQL string literals in s.
func quoted(s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`'((?:[^']|'')*)'`).FindAllStringSubmatch(s, -1) {
		out = append(out, strings.ReplaceAll(m[1], "''", "'"))
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
