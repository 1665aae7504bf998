package sipgateapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate/sipgateapi"
	"github.com/callstate/callstate/sipgateapi/sipgatetest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestParseGolden reads each endpoint's answer, in the shape sipgate
// documents, and compares what the client makes of it with its golden
// file.
func TestParseGolden(t *testing.T) {
	for _, tt := range []struct {
		name  string
		parse func([]byte) (any, error)
	}{
		{"calls", func(b []byte) (any, error) { return sipgateapi.ParseCalls(b) }},
		{"history", func(b []byte) (any, error) { return sipgateapi.ParseHistory(b) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tt.name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			v, err := tt.parse(in)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(v, "", "  ")
			got = append(got, '\n')
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s parsed differently from %s:\n%s", tt.name, golden, got)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	for _, body := range []string{``, `[]`, `{"items": null}`, `{"totalCount": 3}`, `{"items": [], "totalCount": -1}`, `<html>`} {
		if _, err := sipgateapi.ParseHistory([]byte(body)); !errors.Is(err, sipgateapi.ErrBadAnswer) {
			t.Errorf("ParseHistory(%q) = %v, want ErrBadAnswer", body, err)
		}
	}
	for _, body := range []string{``, `{}`, `{"data": 1}`} {
		if _, err := sipgateapi.ParseCalls([]byte(body)); !errors.Is(err, sipgateapi.ErrBadAnswer) {
			t.Errorf("ParseCalls(%q) = %v, want ErrBadAnswer", body, err)
		}
	}
}

func client(t *testing.T, s *sipgatetest.Server, id, token string) *sipgateapi.Client {
	t.Helper()
	c, err := sipgateapi.New(s.URL+"/v2", id, token, sipgateapi.Options{Timeout: time.Second, Tries: 3,
		Backoff: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func entries(n int, t0 time.Time) []sipgatetest.Entry {
	es := make([]sipgatetest.Entry, n)
	for i := range es {
		es[i] = sipgatetest.Entry{ID: fmt.Sprint(100000 + i), CallID: fmt.Sprintf("call-%05d", i), Type: "CALL",
			Source: "+4915799912345", Target: "+4930123456", Direction: "INCOMING", Incoming: true, Status: "PICKUP",
			CallStatus: "SUCCESS", Created: t0.Add(time.Duration(i) * time.Second), LastModified: t0.Add(time.Duration(i+60) * time.Second),
			Duration: 30, Labels: []string{}, Endpoints: []sipgatetest.Endpoint{sipgatetest.Ext("ROUTED", "w0", "USER")}}
	}
	return es
}

func TestHistoryPaging(t *testing.T) {
	s := sipgatetest.New(t)
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	s.AddHistory(entries(2500, t0)...)
	s.AddHistory(sipgatetest.Entry{ID: "late", CallID: "late", Type: "CALL", Created: t0.Add(24 * time.Hour)})
	c, err := sipgateapi.New(s.URL+"/v2", sipgatetest.TokenID, sipgatetest.Token, sipgateapi.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err = c.History(context.Background(), t0, t0.Add(time.Hour), func(p sipgateapi.HistoryPage) error {
		for _, h := range p.Calls {
			seen[h.CallID] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2500 || seen["late"] {
		t.Errorf("saw %d calls (late: %v), want the 2500 of the hour", len(seen), seen["late"])
	}
	if n := s.Requests("/history"); n != 3 {
		t.Errorf("%d requests, want 3 pages of at most 1000", n)
	}
	for _, q := range s.Queries() {
		v, _ := url.ParseQuery(q)
		if v.Get("limit") != "1000" || v.Get("from") == "" || v.Get("to") == "" || len(v["types"]) != 2 {
			t.Errorf("query %q", q)
		}
	}
}

func TestFailures(t *testing.T) {
	ctx := context.Background()
	walk := func(c *sipgateapi.Client) error {
		return c.History(ctx, time.Time{}, time.Now(), func(sipgateapi.HistoryPage) error { return nil })
	}
	t.Run("ErrUnauthorized", func(t *testing.T) {
		s := sipgatetest.New(t)
		err := walk(client(t, s, sipgatetest.TokenID, "wrong"))
		if !errors.Is(err, sipgateapi.ErrUnauthorized) || !strings.Contains(err.Error(), "SIPGATE_TOKEN") {
			t.Errorf("err = %v", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Error("the error shows the token")
		}
		if n := s.Requests("/history"); n != 1 {
			t.Errorf("%d requests: a refused token is not tried again", n)
		}
	})
	t.Run("ErrForbiddenNamesScope", func(t *testing.T) {
		s := sipgatetest.New(t)
		s.Revoke("rtcm:read")
		_, err := client(t, s, sipgatetest.TokenID, sipgatetest.Token).LiveCalls(ctx)
		if !errors.Is(err, sipgateapi.ErrForbidden) || !strings.Contains(err.Error(), "rtcm:read") {
			t.Errorf("err = %v", err)
		}
		s.Revoke("history:read")
		if err := walk(client(t, s, sipgatetest.TokenID, sipgatetest.Token)); !strings.Contains(fmt.Sprint(err), "history:read") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("OK/RateLimitedWaitsRetryAfter", func(t *testing.T) {
		s := sipgatetest.New(t)
		s.SetLive("a", "b")
		s.Fail("/calls", sipgatetest.Fault{Status: 429, RetryAfter: "1"})
		start := time.Now()
		ids, err := client(t, s, sipgatetest.TokenID, sipgatetest.Token).LiveCalls(ctx)
		if err != nil || len(ids) != 2 {
			t.Fatalf("LiveCalls = %v, %v", ids, err)
		}
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("tried again after %v, before Retry-After's second", d)
		}
	})
	t.Run("OK/ServerErrorTriedAgain", func(t *testing.T) {
		s := sipgatetest.New(t)
		s.Fail("/calls", sipgatetest.Fault{Status: 500}, sipgatetest.Fault{Status: 0})
		if _, err := client(t, s, sipgatetest.TokenID, sipgatetest.Token).LiveCalls(ctx); err != nil || s.Requests("/calls") != 3 {
			t.Errorf("err = %v after %d requests, want success at the third", err, s.Requests("/calls"))
		}
	})
	t.Run("OK/SlowAnswerTriedAgain", func(t *testing.T) {
		s := sipgatetest.New(t)
		s.Fail("/calls", sipgatetest.Fault{Status: 200, Delay: 3 * time.Second})
		if _, err := client(t, s, sipgatetest.TokenID, sipgatetest.Token).LiveCalls(ctx); err != nil || s.Requests("/calls") != 2 {
			t.Errorf("err = %v after %d requests, want success at the second", err, s.Requests("/calls"))
		}
	})
	t.Run("ErrUnavailable", func(t *testing.T) {
		s := sipgatetest.New(t)
		s.SetDown(true)
		_, err := client(t, s, sipgatetest.TokenID, sipgatetest.Token).LiveCalls(ctx)
		if !errors.Is(err, sipgateapi.ErrUnavailable) || s.Requests("/calls") != 3 {
			t.Errorf("err = %v after %d requests, want ErrUnavailable after 3", err, s.Requests("/calls"))
		}
	})
	t.Run("ErrCancelledWhileWaiting", func(t *testing.T) {
		s := sipgatetest.New(t)
		s.Fail("/calls", sipgatetest.Fault{Status: 429, RetryAfter: "60"})
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := client(t, s, sipgatetest.TokenID, sipgatetest.Token).LiveCalls(cctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want the context's", err)
		}
	})
}

func TestNewChecks(t *testing.T) {
	for _, tt := range []struct{ url, id, tok string }{{"ftp://x", "a", "s3cr3t"}, {"https://", "a", "s3cr3t"}, {"", "", "s3cr3t"}, {"", "a", ""}} {
		if _, err := sipgateapi.New(tt.url, tt.id, tt.tok, sipgateapi.Options{}); err == nil {
			t.Errorf("New(%q, %q, %q) took it", tt.url, tt.id, tt.tok)
		} else if tt.tok != "" && strings.Contains(err.Error(), tt.tok) {
			t.Errorf("error shows the token: %v", err)
		}
	}
}

// FuzzParseHistory: whatever the body, ParseHistory returns an error or a
// page whose entries are all accounted for, and never panics.
func FuzzParseHistory(f *testing.F) {
	b, _ := os.ReadFile(filepath.Join("testdata", "history.json"))
	f.Add(b)
	f.Add([]byte(`{"items": [{"type": "CALL", "duration": -1}], "totalCount": 1}`))
	f.Add([]byte(`{"items": [{"type": "CALL", "created": "2026-12-01T09:15:02+01:00", "duration": 1e300}], "totalCount": 1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := sipgateapi.ParseHistory(body)
		if err != nil {
			return
		}
		if p.Entries != len(p.Calls)+len(p.Voicemails)+p.Other+len(p.Unreadable) {
			t.Fatalf("%d entries, %d calls + %d voicemails + %d other + %d unreadable", p.Entries, len(p.Calls), len(p.Voicemails), p.Other, len(p.Unreadable))
		}
		for _, h := range p.Calls {
			if h.Duration < 0 {
				t.Fatalf("negative duration %v", h.Duration)
			}
		}
	})
}

// FuzzParseCalls: no panic, and no empty call id taken.
func FuzzParseCalls(f *testing.F) {
	b, _ := os.ReadFile(filepath.Join("testdata", "calls.json"))
	f.Add(b)
	f.Fuzz(func(t *testing.T, body []byte) {
		ids, err := sipgateapi.ParseCalls(body)
		if err != nil {
			return
		}
		for _, id := range ids {
			if id == "" {
				t.Fatal("empty call id")
			}
		}
	})
}
