package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
)

func postJSON(tb testing.TB, in *instance, path, ctype, body string) (int, string) {
	tb.Helper()
	res, err := http.Post(in.url+path, ctype, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// importFile imports a testdata phonebook export into in's store.
func importFile(tb testing.TB, in *instance, name string) {
	tb.Helper()
	f, err := os.Open("../testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	plan, _ := callstate.NewNumberPlan("DE")
	file, err := callstate.ParseContacts(f, plan)
	if err != nil {
		tb.Fatal(err)
	}
	if _, _, err := in.store.AddContacts(context.Background(), file.Contacts); err != nil {
		tb.Fatal(err)
	}
	// What the instance's phonebook does within PhonebookCheck, at once.
	if err := in.phonebook.Refresh(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

type namedCall struct {
	From          string `json:"from"`
	FromName      string `json:"from_name"`
	FromFormatted string `json:"from_formatted"`
	ToFormatted   string `json:"to_formatted"`
	Cause         string `json:"cause"`
	CauseText     string `json:"cause_text"`
}

// TestPhonebookNamesCalls imports a vCard file, adds a contact over the
// API, and finds both names on calls in the API and in the stream.
func TestPhonebookNamesCalls(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{}, handlers.StreamOptions{})
	importFile(t, in, "contacts-iphone.vcf") // Anna-Lena Becker: +49 160 12345678

	code, body := postJSON(t, in, "/api/contacts", "application/json", `{"name": "Jonas Wolf", "numbers": ["0171 2223334"]}`)
	if code != http.StatusCreated || !strings.Contains(body, `"numbers":["491712223334"]`) || !strings.Contains(body, `"+49 171 2223334"`) {
		t.Fatalf("add contact: %d %s", code, body)
	}
	if code, body := postJSON(t, in, "/api/contacts", "application/json", `{"name": "Jonas Wolf", "numbers": ["+49 171 2223334"]}`); code != http.StatusOK {
		t.Errorf("same contact again: %d %s, want 200", code, body)
	}
	var list struct {
		Contacts []struct {
			Name    string   `json:"name"`
			Numbers []string `json:"numbers"`
		} `json:"contacts"`
	}
	if code, body := get(t, in, "/api/contacts", nil, &list); code != http.StatusOK || len(list.Contacts) != 4 {
		t.Fatalf("list: %d %s", code, body)
	}

	// A stream client sees the names too.
	res, err := http.Get(in.url + "/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	for i, from := range []string{"4916012345678", "491712223334", "4989999999"} {
		id := "pb" + string(rune('0'+i))
		in.post(t, url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {from}, "to": {"4930555"},
			"callId": {id}, "user[]": {"Anna"}, "userId[]": {"w1"}}.Encode())
		in.post(t, url.Values{"event": {"hangup"}, "callId": {id}, "cause": {"busy"}}.Encode())
	}
	want := map[string]string{"4916012345678": "Anna-Lena Becker", "491712223334": "Jonas Wolf", "4989999999": ""}
	var page struct{ Calls []namedCall }
	if code, body := get(t, in, "/api/calls", nil, &page); code != http.StatusOK || len(page.Calls) != 3 {
		t.Fatalf("calls: %d %s", code, body)
	}
	for _, c := range page.Calls {
		if c.FromName != want[c.From] || c.CauseText != "busy" || c.ToFormatted != "+49 30 555" {
			t.Errorf("API call %+v, want name %q, cause busy, to +49 30 555", c, want[c.From])
		}
	}
	if page.Calls[0].FromFormatted != "+49 89 999999" {
		t.Errorf("from_formatted %q, want +49 89 999999", page.Calls[0].FromFormatted)
	}
	seen := map[string]string{}
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 64<<10)
	var data strings.Builder
	for len(seen) < 3 && time.Now().Before(deadline) {
		n, err := res.Body.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		data.Write(buf[:n])
		for _, line := range strings.Split(data.String(), "\n") {
			if d, ok := strings.CutPrefix(line, "data: "); ok && strings.HasPrefix(d, `{"id"`) {
				var c namedCall
				if json.Unmarshal([]byte(d), &c) == nil && c.Cause != "" {
					seen[c.From] = c.FromName
				}
			}
		}
	}
	for from, name := range want {
		if got, ok := seen[from]; !ok || got != name {
			t.Errorf("stream: call from %s named %q (seen %v), want %q", from, got, ok, name)
		}
	}
}

func TestAddContactErrors(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{}, handlers.StreamOptions{})
	tests := []struct {
		name, ctype, body string
		code              int
		says              string
	}{
		{"ErrNotJSON", "text/plain", `{}`, http.StatusUnsupportedMediaType, "application/json"},
		{"ErrBadJSON", "application/json", `{"name": `, http.StatusBadRequest, "JSON object"},
		{"ErrUnknownField", "application/json", `{"name": "A", "numbers": ["0301234567"], "email": "a@b"}`, http.StatusBadRequest, "unknown field"},
		{"ErrNoName", "application/json", `{"numbers": ["0301234567"]}`, http.StatusBadRequest, "no name"},
		{"ErrNoNumber", "application/json", `{"name": "A"}`, http.StatusBadRequest, "no number"},
		{"ErrBadNumber", "application/json", `{"name": "A", "numbers": ["030 12 34 5x"]}`, http.StatusBadRequest, "not a phone number"},
		{"ErrBadGroup", "application/json", `{"name": "A", "numbers": ["0301234567"], "groups": ["a\u0007b"]}`, http.StatusBadRequest, "group"},
		{"ErrGroupsNotList", "application/json", `{"name": "A", "numbers": ["0301234567"], "groups": "VIP"}`, http.StatusBadRequest, "JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := postJSON(t, in, "/api/contacts", tt.ctype, tt.body)
			if code != tt.code || !strings.Contains(body, tt.says) {
				t.Errorf("got %d %s, want %d saying %q", code, body, tt.code, tt.says)
			}
		})
	}
	if cs, _ := in.store.Contacts(context.Background()); len(cs) != 0 {
		t.Errorf("stored %v", cs)
	}
}

func TestCauseText(t *testing.T) {
	var pb *handlers.Phonebook // no contacts: numbers formatted for DE
	tests := []struct {
		name string
		call callstate.Call
		want string
	}{
		{"SipgateNormal", callstate.Call{Cause: "normalClearing"}, "hung up"},
		{"SipgateBusy", callstate.Call{Cause: "busy"}, "busy"},
		{"SipgateCancel", callstate.Call{Cause: "cancel"}, "caller hung up"},
		{"SipgateNoAnswer", callstate.Call{Cause: "noAnswer"}, "no answer"},
		{"ForwardedTo", callstate.Call{Cause: "forwarded", To: "4930555000", Answering: "4917012345678"}, "forwarded to +49 170 12345678"},
		{"ForwardedNoTarget", callstate.Call{Cause: "forwarded"}, "forwarded"},
		{"SIPRejected", callstate.Call{Cause: "rejected"}, "rejected"},
		{"SIPStatusCode", callstate.Call{Cause: "486"}, "busy (486)"},
		{"Timeout", callstate.Call{Cause: "timeout"}, "timed out"},
		{"Unknown", callstate.Call{Cause: "somethingNew"}, "somethingNew"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pb.CauseText(tt.call); got != tt.want {
				t.Errorf("CauseText(%q) = %q, want %q", tt.call.Cause, got, tt.want)
			}
		})
	}
}
