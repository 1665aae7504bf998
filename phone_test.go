package callstate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/callstate/callstate"
)

func TestNumberPlan(t *testing.T) {
	de, err := callstate.NewNumberPlan("de")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, normalized, formatted string
	}{
		{"International", "+49 160 12345678", "4916012345678", "+49 160 12345678"},
		{"DoubleZero", "0049 (160) 1234-5678", "4916012345678", "+49 160 12345678"},
		{"National", "0160 12345678", "4916012345678", "+49 160 12345678"},
		{"NationalBerlin", "030 2345 6789", "493023456789", "+49 30 23456789"},
		{"Trunk0InBrackets", "+49 (0)89 1234-0", "498912340", "+49 89 12340"},
		{"TelURI", "tel:+49-30-901820", "4930901820", "+49 30 901820"},
		{"Abroad", "+44 20 7946 0958", "442079460958", "+44 20 7946 0958"},
		{"Extension", "21", "21", "21"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := de.Normalize(tt.in)
			if err != nil || got != tt.normalized {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.normalized)
			}
			if f := de.Format(got); f != tt.formatted {
				t.Errorf("Format(%q) = %q, want %q", got, f, tt.formatted)
			}
		})
	}
	for _, bad := range []string{"", "call me", "+", "0", "+49 1", "12a34"} {
		t.Run("ErrBadNumber/"+bad, func(t *testing.T) {
			if got, err := de.Normalize(bad); !errors.Is(err, callstate.ErrBadNumber) {
				t.Errorf("Normalize(%q) = %q, %v; want ErrBadNumber", bad, got, err)
			}
		})
	}
}

func TestNumberPlanKeyAndFormatOfCallNumbers(t *testing.T) {
	de, _ := callstate.NewNumberPlan("")
	ch, _ := callstate.NewNumberPlan("CH")
	tests := []struct {
		name      string
		plan      callstate.NumberPlan
		in        string
		key, read string
	}{
		{"SipgateE164", de, "4916012345678", "4916012345678", "+49 160 12345678"},
		{"SIPNational", de, "0891112223", "49891112223", "+49 89 1112223"},
		{"SIPNationalOtherRegion", ch, "0441234567", "41441234567", "+41 44 123 45 67"},
		{"SIPPlus", de, "+4930555", "4930555", "+49 30 555"},
		{"Anonymous", de, "anonymous", "", "withheld"},
		{"Extension", de, "101", "101", "101"},
		{"SIPUser", de, "alice", "", "alice"},
		{"Empty", de, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if k := tt.plan.Key(tt.in); k != tt.key {
				t.Errorf("Key(%q) = %q, want %q", tt.in, k, tt.key)
			}
			if f := tt.plan.Format(tt.in); f != tt.read {
				t.Errorf("Format(%q) = %q, want %q", tt.in, f, tt.read)
			}
		})
	}
}

func TestNewNumberPlanErrUnknownRegion(t *testing.T) {
	for _, r := range []string{"XX", "Germany", "D"} {
		if _, err := callstate.NewNumberPlan(r); !errors.Is(err, callstate.ErrUnknownRegion) {
			t.Errorf("NewNumberPlan(%q) = %v, want ErrUnknownRegion", r, err)
		}
	}
}

func FuzzNumberPlan(f *testing.F) {
	for _, s := range []string{"+49 160 12345678", "0049 (160) 1234-5678", "0160 12345678", "tel:+49-30-901820", "21", "anonymous", "4916012345678", "+", "0"} {
		f.Add(s)
	}
	de, _ := callstate.NewNumberPlan("DE")
	f.Fuzz(func(t *testing.T, s string) {
		n, err := de.Normalize(s)
		if err == nil {
			if n == "" || strings.Trim(n, "0123456789") != "" || len(n) > 20 {
				t.Fatalf("Normalize(%q) = %q: not digits", s, n)
			}
			if k := de.Key(n); k != n {
				t.Fatalf("Key(Normalize(%q)) = %q, want %q", s, k, n)
			}
		}
		_ = de.Format(s)
		_ = de.Key(s)
	})
}
