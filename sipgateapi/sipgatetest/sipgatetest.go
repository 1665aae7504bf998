// Package sipgatetest is a stand-in for sipgate's REST API, for tests: it
// serves GET /calls and GET /history in the shapes sipgate documents (see
// docs/reconcile.md), with paging, HTTP Basic authentication, scopes, and
// the failures sipgate's API can show: 401, 403, 429 with Retry-After, a
// slow answer, a 500, a connection dropped.
package sipgatetest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The token the stand-in takes.
const (
	TokenID = "token-id"
	Token   = "secret-token"
)

// Entry is a history entry, written in sipgate's field names.
type Entry struct {
	ID           string     `json:"id"`
	Source       string     `json:"source"`
	Target       string     `json:"target"`
	SourceAlias  string     `json:"sourceAlias"`
	TargetAlias  string     `json:"targetAlias"`
	Type         string     `json:"type"`
	Created      time.Time  `json:"created"`
	LastModified time.Time  `json:"lastModified"`
	Direction    string     `json:"direction"`
	Incoming     bool       `json:"incoming"`
	Status       string     `json:"status"`
	ConnectionID []string   `json:"connectionIds"`
	Read         bool       `json:"read"`
	Archived     bool       `json:"archived"`
	Note         string     `json:"note"`
	Endpoints    []Endpoint `json:"endpoints"`
	Starred      bool       `json:"starred"`
	Labels       []string   `json:"labels"`
	CallID       string     `json:"callId,omitempty"`
	Duration     int        `json:"duration"`
	CallStatus   string     `json:"callStatus,omitempty"`
	Recordings   []any      `json:"recordings,omitempty"`
}

// Endpoint is where sipgate routed a call.
type Endpoint struct {
	Type     string `json:"type"`
	Endpoint struct {
		Extension string `json:"extension"`
		Type      string `json:"type"`
	} `json:"endpoint"`
}

// Ext returns an endpoint of type typ to extension ext (of kind kind).
func Ext(typ, ext, kind string) Endpoint {
	e := Endpoint{Type: typ}
	e.Endpoint.Extension, e.Endpoint.Type = ext, kind
	return e
}

// Fault is how the stand-in answers the next requests to a path.
type Fault struct {
	Status     int           // 401, 403, 429, 500…; 0 drops the connection
	RetryAfter string        // Retry-After of a 429
	Delay      time.Duration // wait before answering (a slow answer)
}

// Server is the stand-in. Its methods are safe for concurrent use.
type Server struct {
	*httptest.Server
	mu       sync.Mutex
	entries  []Entry
	live     []string
	scopes   map[string]bool
	faults   map[string][]Fault
	down     bool
	delay    time.Duration
	requests map[string]int
	queries  []string
}

// New starts a stand-in with every scope granted; it stops with the test.
func New(tb testing.TB) *Server {
	s := &Server{scopes: map[string]bool{"history:read": true, "rtcm:read": true, "log:webhooks:read": true},
		faults: map[string][]Fault{}, requests: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.Close)
	return s
}

// AddHistory adds entries to the history.
func (s *Server) AddHistory(es ...Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = append(s.entries, es...)
}

// SetLive sets the callIds of the calls established now.
func (s *Server) SetLive(callIDs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live = slices.Clone(callIDs)
}

// Revoke takes a scope from the token.
func (s *Server) Revoke(scope string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scopes[scope] = false
}

// Fail makes the next requests to path ("/calls", "/history") answer as
// the faults say, one each, in order.
func (s *Server) Fail(path string, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[path] = append(s.faults[path], faults...)
}

// SetDown drops every connection while down: sipgate unreachable.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// SetDelay delays every answer by d.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Requests returns how many requests path had.
func (s *Server) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

// Queries returns the query strings of the requests to /history.
func (s *Server) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	path := r.URL.Path
	if n := len(path); n >= 3 && path[:3] == "/v2" {
		path = path[3:]
	}
	s.requests[path]++
	if path == "/history" {
		s.queries = append(s.queries, r.URL.RawQuery)
	}
	var f *Fault
	if fs := s.faults[path]; len(fs) > 0 {
		f, s.faults[path] = &fs[0], fs[1:]
	}
	down, delay := s.down, s.delay
	s.mu.Unlock()
	if f != nil {
		delay += f.Delay
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if down || (f != nil && f.Status == 0 && f.Delay == 0) {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if f != nil && f.Status != 0 {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		http.Error(w, http.StatusText(f.Status), f.Status)
		return
	}
	if id, tok, ok := r.BasicAuth(); !ok || id != TokenID || tok != Token {
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	switch path {
	case "/calls":
		s.calls(w)
	case "/history":
		s.history(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) scope(w http.ResponseWriter, scope string) bool {
	s.mu.Lock()
	ok := s.scopes[scope]
	s.mu.Unlock()
	if !ok {
		http.Error(w, "Forbidden", http.StatusForbidden)
	}
	return ok
}

func (s *Server) calls(w http.ResponseWriter) {
	if !s.scope(w, "rtcm:read") {
		return
	}
	type participant struct {
		ParticipantID string `json:"participantId"`
		PhoneNumber   string `json:"phoneNumber"`
		Muted         bool   `json:"muted"`
		Hold          bool   `json:"hold"`
		Owner         bool   `json:"owner"`
	}
	type call struct {
		CallID       string        `json:"callId"`
		Muted        bool          `json:"muted"`
		Recording    bool          `json:"recording"`
		Hold         bool          `json:"hold"`
		Participants []participant `json:"participants"`
	}
	s.mu.Lock()
	out := struct {
		Data []call `json:"data"`
	}{Data: []call{}}
	for _, id := range s.live {
		out.Data = append(out.Data, call{CallID: id, Participants: []participant{{ParticipantID: "p-" + id, PhoneNumber: "+4915799912345"}}})
	}
	s.mu.Unlock()
	writeJSON(w, out)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	if !s.scope(w, "history:read") {
		return
	}
	q := r.URL.Query()
	limit, offset := 10, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			http.Error(w, "limit must be 1-1000", http.StatusBadRequest)
			return
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "bad offset", http.StatusBadRequest)
			return
		}
		offset = n
	}
	var from, to time.Time
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				http.Error(w, "bad "+p.name, http.StatusBadRequest)
				return
			}
			*p.t = t
		}
	}
	types := q["types"]
	s.mu.Lock()
	var sel []Entry
	for _, e := range s.entries {
		if (len(types) == 0 || slices.Contains(types, e.Type)) &&
			(from.IsZero() || !e.Created.Before(from)) && (to.IsZero() || e.Created.Before(to)) {
			sel = append(sel, e)
		}
	}
	s.mu.Unlock()
	slices.SortStableFunc(sel, func(a, b Entry) int { return b.Created.Compare(a.Created) }) // newest first
	total := len(sel)
	sel = sel[min(offset, total):min(offset+limit, total)]
	if sel == nil {
		sel = []Entry{}
	}
	writeJSON(w, struct {
		Items      []Entry `json:"items"`
		TotalCount int     `json:"totalCount"`
	}{sel, total})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
