package presence

import (
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sip"
)

var updateGolden = flag.Bool("update-agent", false, "rewrite sip/presence/testdata/agent from the agent's bodies")

// TestAgentBodies compares the agent's bodies with the golden files in
// testdata/agent (see its README.md for what each is modelled on), and
// reads each back with the subscriber's own parsers.
func TestAgentBodies(t *testing.T) {
	const entity = "sip:w0@callstate.example"
	ringing := []callstate.Call{{Source: callstate.SourceSipgate, Key: "c1", CallID: "c1", Direction: callstate.DirectionIn,
		From: "4917012345", To: "492111234", UserIDs: []string{"w0"}, State: callstate.StateRinging}}
	answered := []callstate.Call{{Source: callstate.SourceSipgate, Key: "c1", CallID: "c1", Direction: callstate.DirectionIn,
		From: "4917012345", Extension: "w0", State: callstate.StateAnswered}}
	out := []callstate.Call{{Source: callstate.SourceSIP, Key: "100/d", CallID: "a84b4c76e66710@pc33", Direction: callstate.DirectionOut,
		From: "sip:100@pbx", To: "sip:101@pbx", Extension: "100", State: callstate.StateAnswered, OnHold: true}}
	view := func(lamp string, calls []callstate.Call, src callstate.Source, ext string) *lampView {
		ls := []callstate.LampStatus{{Source: src, Extension: ext, Lamp: lamp}}
		return buildViews(ls, calls, "callstate.example")[LampRef{src, ext}]
	}
	idle := view("idle", nil, callstate.SourceSipgate, "w0")
	ring := view("ringing", ringing, callstate.SourceSipgate, "w0")
	busy := view("busy", answered, callstate.SourceSipgate, "w0")
	held := view("hold", out, callstate.SourceSIP, "100")
	tests := []struct {
		file       string
		body       []byte
		wantStates []string
		wantStatus string
	}{
		{"dialog-idle.xml", dialogInfoBody(entity, 0, idle, nil), []string{"terminated"}, ""},
		{"dialog-ringing.xml", dialogInfoBody(entity, 1, ring, nil), []string{"early"}, ""},
		{"dialog-busy.xml", dialogInfoBody(entity, 2, busy, nil), []string{"confirmed"}, ""},
		{"dialog-ended.xml", dialogInfoBody(entity, 3, idle, busy.dialogs), []string{"terminated"}, ""},
		{"dialog-hold-outgoing.xml", dialogInfoBody("sip:100@callstate.example", 4, held, nil), []string{"confirmed"}, ""},
		{"dialog-busy-no-calls.xml", dialogInfoBody(entity, 5, view("busy", nil, callstate.SourceSIP, "100"), nil), []string{"confirmed"}, ""},
		{"pidf-idle.xml", pidfBody(entity, idle), nil, "idle"},
		{"pidf-ringing.xml", pidfBody(entity, ring), nil, "ringing"},
		{"pidf-busy.xml", pidfBody(entity, busy), nil, "busy"},
		{"pidf-unavailable.xml", pidfBody(entity, view("unavailable", nil, callstate.SourceSIP, "100")), nil, "unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "agent", tt.file)
			if *updateGolden {
				if err := os.WriteFile(path, tt.body, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(want) != string(tt.body) {
				t.Errorf("body differs from %s (go test ./sip/presence -run TestAgentBodies -update-agent rewrites it):\n%s", path, tt.body)
			}
			if tt.wantStates != nil {
				di, err := sip.ParseDialogInfo(tt.body)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, d := range di.Dialogs {
					got = append(got, d.State)
				}
				if len(got) != len(tt.wantStates) || got[0] != tt.wantStates[0] {
					t.Errorf("dialog states %v, want %v", got, tt.wantStates)
				}
				return
			}
			p, err := sip.ParsePresence(tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Status(); got != tt.wantStatus {
				t.Errorf("presence status %s, want %s", got, tt.wantStatus)
			}
		})
	}
}

// BenchmarkAgentBodies renders a ringing lamp's dialog-info document with
// the agent's builder, and, as the anchor, the same document from typed
// structs with encoding/xml (the other way the bodies could be made).
//
//	go test ./sip/presence -run '^$' -bench AgentBodies -benchmem
func BenchmarkAgentBodies(b *testing.B) {
	const entity = "sip:w0@callstate.example"
	calls := []callstate.Call{{Source: callstate.SourceSipgate, Key: "c1", CallID: "c1", Direction: callstate.DirectionIn,
		From: "4917012345", To: "492111234", UserIDs: []string{"w0"}, State: callstate.StateRinging}}
	v := buildViews([]callstate.LampStatus{{Source: callstate.SourceSipgate, Extension: "w0", Lamp: "ringing"}}, calls, "callstate.example")[LampRef{callstate.SourceSipgate, "w0"}]
	b.Run("builder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = dialogInfoBody(entity, 1, v, nil)
		}
	})
	b.Run("encoding-xml", func(b *testing.B) {
		type identity struct {
			Display string `xml:"display,attr,omitempty"`
			URI     string `xml:",chardata"`
		}
		type target struct {
			URI string `xml:"uri,attr"`
		}
		type party struct {
			Identity identity `xml:"identity"`
			Target   target   `xml:"target"`
		}
		type dialog struct {
			ID        string `xml:"id,attr"`
			CallID    string `xml:"call-id,attr,omitempty"`
			Direction string `xml:"direction,attr,omitempty"`
			State     string `xml:"state"`
			Local     *party `xml:"local"`
			Remote    *party `xml:"remote"`
		}
		type dialogInfo struct {
			XMLName xml.Name `xml:"urn:ietf:params:xml:ns:dialog-info dialog-info"`
			Version uint32   `xml:"version,attr"`
			State   string   `xml:"state,attr"`
			Entity  string   `xml:"entity,attr"`
			Dialogs []dialog `xml:"dialog"`
		}
		b.ReportAllocs()
		for b.Loop() {
			doc := dialogInfo{Version: 1, State: "full", Entity: entity}
			for _, d := range v.dialogs {
				doc.Dialogs = append(doc.Dialogs, dialog{ID: d.id, CallID: d.callID, Direction: d.direction, State: d.state,
					Local:  &party{Identity: identity{URI: entity}, Target: target{URI: entity}},
					Remote: &party{Identity: identity{URI: d.remote, Display: d.remoteName}, Target: target{URI: d.remote}}})
			}
			out, err := xml.MarshalIndent(doc, "", "  ")
			if err != nil {
				b.Fatal(err)
			}
			_ = append([]byte(xml.Header), out...)
		}
	})
}
