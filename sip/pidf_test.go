package sip

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// presenceCase is the expected outcome of parsing one file in testdata/pidf:
// either want and status, or an error matching every one of errs.
type presenceCase struct {
	want   Presence
	status string
	errs   []error
}

// presenceFiles lists every file in testdata/pidf (see SOURCES.md there for
// where each came from) and what parsing it must give.
var presenceFiles = map[string]presenceCase{
	"freeswitch-available.xml": {
		want:   Presence{Entity: "sip:1000@192.168.0.24", Open: true, Basic: "open", Note: "Available"},
		status: StatusIdle,
	},
	"freeswitch-on-the-phone.xml": {
		want: Presence{
			Entity: "sip:1000@bling.babblevoice.com", Open: true, Basic: "open",
			Activities: []string{"on-the-phone"}, Note: "Talk 07766088671",
		},
		status: StatusBusy,
	},
	"asterisk-note-ready-no-namespace.xml": {
		want:   Presence{Open: true, Basic: "open", Note: "Ready"},
		status: StatusIdle,
	},
	"zoiper-publish-online.xml": {
		want:   Presence{Entity: "sip:1000@bling.babblevoice.com;transport=UDP", Open: true, Basic: "open", Note: "Online"},
		status: StatusIdle,
	},
	// application/xpidf+xml, not PIDF: its root is also <presence>, so it
	// parses, with no tuple and so no status. The DOCTYPE must not get in
	// the way.
	"polycom-vvx101-xpidf-doctype.xml": {
		want:   Presence{},
		status: StatusUnavailable,
	},
	"rfc3863-example.xml": {
		want:   Presence{Entity: "pres:someone@example.com", Open: true, Basic: "open", Note: "Don't Disturb Please!"},
		status: StatusIdle,
	},
	"synthetic-ringing-on-the-phone.xml": {
		want: Presence{
			Entity: "sip:201@pbx", Open: true, Basic: "open",
			Activities: []string{"on-the-phone"}, Note: "Ringing",
		},
		status: StatusRinging,
	},
	"synthetic-closed-two-tuples.xml": {
		want: Presence{
			Entity: "sip:300@pbx", Basic: "closed",
			Activities: []string{"away", "busy"}, Note: "Unavailable",
		},
		status: StatusUnavailable,
	},
	// Entities declared in a DOCTYPE are never expanded: the body is refused.
	"synthetic-entity-expansion.xml": {errs: []error{ErrBadBody}},
}

func TestParsePresenceTestdata(t *testing.T) {
	runTestdata(t, "pidf", presenceFiles, func(t *testing.T, body []byte, c presenceCase) {
		got, err := ParsePresence(body)
		checkErrs(t, err, c.errs)
		if len(c.errs) != 0 {
			return
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParsePresence:\n got %+v\nwant %+v", got, c.want)
		}
		if s := got.Status(); s != c.status {
			t.Errorf("Status() = %q, want %q", s, c.status)
		}
	})
}

func TestParsePresenceRejects(t *testing.T) {
	tests := []struct {
		name, body, inMessage string
	}{
		{"ErrNotXML", "Messages-Waiting: no", "not XML"},
		{"ErrTruncated", `<presence entity="sip:1@pbx"><tuple id="t"><status><basic>open`, "not XML"},
		{"ErrWrongRoot", `<dialog-info version="1" state="full"/>`, "want <presence>"},
		{"ErrTooDeep", `<presence>` + strings.Repeat("<x>", MaxDepth) + strings.Repeat("</x>", MaxDepth) + `</presence>`, "nested deeper"},
		{"ErrTooManyElements", `<presence>` + strings.Repeat("<note/>", MaxElements) + `</presence>`, "more than 4096 elements"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePresence([]byte(tt.body))
			if !errors.Is(err, ErrBadBody) {
				t.Fatalf("error %v, want one matching ErrBadBody", err)
			}
			if !strings.HasPrefix(err.Error(), "sip: pidf: ") || !strings.Contains(err.Error(), tt.inMessage) {
				t.Errorf("error %q, want it to start with %q and contain %q", err, "sip: pidf: ", tt.inMessage)
			}
			if !reflect.DeepEqual(got, Presence{}) {
				t.Errorf("got %+v with the error, want a zero Presence", got)
			}
		})
	}
	_, err := ParsePresence(make([]byte, MaxBodySize+1))
	checkErrs(t, err, []error{ErrBadBody, ErrLimit})
	_, err = ParsePresence([]byte(" \r\n"))
	if !errors.Is(err, ErrEmptyBody) {
		t.Errorf("white space body: error %v, want ErrEmptyBody", err)
	}
}

func TestPresenceStatus(t *testing.T) {
	tests := []struct {
		name string
		p    Presence
		want string
	}{
		{"UnavailableClosed", Presence{Basic: "closed", Note: "Ringing", Activities: []string{"busy"}}, StatusUnavailable},
		{"UnavailableNoTuple", Presence{Note: "Ready"}, StatusUnavailable},
		{"RingingAsteriskOnThePhone", Presence{Open: true, Basic: "open", Note: "Ringing", Activities: []string{"on-the-phone"}}, StatusRinging},
		{"RingingAsteriskOldBusy", Presence{Open: true, Basic: "open", Note: "Ringing", Activities: []string{"busy"}}, StatusRinging},
		{"RingingFreeSWITCHNote", Presence{Open: true, Basic: "open", Note: "Ring 1001"}, StatusRinging},
		{"BusyOnThePhone", Presence{Open: true, Basic: "open", Note: "On the phone", Activities: []string{"on-the-phone"}}, StatusBusy},
		{"BusyOnHold", Presence{Open: true, Basic: "open", Note: "On hold", Activities: []string{"busy"}}, StatusBusy},
		{"BusySecondActivity", Presence{Open: true, Basic: "open", Activities: []string{"away", "on-the-phone"}}, StatusBusy},
		{"IdleOfferingIsNotRinging", Presence{Open: true, Basic: "open", Note: "Offering help"}, StatusIdle},
		{"IdleAway", Presence{Open: true, Basic: "open", Activities: []string{"away"}}, StatusIdle},
		{"IdleReady", Presence{Open: true, Basic: "open", Note: "Ready"}, StatusIdle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Status(); got != tt.want {
				t.Errorf("Status() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParsePresenceActivities(t *testing.T) {
	body := `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:9@pbx">
<tuple id="a"><status><basic>closed</basic></status></tuple>
<tuple id="b"><status><basic> OPEN </basic></status></tuple>
<dm:person><rpid:activities><rpid:Meeting/><rpid:other>lunch</rpid:other><rpid:busy/></rpid:activities></dm:person>
<dm:person><rpid:activities><rpid:busy/><rpid:on-the-phone/></rpid:activities><rpid:note>second</rpid:note></dm:person>
</presence>`
	got, err := ParsePresence([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := Presence{
		Entity: "sip:9@pbx", Open: true, Basic: "open",
		Activities: []string{"meeting", "other", "busy", "on-the-phone"}, Note: "second",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %+v\nwant %+v", got, want)
	}
}

func FuzzParsePresence(f *testing.F) {
	addSeeds(f, "pidf")
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePresence(body)
		if err != nil {
			if !errors.Is(err, ErrBadBody) && !errors.Is(err, ErrEmptyBody) {
				t.Fatalf("error %v matches neither ErrBadBody nor ErrEmptyBody", err)
			}
			return
		}
		if p.Open != (p.Basic == "open") {
			t.Fatalf("Open %v with Basic %q", p.Open, p.Basic)
		}
		switch s := p.Status(); s {
		case StatusIdle, StatusRinging, StatusBusy, StatusUnavailable:
		default:
			t.Fatalf("Status() = %q", s)
		}
	})
}

func BenchmarkParsePresence(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("testdata", "pidf", "freeswitch-on-the-phone.xml"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParsePresence(body); err != nil {
			b.Fatal(err)
		}
	}
}
