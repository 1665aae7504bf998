package sip

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// dialogInfoCase is the expected outcome of parsing one file in
// testdata/dialoginfo: either want, or an error matching every one of errs.
type dialogInfoCase struct {
	want DialogInfo
	errs []error
}

// dialogInfoFiles lists every file in testdata/dialoginfo (see SOURCES.md
// there for where each came from) and what parsing it must give.
var dialogInfoFiles = map[string]dialogInfoCase{
	"yealink-t46g-full-confirmed.xml": {want: DialogInfo{
		Entity: "sip:1000@10.2.1.48:5060", Version: 1, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{
			{
				ID: "65626", CallID: "0_3138198645@10.10.20.31", LocalTag: "2331766736", RemoteTag: "1786911541",
				Direction: DirectionInitiator, State: DialogConfirmed, Duration: -1,
				LocalIdentity: "sip:1000@10.2.1.48:5060", LocalTarget: "sip:1000@10.2.1.48:5060",
				RemoteIdentity: "sip:1@10.2.1.48:5060", RemoteTarget: "sip:1@10.2.1.48:5060",
			},
			{ID: "65622", State: DialogTerminated, Duration: -1},
		},
	}},
	"yealink-t46g-partial-terminated.xml": {want: DialogInfo{
		Entity: "sip:1000@10.2.1.48:5060", Version: 4, HasVersion: true, State: DocPartial,
		Dialogs: []Dialog{{ID: "65644", State: DialogTerminated, Duration: -1}},
	}},
	"asterisk-pjsip-confirmed.xml": {want: DialogInfo{
		Entity: "sip:103@192.168.1.10:5060", Version: 9, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{{ID: "103", State: DialogConfirmed, Duration: -1}},
	}},
	"asterisk-pjsip-terminated.xml": {want: DialogInfo{
		Entity: "sip:103@192.168.1.10:5060", Version: 10, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{{ID: "103", State: DialogTerminated, Duration: -1}},
	}},
	"asterisk-chansip-early.xml": {want: DialogInfo{
		Entity: "sip:101@192.168.1.10", Version: 4, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{{ID: "101", Direction: DirectionRecipient, State: DialogEarly, Duration: -1}},
	}},
	"asterisk-chansip-confirmed.xml": {want: DialogInfo{
		Entity: "sip:101@192.168.1.10", Version: 5, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{{ID: "101", State: DialogConfirmed, Duration: -1}},
	}},
	"freeswitch-full-empty.xml": {want: DialogInfo{
		Entity: "sip:1000@bling.babblevoice.com", Version: 0, HasVersion: true, State: DocFull,
	}},
	"freeswitch-terminated.xml": {want: DialogInfo{
		Entity: "sip:1000@bling.babblevoice.com", Version: 15, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{{
			ID: "4445e92c-1e3c-4796-9e3f-755a0906a1f2", Direction: DirectionRecipient,
			State: DialogTerminated, Duration: -1,
		}},
	}},
	// Cut short by the logger it was copied from: a truncated body must be
	// rejected, not half-read.
	"freeswitch-confirmed-clipped.xml": {errs: []error{ErrBadBody}},
	"kamailio-readme-early.xml": {want: DialogInfo{
		Entity: "sip:alice@example.com", Version: 1, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{{
			ID: "as7d900as8", CallID: "a84b4c76e66710", LocalTag: "1928301774", RemoteTag: "456887766",
			Direction: DirectionInitiator, State: DialogEarly, Duration: -1,
		}},
	}},
	"kamailio-readme-local-remote.xml": {want: DialogInfo{
		Version: 1, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{{
			ID: "as7d900as8", CallID: "a84b4c76e66710", LocalTag: "1928301774", RemoteTag: "456887766",
			Direction: DirectionInitiator, State: DialogEarly, Duration: -1,
			LocalIdentity: "sip:alice@example.com", LocalDisplay: "Alice", LocalTarget: "sip:alice@phone11.example.com",
			RemoteIdentity: "sip:bob@example.org", RemoteDisplay: "Bob", RemoteTarget: "sip:bobster@phone21.example.org",
		}},
	}},
	"kamailio-readme-two-dialogs.xml": {want: DialogInfo{
		Entity: "sip:alice@example.com", Version: 3, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{
			{
				ID: "as7d900as8", CallID: "a84b4c76e66710", LocalTag: "1928301774", RemoteTag: "hh76a",
				Direction: DirectionInitiator, State: DialogConfirmed, Duration: -1,
			},
			{
				ID: "j7zgt54", CallID: "ASDRRVASDRF", LocalTag: "123456789", RemoteTag: "EE345",
				Direction: DirectionRecipient, State: DialogEarly, Duration: -1,
			},
		},
	}},
	"opensips-empty-self-closing.xml": {want: DialogInfo{
		Entity: "sip:1000@example.com", Version: 0, HasVersion: true, State: DocFull,
	}},
	"sipsorcery-rfc4235-rejected.xml": {want: DialogInfo{
		Entity: "sip:alice@example.com", Version: 0, HasVersion: true, State: DocPartial,
		Dialogs: []Dialog{{
			ID: "as7d900as8", CallID: "a84b4c76e66710", LocalTag: "1928301774",
			Direction: DirectionInitiator, State: DialogTerminated, Event: "rejected", Code: 486, Duration: 145,
		}},
	}},
	"synthetic-hold-freeswitch-shape.xml": {want: DialogInfo{
		Entity: "sip:100@pbx.example.net", Version: 7, HasVersion: true, State: DocPartial,
		Dialogs: []Dialog{
			{
				ID: "5e9e04a0-a199-11e0-a661-495a2db86d6d", Direction: DirectionInitiator,
				State: DialogConfirmed, Duration: -1,
				LocalIdentity: "sip:100@pbx.example.net", LocalDisplay: "100", LocalTarget: "sip:100@pbx.example.net",
				RemoteIdentity: "sip:200@pbx.example.net", RemoteDisplay: "Reception", RemoteTarget: "sip:**100@pbx.example.net",
				LocalHeld: true,
			},
			{
				ID: "b1", Direction: DirectionRecipient, State: DialogEarly, Duration: -1,
				RemoteTarget: "sip:300@pbx.example.net", RemoteHeld: true,
			},
		},
	}},
	"synthetic-iso-8859-1-crlf.xml": {want: DialogInfo{
		Entity: "sip:100@pbx", Version: 2, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{{
			ID: "100", Direction: DirectionRecipient, State: DialogEarly, Duration: -1,
			RemoteIdentity: "sip:201@pbx", RemoteDisplay: "Jürgen Müller",
		}},
	}},
	"synthetic-bom-no-namespace.xml": {want: DialogInfo{
		Entity: "sip:100@pbx:5060", Version: 5, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{{ID: "100", State: DialogTrying, Duration: -1}},
	}},
	"synthetic-extension-namespaces.xml": {want: DialogInfo{
		Entity: "sip:100@pbx", Version: 12, HasVersion: true, State: DocFull,
		Dialogs: []Dialog{{
			ID: "d1", CallID: "c1@pbx", LocalTag: "lt", RemoteTag: "rt", Direction: DirectionRecipient,
			State: DialogTerminated, Event: "remote-bye", Code: 200, Duration: -1,
			LocalIdentity: "sip:100@pbx", LocalDisplay: "Desk", LocalTarget: "sip:100@10.0.0.5:5062",
		}},
	}},
	"synthetic-doctype.xml": {want: DialogInfo{
		Entity: "sip:100@pbx", Version: 1, HasVersion: true, State: DocFull,
	}},
	"synthetic-deep-nesting.xml": {errs: []error{ErrBadBody, ErrLimit}},
}

func TestParseDialogInfoTestdata(t *testing.T) {
	runTestdata(t, "dialoginfo", dialogInfoFiles, func(t *testing.T, body []byte, c dialogInfoCase) {
		got, err := ParseDialogInfo(body)
		checkErrs(t, err, c.errs)
		if len(c.errs) == 0 && !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParseDialogInfo:\n got %+v\nwant %+v", got, c.want)
		}
	})
}

// runTestdata calls check for every file in testdata/dir, failing for files
// with no expected outcome and for expected outcomes with no file.
func runTestdata[C any](t *testing.T, dir string, cases map[string]C, check func(*testing.T, []byte, C)) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", dir, "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[string]bool)
	for _, p := range paths {
		name := filepath.Base(p)
		seen[name] = true
		t.Run(strings.TrimSuffix(name, ".xml"), func(t *testing.T) {
			c, ok := cases[name]
			if !ok {
				t.Fatalf("no expected outcome for testdata/%s/%s", dir, name)
			}
			body, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			check(t, body, c)
		})
	}
	for name := range cases {
		if !seen[name] {
			t.Errorf("expected outcome for missing file testdata/%s/%s", dir, name)
		}
	}
}

// checkErrs fails unless err matches every one of want, or is nil when want
// is empty.
func checkErrs(t *testing.T, err error, want []error) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one matching %v", want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Errorf("error %q does not match %v", err, w)
		}
	}
}

func TestParseDialogInfoRejects(t *testing.T) {
	const head = `<?xml version="1.0"?>`
	tests := []struct {
		name, body, inMessage string
	}{
		{"ErrNotXML", "Messages-Waiting: yes\r\n", "not XML"},
		{"ErrHTML", "<html><body>502 Bad Gateway</body>", "not XML"},
		{"ErrMismatchedTags", `<dialog-info version="1" state="full"><dialog id="1"></dialog-info>`, "not XML"},
		{"ErrWrongRoot", head + `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:1@pbx"/>`, "want <dialog-info>"},
		{"ErrTwoRoots", `<dialog-info version="1" state="full"/><dialog-info version="2" state="full"/>`, "more than one root"},
		{"ErrTextAfterRoot", `<dialog-info version="1" state="full"/>trailing`, "text outside"},
		{"ErrBadDocState", `<dialog-info version="1" state="delta"/>`, `state "delta"`},
		{"ErrEmptyDocState", `<dialog-info version="1" state=""/>`, `state ""`},
		{"ErrVersionNotNumber", `<dialog-info version="one" state="full"/>`, `version "one" is not a number`},
		{"ErrVersionNegative", `<dialog-info version="-1" state="full"/>`, "is not a number"},
		{"ErrVersionOverflow", `<dialog-info version="18446744073709551616" state="full"/>`, "is not a number"},
		{"ErrDialogWithoutID", `<dialog-info version="1" state="full"><dialog><state>early</state></dialog></dialog-info>`, "dialog 1 has no id"},
		{"ErrDialogBlankID", `<dialog-info version="1" state="full"><dialog id="a"><state>early</state></dialog><dialog id="  "/></dialog-info>`, "dialog 2 has no id"},
		{"ErrUnknownDialogState", `<dialog-info version="1" state="full"><dialog id="a"><state>ringing</state></dialog></dialog-info>`, `unknown state "ringing"`},
		{"ErrEmptyDialogState", `<dialog-info version="1" state="full"><dialog id="a"><state/></dialog></dialog-info>`, `unknown state ""`},
		{"ErrUnknownEntity", `<dialog-info version="1" state="full"><note>&nbsp;</note></dialog-info>`, "not XML"},
		{"ErrUnsupportedCharset", `<?xml version="1.0" encoding="EBCDIC"?><dialog-info version="1" state="full"/>`, "EBCDIC"},
		{"ErrOnlyProlog", head + `<!-- nothing -->`, "no root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDialogInfo([]byte(tt.body))
			if !errors.Is(err, ErrBadBody) {
				t.Fatalf("error %v, want one matching ErrBadBody", err)
			}
			if errors.Is(err, ErrLimit) || errors.Is(err, ErrEmptyBody) {
				t.Errorf("error %v matches ErrLimit or ErrEmptyBody", err)
			}
			if !strings.Contains(err.Error(), tt.inMessage) || !strings.HasPrefix(err.Error(), "sip: dialog-info: ") {
				t.Errorf("error %q, want it to start with %q and contain %q", err, "sip: dialog-info: ", tt.inMessage)
			}
			if !reflect.DeepEqual(got, DialogInfo{}) {
				t.Errorf("got %+v with the error, want a zero DialogInfo", got)
			}
		})
	}
}

func TestParseDialogInfoEmpty(t *testing.T) {
	for _, body := range []string{"", " ", "\r\n\r\n", "\t \n", "\xef\xbb\xbf"} {
		got, err := ParseDialogInfo([]byte(body))
		if !errors.Is(err, ErrEmptyBody) || errors.Is(err, ErrBadBody) {
			t.Errorf("ParseDialogInfo(%q) error %v, want ErrEmptyBody and not ErrBadBody", body, err)
		}
		if !reflect.DeepEqual(got, DialogInfo{}) {
			t.Errorf("ParseDialogInfo(%q) = %+v, want zero", body, got)
		}
	}
}

func TestParseDialogInfoLenient(t *testing.T) {
	tests := []struct {
		name, body string
		want       DialogInfo
	}{
		{
			"OKNoVersionNoState", `<dialog-info entity="sip:1@pbx"/>`,
			DialogInfo{Entity: "sip:1@pbx"},
		},
		{
			"OKCaseAndSpace", `<dialog-info version=" 7 " state=" Partial "><dialog id=" x " direction="RECIPIENT"><state event="Remote-BYE" code="abc"> CONFIRMED </state><duration> 12 </duration></dialog></dialog-info>`,
			DialogInfo{Version: 7, HasVersion: true, State: DocPartial, Dialogs: []Dialog{{
				ID: "x", Direction: DirectionRecipient, State: DialogConfirmed, Event: "remote-bye", Duration: 12,
			}}},
		},
		{
			"OKNoStateElement", `<dialog-info version="1" state="full"><dialog id="x" direction="sideways"/></dialog-info>`,
			DialogInfo{Version: 1, HasVersion: true, State: DocFull, Dialogs: []Dialog{{ID: "x", Duration: -1}}},
		},
		{
			"OKNegativeDuration", `<dialog-info><dialog id="x"><state>trying</state><duration>-5</duration></dialog></dialog-info>`,
			DialogInfo{Dialogs: []Dialog{{ID: "x", State: DialogTrying, Duration: -1}}},
		},
		{
			"OKEscapedText", `<dialog-info><dialog id="a&amp;b"><state><![CDATA[early]]></state><local><identity display="&quot;Bob&quot; &lt;x&gt;">sip:b@pbx</identity></local></dialog></dialog-info>`,
			DialogInfo{Dialogs: []Dialog{{ID: "a&b", State: DialogEarly, Duration: -1, LocalIdentity: "sip:b@pbx", LocalDisplay: `"Bob" <x>`}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDialogInfo([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseDialogInfoLimits(t *testing.T) {
	dialogs := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString(`<dialog-info version="1" state="full">`)
		for range n {
			b.WriteString(`<dialog id="d"/>`)
		}
		b.WriteString(`</dialog-info>`)
		return b.Bytes()
	}
	nested := func(depth int) []byte {
		return []byte(`<dialog-info>` + strings.Repeat("<x>", depth-1) + strings.Repeat("</x>", depth-1) + `</dialog-info>`)
	}
	elements := func(n int) []byte {
		return []byte(`<dialog-info>` + strings.Repeat("<x/>", n-1) + `</dialog-info>`)
	}
	big := append([]byte(`<dialog-info version="1" state="full">`), bytes.Repeat([]byte(" "), MaxDialogBodySize)...)
	big = append(big, `</dialog-info>`...)

	tests := []struct {
		name   string
		body   []byte
		within bool
	}{
		{"OKMaxDialogs", dialogs(MaxDialogs), true},
		{"ErrTooManyDialogs", dialogs(MaxDialogs + 1), false},
		{"OKMaxDepth", nested(MaxDepth), true},
		{"ErrTooDeep", nested(MaxDepth + 1), false},
		{"OKMaxDialogElements", elements(MaxDialogElements), true},
		{"ErrTooManyElements", elements(MaxDialogElements + 1), false},
		{"OKMaxDialogBodySize", big[len(big)-MaxDialogBodySize:], false}, // cut to exactly MaxDialogBodySize: no longer XML, but not a limit error
		{"ErrBodyTooLarge", big, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDialogInfo(tt.body)
			switch {
			case tt.within && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case !tt.within && tt.name == "OKMaxDialogBodySize":
				if errors.Is(err, ErrLimit) {
					t.Fatalf("a body of exactly MaxDialogBodySize broke a limit: %v", err)
				}
			case !tt.within:
				checkErrs(t, err, []error{ErrBadBody, ErrLimit})
			}
		})
	}
}

func TestParseDialogInfoErrorClipsValues(t *testing.T) {
	_, err := ParseDialogInfo([]byte(`<dialog-info version="` + strings.Repeat("9x", 5000) + `"/>`))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("error %q: want a short error", err)
	}
}

func FuzzParseDialogInfo(f *testing.F) {
	addSeeds(f, "dialoginfo")
	f.Add([]byte(`<dialog-info version="1" state="full"><dialog id="1"><state>early</state></dialog></dialog-info>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		info, err := ParseDialogInfo(body)
		if err != nil {
			if !errors.Is(err, ErrBadBody) && !errors.Is(err, ErrEmptyBody) {
				t.Fatalf("error %v matches neither ErrBadBody nor ErrEmptyBody", err)
			}
			if !reflect.DeepEqual(info, DialogInfo{}) {
				t.Fatalf("non-zero result %+v with error %v", info, err)
			}
			return
		}
		if len(body) > MaxBodySize || len(info.Dialogs) > MaxDialogs {
			t.Fatalf("limits not enforced: %d bytes, %d dialogs", len(body), len(info.Dialogs))
		}
		if info.State != "" && info.State != DocFull && info.State != DocPartial {
			t.Fatalf("document state %q", info.State)
		}
		for _, d := range info.Dialogs {
			if d.ID == "" {
				t.Fatal("dialog without id accepted")
			}
			switch d.State {
			case "", DialogTrying, DialogProceeding, DialogEarly, DialogConfirmed, DialogTerminated:
			default:
				t.Fatalf("dialog state %q accepted", d.State)
			}
			if d.Duration < -1 {
				t.Fatalf("duration %d", d.Duration)
			}
		}
	})
}

// addSeeds adds every file in testdata/dir to the fuzzer's seed corpus.
func addSeeds(f *testing.F, dir string) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", dir, "*.xml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		body, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body)
	}
}

func BenchmarkParseDialogInfo(b *testing.B) {
	for _, name := range []string{"yealink-t46g-full-confirmed.xml", "asterisk-pjsip-confirmed.xml", "synthetic-hold-freeswitch-shape.xml"} {
		body, err := os.ReadFile(filepath.Join("testdata", "dialoginfo", name))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(strings.TrimSuffix(name, ".xml"), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseDialogInfo(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkKamailioBusyDocument parses a busy extension's full document as
// Kamailio sent it (52,759 bytes, 133 dialogs; "encoding-xml" decodes its
// tree the slow way, for comparison). The watcher's benchmark of the same
// name works out what changed in it.
func BenchmarkKamailioBusyDocument(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("testdata", "kamailio", "kamailio-5.6-busy-101-full-53k.xml"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encoding-xml", func(b *testing.B) {
		// The anchor: the tree as encoding/xml decodes it, which the parser
		// falls back to for documents outside the fast path's shape.
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := slowTree("dialog-info", body, 0, MaxDialogElements); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ParseDialogInfoRaw(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
