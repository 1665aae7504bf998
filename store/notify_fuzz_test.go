package store

import "testing"

func TestParseNotification(t *testing.T) {
	tests := []struct {
		in   string
		want Change
		ok   bool
	}{
		{CallsChanged, Change{Kind: ChangeCall}, true},
		{"ext 7 101", Change{Kind: ChangeExtension, Extension: "101"}, true},
		{"ext x 101", Change{}, false},
		{"ready 0 c1", Change{Kind: ChangeReady, Ref: "c1"}, true},
		{"ready 0 a call id with spaces", Change{Kind: ChangeReady, Ref: "a call id with spaces"}, true},
		{"devices 0 -", Change{Kind: ChangeDevices}, true},
		{"ready 0 ", Change{}, false},
		{"call 12 34", Change{}, false}, // no longer sent
		{"calls ", Change{}, false},
		{"other 1 2", Change{}, false},
	}
	for _, tt := range tests {
		got, err := parseNotification(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseNotification(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

func FuzzParseNotification(f *testing.F) {
	for _, s := range []string{"ext 7 101", "ready 0 c1", "devices 0 -", "ready 0 ", CallsChanged} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseNotification(s)
		if err != nil {
			return
		}
		switch c.Kind {
		case ChangeReady:
			if c.Ref == "" || "ready 0 "+c.Ref != s {
				t.Fatalf("%q gave ready of %q", s, c.Ref)
			}
		case ChangeDevices:
		case ChangeCall:
			if s != CallsChanged {
				t.Fatalf("%q gave %+v", s, c)
			}
		case ChangeExtension:
			if c.Extension == "" {
				t.Fatalf("%q gave an extension change without extension", s)
			}
		default:
			t.Fatalf("%q gave kind %q", s, c.Kind)
		}
	})
}
