package handlers

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

func TestAdmission(t *testing.T) {
	a := newAdmission(4, 20*time.Millisecond)
	var releases []func()
	for range 4 {
		r, ok := a.acquire(context.Background(), false)
		if !ok {
			t.Fatal("a free slot was refused")
		}
		releases = append(releases, r)
	}
	if _, ok := a.acquire(context.Background(), false); ok {
		t.Fatal("an event got in past the limit")
	}
	r, ok := a.acquire(context.Background(), true)
	if !ok {
		t.Fatal("newCall got no reserved slot")
	}
	if _, ok := a.acquire(context.Background(), true); ok {
		t.Fatal("newCall got in past the reserve")
	}
	r()
	releases[0]()
	if _, ok := a.acquire(context.Background(), false); !ok {
		t.Fatal("a released slot was not reused")
	}
}

func TestAllowedFrom(t *testing.T) {
	_, n, _ := net.ParseCIDR("217.116.118.0/24")
	tests := []struct {
		name string
		nets []*net.IPNet
		ip   string
		want bool
	}{
		{"OKNoList", nil, "203.0.113.9", true},
		{"OKInList", []*net.IPNet{n}, "217.116.118.254", true},
		{"ErrOutside", []*net.IPNet{n}, "203.0.113.9", false},
		{"ErrGarbage", []*net.IPNet{n}, "not-an-ip", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := allowedFrom(tt.nets, tt.ip); got != tt.want {
				t.Errorf("allowedFrom(%s) = %v", tt.ip, got)
			}
		})
	}
}

func TestShed(t *testing.T) {
	e := echo.New()
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	e.GET("/slow", func(c echo.Context) error {
		entered <- struct{}{}
		<-release
		return c.NoContent(http.StatusOK)
	}, Shed(2, nil, "api"))
	codes := make(chan int, 2)
	for range 2 {
		go func() {
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/slow", nil))
			codes <- rec.Code
		}()
	}
	<-entered
	<-entered
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/slow", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("third request: %d, Retry-After %q; want a fast 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	close(release)
	for range 2 {
		if c := <-codes; c != http.StatusOK {
			t.Errorf("admitted request: %d", c)
		}
	}
}
