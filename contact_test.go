package callstate_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/callstate/callstate"
)

// TestParseContactsFiles reads phonebook exports as Google Contacts,
// Outlook (German, semicolons), an iPhone and an Android phone write them.
func TestParseContactsFiles(t *testing.T) {
	plan, _ := callstate.NewNumberPlan("DE")
	tests := []struct {
		file     string
		format   string
		contacts map[string][]string
		skipped  []string // substrings, one per skipped line
	}{
		{"contacts-google.csv", "csv", map[string][]string{
			"Jana Krüger":            {"4916012345678", "493023456789"},
			"Thomas Weber":           {"491719876543", "491719876544"},
			"Stadtwerke Musterstadt": {"498912340"},
			"Falsche Nummer":         {"442079460958"},
		}, []string{"line 5: Ohne Nummer: no number", `line 6: Falsche Nummer: not a phone number: "call me maybe"`}},
		{"contacts-outlook-de.csv", "csv", map[string][]string{
			"Sabine Hoffmann":  {"4922147110"},
			"Mehmet Yılmaz":    {"4915201234567"},
			"Praxis Dr. Lange": {"4940123456"},
		}, nil},
		{"contacts-iphone.vcf", "vcard", map[string][]string{
			"Anna-Lena Becker":   {"4916012345678", "4917655544433", "4315124567"},
			"Ben Schmidt":        {"49895678123"},
			"Zentrale Notdienst": {"4930901820"},
		}, []string{"line 24: Kein Telefon: no number"}},
		{"contacts-android.vcf", "vcard", map[string][]string{
			"Jürgen Müller sen.": {"4917012345678", "49622198765"},
			"Hausmeister":        {"49621123456"},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := callstate.ParseContacts(f, plan)
			if err != nil {
				t.Fatal(err)
			}
			if got.Format != tt.format {
				t.Errorf("format %q, want %q", got.Format, tt.format)
			}
			m := map[string][]string{}
			for _, c := range got.Contacts {
				m[c.Name] = c.Numbers
			}
			if !reflect.DeepEqual(m, tt.contacts) {
				t.Errorf("contacts\n got %q\nwant %q", m, tt.contacts)
			}
			if len(got.Skipped) != len(tt.skipped) {
				t.Fatalf("skipped %q, want %d like %q", got.Skipped, len(tt.skipped), tt.skipped)
			}
			for i, s := range tt.skipped {
				if !strings.Contains(got.Skipped[i], s) {
					t.Errorf("skipped[%d] = %q, want it to say %q", i, got.Skipped[i], s)
				}
			}
		})
	}
}

func TestParseContactsErrInvalidContact(t *testing.T) {
	plan, _ := callstate.NewNumberPlan("DE")
	tests := map[string]string{
		"NoNameColumn":  "Phone,Email\n+49 160 1234567,a@example.org\n",
		"NoPhoneColumn": "Name,Email\nAnna,a@example.org\n",
		"NoContact":     "Name,Phone\nAnna,\n",
		"NotUTF8":       "Name,Phone\nJ\xfcrgen,0160 1234567\n",
		"EmptyVCard":    "BEGIN:VCARD\nFN:Anna\nEND:VCARD\n",
		"Empty":         "",
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := callstate.ParseContacts(strings.NewReader(in), plan); !errors.Is(err, callstate.ErrInvalidContact) {
				t.Errorf("got %v, want ErrInvalidContact", err)
			}
		})
	}
}

func TestNewContact(t *testing.T) {
	plan, _ := callstate.NewNumberPlan("DE")
	c, err := callstate.NewContact(plan, "  Anna Becker ", []string{"0160 12345678", "+49 160 12345678", "21"})
	if err != nil || c.Name != "Anna Becker" || !reflect.DeepEqual(c.Numbers, []string{"4916012345678", "21"}) {
		t.Errorf("got %+v, %v", c, err)
	}
	for name, tt := range map[string]struct {
		name    string
		numbers []string
		want    error
	}{
		"ErrNoName":      {" ", []string{"0160 12345678"}, callstate.ErrInvalidContact},
		"ErrNoNumber":    {"Anna", nil, callstate.ErrInvalidContact},
		"ErrBadNumber":   {"Anna", []string{"0160 1234567x"}, callstate.ErrBadNumber},
		"ErrControlChar": {"Anna\u202eBecker", []string{"0160 12345678"}, callstate.ErrInvalidContact},
		"ErrLongName":    {strings.Repeat("a", 201), []string{"0160 12345678"}, callstate.ErrInvalidContact},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := callstate.NewContact(plan, tt.name, tt.numbers); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzParseContacts(f *testing.F) {
	for _, name := range []string{"contacts-google.csv", "contacts-outlook-de.csv", "contacts-iphone.vcf", "contacts-android.vcf"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	plan, _ := callstate.NewNumberPlan("DE")
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := callstate.ParseContacts(strings.NewReader(string(b)), plan)
		if err != nil {
			return
		}
		for _, c := range got.Contacts {
			if err := c.Validate(); err != nil {
				t.Fatalf("parsed an invalid contact %+v: %v", c, err)
			}
		}
	})
}

// TestParseContactsGroups reads groups from a CSV column (Google's Labels,
// Outlook's Categories) and from vCard CATEGORIES.
func TestParseContactsGroups(t *testing.T) {
	plan, _ := callstate.NewNumberPlan("DE")
	tests := []struct {
		name, file string
		want       map[string][]string
	}{
		{"GoogleLabels", "Name,Phone 1 - Value,Labels\nVera,0170 1111111,VIP ::: * myContacts\nOtto,0170 2222222,\n",
			map[string][]string{"Vera": {"VIP"}, "Otto": nil}},
		{"OutlookCategories", "First Name;Last Name;Mobile Phone;Categories\nAnna;Bauer;0170 3333333;Customers;VIP\n",
			map[string][]string{"Anna Bauer": {"Customers"}}},
		{"GroupColumn", "name,phone,group\nACME,030 1234567,\"Suppliers, vip\"\nACME,030 7654321,Suppliers\n",
			map[string][]string{"ACME": {"Suppliers", "vip"}}},
		{"VCardCategories", "BEGIN:VCARD\nVERSION:3.0\nFN:Jana\nTEL:0170 4444444\nCATEGORIES:VIP,Friends\nEND:VCARD\n",
			map[string][]string{"Jana": {"VIP", "Friends"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := callstate.ParseContacts(strings.NewReader(tt.file), plan)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, c := range f.Contacts {
				got[c.Name] = c.Groups
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("groups %v, want %v", got, tt.want)
			}
		})
	}
}
