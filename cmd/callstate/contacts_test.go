package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// TestContactsImportCommand imports real phonebook exports: what is added,
// what is skipped and why, and a second import that changes nothing.
func TestContactsImportCommand(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	env := map[string]string{"DATABASE_URL": dbURL, "LOG_LEVEL": "warn"}
	out, err := runCLI(t, env, "contacts", "import", "../../testdata/contacts-google.csv", "-env-file", os.DevNull)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	for _, want := range []string{
		"skipped line 5: Ohne Nummer: no number",
		`skipped line 6: Falsche Nummer: not a phone number: "call me maybe"`,
		"imported ../../testdata/contacts-google.csv (csv, numbers read in DE): 4 new, 0 with new numbers, 0 unchanged, 2 skipped",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = runCLI(t, env, "contacts", "import", "../../testdata/contacts-google.csv", "-env-file", os.DevNull)
	if err != nil || !strings.Contains(out, "0 new, 0 with new numbers, 4 unchanged") {
		t.Errorf("second import: %v\n%s", err, out)
	}
	out, err = runCLI(t, env, "contacts", "import", "../../testdata/contacts-iphone.vcf", "-env-file", os.DevNull)
	if err != nil || !strings.Contains(out, "(vcard, numbers read in DE): 3 new") {
		t.Errorf("vCard import: %v\n%s", err, out)
	}
	st, err := store.Open(context.Background(), dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs, err := st.Contacts(context.Background())
	if err != nil || len(cs) != 7 {
		t.Fatalf("contacts after both imports: %d, %v", len(cs), err)
	}

	for name, tt := range map[string]struct {
		args []string
		env  map[string]string
		want string
	}{
		"NoFile":      {[]string{"contacts", "import"}, env, "contacts needs: import FILE"},
		"Missing":     {[]string{"contacts", "import", "/nonexistent.csv"}, env, "no such file"},
		"NotContacts": {[]string{"contacts", "import", "../../go.mod"}, env, "no name column"},
		"BadRegion": {[]string{"contacts", "import", "../../testdata/contacts-google.csv"},
			map[string]string{"DATABASE_URL": dbURL, "PHONE_REGION": "XX"}, "PHONE_REGION: want a two-letter country code"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runCLI(t, tt.env, append(tt.args, "-env-file", os.DevNull)...)
			if exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v (exit %d), want exit 2 saying %q", err, exitCode(err), tt.want)
			}
		})
	}
}
