package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// get requests path from in with header h and decodes a JSON body into v
// (if not nil). It returns the status and the raw body.
func get(tb testing.TB, in *instance, path string, h http.Header, v any) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, in.url+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if v != nil && res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, v); err != nil {
			tb.Fatalf("GET %s: %v in %s", path, err, b)
		}
	}
	return res.StatusCode, string(b)
}

type page struct {
	Calls []struct {
		ID        int64  `json:"id"`
		Key       string `json:"key"`
		State     string `json:"state"`
		Extension string `json:"extension"`
		Source    string `json:"source"`
	} `json:"calls"`
	NextCursor string `json:"next_cursor"`
}

func keys(p page) string {
	var ks []string
	for _, c := range p.Calls {
		ks = append(ks, c.Key)
	}
	return strings.Join(ks, ",")
}

func TestAPI(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{}, handlers.StreamOptions{})
	for i := range 4 { // c0 … c3 ended, each for user w<i>
		n, a, h := sipgateCall(fmt.Sprintf("c%d", i), i)
		in.post(t, n)
		in.post(t, a)
		in.post(t, h)
	}
	n, _, _ := sipgateCall("live", 1)
	in.post(t, n)

	t.Run("Filters", func(t *testing.T) {
		tests := []struct{ query, want string }{
			{"", "live,c3,c2,c1,c0"},
			{"?active=true", "live"},
			{"?active=false", "live,c3,c2,c1,c0"},
			{"?extension=w1", "live,c1"},
			{"?extension=w1&active=1", "live"},
			{"?source=sip", ""},
			{"?source=sipgate&limit=2", "live,c3"},
			{"?since=2000-01-01T00:00:00Z", "live,c3,c2,c1,c0"},
			{"?since=2999-01-01T00:00:00%2B02:00", ""},
		}
		for _, tt := range tests {
			var p page
			if code, body := get(t, in, "/api/calls"+tt.query, nil, &p); code != http.StatusOK || keys(p) != tt.want {
				t.Errorf("%s: %d %s, want %s", tt.query, code, body, tt.want)
			}
		}
	})
	t.Run("Paging", func(t *testing.T) {
		var all []string
		path := "/api/calls?limit=2"
		for range 5 {
			var p page
			req, _ := http.NewRequest(http.MethodGet, in.url+path, nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			json.NewDecoder(res.Body).Decode(&p) //nolint:errcheck // checked below
			res.Body.Close()
			all = append(all, keys(p))
			if p.NextCursor == "" {
				if link := res.Header.Get("Link"); link != "" {
					t.Errorf("last page has Link %s", link)
				}
				break
			}
			if link := res.Header.Get("Link"); !strings.Contains(link, "cursor="+p.NextCursor) || !strings.Contains(link, `rel="next"`) {
				t.Errorf("Link %q", link)
			}
			path = "/api/calls?limit=2&cursor=" + p.NextCursor
		}
		if got := strings.Join(all, "|"); got != "live,c3|c2,c1|c0" {
			t.Fatalf("pages %s", got)
		}
	})
	t.Run("BadParameters", func(t *testing.T) {
		tests := []struct{ query, word string }{
			{"?limit=0", "limit"},
			{"?limit=1001", "limit"},
			{"?limit=ten", "limit"},
			{"?active=yes", "active"},
			{"?since=yesterday", "since"},
			{"?source=fax", "source"},
			{"?cursor=!!", "cursor"},
			{"?cursor=YWJj", "cursor"},
			{"?extention=w1", "extention"},
			{"?limit=1&limit=2", "limit"},
		}
		for _, tt := range tests {
			code, body := get(t, in, "/api/calls"+tt.query, nil, nil)
			var e struct{ Error string }
			if code != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, tt.word) {
				t.Errorf("%s: %d %s, want 400 naming %s", tt.query, code, body, tt.word)
			}
		}
	})
	t.Run("CallWithEvents", func(t *testing.T) {
		var p page
		get(t, in, "/api/calls?extension=w2", nil, &p)
		var c struct {
			Key    string `json:"key"`
			State  string `json:"state"`
			Events []struct {
				Type    string `json:"type"`
				Payload string `json:"payload"`
			} `json:"events"`
		}
		code, body := get(t, in, fmt.Sprintf("/api/calls/%d", p.Calls[0].ID), nil, &c)
		if code != http.StatusOK || c.Key != "c2" || c.State != "ended" || len(c.Events) != 3 ||
			c.Events[0].Type != "newCall" || !strings.Contains(c.Events[0].Payload, "callId=c2") {
			t.Fatalf("%d %s", code, body)
		}
		for path, want := range map[string]int{"/api/calls/999999": 404, "/api/calls/x": 400, "/api/calls/-1": 400} {
			if code, body := get(t, in, path, nil, nil); code != want || !strings.Contains(body, `"error"`) {
				t.Errorf("%s: %d %s", path, code, body)
			}
		}
	})
	t.Run("Lamps", func(t *testing.T) {
		if err := in.store.AddExtensions(t.Context(), []string{"100"}); err != nil {
			t.Fatal(err)
		}
		var ls struct {
			Lamps []struct{ Source, Extension, Name, Lamp string }
		}
		code, body := get(t, in, "/api/lamps", nil, &ls)
		got := map[string]string{}
		for _, l := range ls.Lamps {
			got[l.Source+"/"+l.Extension+"/"+l.Name] = l.Lamp
		}
		want := "map[sip/100/:unavailable sipgate/w0/User 0:idle sipgate/w1/User 1:ringing sipgate/w2/User 2:idle sipgate/w3/User 3:idle]"
		if code != http.StatusOK || fmt.Sprint(got) != want {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("OpenAPI", func(t *testing.T) {
		code, body := get(t, in, "/api/openapi.yaml", nil, nil)
		if code != http.StatusOK || !strings.HasPrefix(body, "openapi: 3.1") || !strings.Contains(body, "/api/stream") {
			t.Fatalf("%d %.100s", code, body)
		}
	})
	t.Run("Board", func(t *testing.T) {
		for path, want := range map[string]string{"/": "<title>callstate", "/board/board.js": "EventSource", "/board/board.css": ".lamp"} {
			if code, body := get(t, in, path, nil, nil); code != http.StatusOK || !strings.Contains(body, want) {
				t.Errorf("%s: %d %.80s", path, code, body)
			}
		}
	})
}

func TestAccess(t *testing.T) {
	const token, user, pass = "0123456789abcdef-token", "wall", "s3cret-pass"
	basic := func(u, p string) http.Header {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(u, p)
		return r.Header
	}
	bearer := func(t string) http.Header { return http.Header{"Authorization": {"Bearer " + t}} }
	db := storetest.NewDatabase(t)
	tests := []struct {
		name string
		opts handlers.DashboardOptions
		path string
		h    http.Header
		want int
	}{
		{"OffOpen", handlers.DashboardOptions{}, "/api/lamps", nil, 200},
		{"TokenMissing", handlers.DashboardOptions{BearerToken: token}, "/api/lamps", nil, 401},
		{"TokenOK", handlers.DashboardOptions{BearerToken: token}, "/api/lamps", bearer(token), 200},
		{"TokenWrong", handlers.DashboardOptions{BearerToken: token}, "/api/lamps", bearer(token + "x"), 401},
		{"TokenQuery", handlers.DashboardOptions{BearerToken: token}, "/api/calls?access_token=" + token, nil, 200},
		{"TokenQueryWrong", handlers.DashboardOptions{BearerToken: token}, "/api/calls?access_token=nope", nil, 401},
		{"TokenBoard", handlers.DashboardOptions{BearerToken: token}, "/", nil, 401},
		{"TokenStream", handlers.DashboardOptions{BearerToken: token}, "/api/stream", nil, 401},
		{"TokenAssetsOpen", handlers.DashboardOptions{BearerToken: token}, "/board/board.css", nil, 200},
		{"TokenHealthzOpen", handlers.DashboardOptions{BearerToken: token}, "/healthz", nil, 200},
		{"TokenReadyzOpen", handlers.DashboardOptions{BearerToken: token}, "/readyz", nil, 200},
		{"BasicOK", handlers.DashboardOptions{BasicUser: user, BasicPassword: pass}, "/", basic(user, pass), 200},
		{"BasicWrongPassword", handlers.DashboardOptions{BasicUser: user, BasicPassword: pass}, "/", basic(user, "x"), 401},
		{"BasicWrongUser", handlers.DashboardOptions{BasicUser: user, BasicPassword: pass}, "/api/calls", basic("x", pass), 401},
		{"BothBasic", handlers.DashboardOptions{BearerToken: token, BasicUser: user, BasicPassword: pass}, "/api/calls", basic(user, pass), 200},
		{"BothBearer", handlers.DashboardOptions{BearerToken: token, BasicUser: user, BasicPassword: pass}, "/api/calls", bearer(token), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newInstance(t, db, tt.opts, handlers.StreamOptions{})
			code, body := get(t, in, tt.path, tt.h, nil)
			if code != tt.want {
				t.Fatalf("%d %s", code, body)
			}
			if code == 401 && (!strings.Contains(body, `"error":"missing or wrong credentials"`) || strings.Contains(body, token) || strings.Contains(body, pass)) {
				t.Fatalf("401 body %s", body)
			}
		})
	}
	t.Run("WebhookKeepsItsOwnCheck", func(t *testing.T) {
		in := newInstance(t, db, handlers.DashboardOptions{BearerToken: token}, handlers.StreamOptions{})
		n, _, _ := sipgateCall("open", 1)
		in.post(t, n) // no credentials: the webhook does not need the API's
	})
	t.Run("BasicChallenge", func(t *testing.T) {
		in := newInstance(t, db, handlers.DashboardOptions{BasicUser: user, BasicPassword: pass}, handlers.StreamOptions{})
		res, err := http.Get(in.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Fatalf("WWW-Authenticate %q", res.Header.Get("WWW-Authenticate"))
		}
	})
}

func TestCORS(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{
		CORSOrigins: []string{"https://grafana.example.com"}, BearerToken: "0123456789abcdef-token",
	}, handlers.StreamOptions{})
	req, _ := http.NewRequest(http.MethodOptions, in.url+"/api/calls", nil)
	req.Header.Set("Origin", "https://grafana.example.com")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "https://grafana.example.com" {
		t.Fatalf("preflight: %d %v", res.StatusCode, res.Header)
	}
	h := http.Header{"Origin": {"https://evil.example.com"}, "Authorization": {"Bearer 0123456789abcdef-token"}}
	req, _ = http.NewRequest(http.MethodGet, in.url+"/api/lamps", nil)
	req.Header = h
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("other origin allowed: %v", res.Header)
	}
	// Webhooks get no CORS headers.
	req, _ = http.NewRequest(http.MethodOptions, in.url+handlers.SipgatePath, nil)
	req.Header.Set("Origin", "https://grafana.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("webhook has CORS: %v", res.Header)
	}
}

// TestHardening: made-up paths do not grow /metrics, the board serves its
// own files only and says 404 for anything else, the read-only API says
// 405 to writes, and the Bearer scheme is case-insensitive.
func TestHardening(t *testing.T) {
	const token = "s3cret-token-for-tests"
	m := metrics.New()
	st, err := store.Open(context.Background(), storetest.NewDatabase(t), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e, err := handlers.New(handlers.Options{
		Store: st, Ready: st, Logger: slog.New(slog.DiscardHandler), Metrics: m,
		Dashboard: handlers.DashboardOptions{Store: st, BearerToken: token},
		Sipgate:   handlers.SipgateOptions{PublicURL: "https://callstate.example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path string, h http.Header) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	for i := range 200 {
		do(http.MethodGet, fmt.Sprintf("/made-up/%d", i), nil)
	}
	rec := do(http.MethodGet, "/metrics", nil)
	if n := strings.Count(rec.Body.String(), "/made-up/"); n != 0 {
		t.Errorf("/metrics names %d made-up paths", n)
	}
	if !strings.Contains(rec.Body.String(), `route="unmatched"`) {
		t.Errorf("/metrics has no unmatched route")
	}
	// /board/ itself is the installed app's page (TestBoardAppServed).
	for _, p := range []string{"/board/%ff", "/board/%c0%ae%c0%ae/go.mod", "/board/..%2fgo.mod", "/board/nope.js", "/board/board/"} {
		if rec := do(http.MethodGet, p, nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, rec.Code)
		}
	}
	if rec := do(http.MethodGet, "/board/board.js", nil); rec.Code != http.StatusOK {
		t.Errorf("GET /board/board.js: %d", rec.Code)
	}
	for _, p := range []string{"/api/calls", "/api/calls/1", "/api/lamps"} {
		rec := do(http.MethodPost, p, http.Header{"Authorization": {"Bearer " + token}})
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") == "" {
			t.Errorf("POST %s: %d, Allow %q; want 405 with Allow", p, rec.Code, rec.Header().Get("Allow"))
		}
	}
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		if rec := do(http.MethodGet, "/api/lamps", http.Header{"Authorization": {scheme + " " + token}}); rec.Code != http.StatusOK {
			t.Errorf("%s token: %d", scheme, rec.Code)
		}
	}
	if rec := do(http.MethodGet, "/api/lamps", http.Header{"Authorization": {"Basic " + token}}); rec.Code != http.StatusUnauthorized {
		t.Errorf("token under another scheme: %d, want 401", rec.Code)
	}
}
