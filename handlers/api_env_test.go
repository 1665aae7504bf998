package handlers_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store"
)

// instance is one callstate HTTP server on a database, with its live
// stream fed by the database's notifications.
type instance struct {
	url       string
	store     *store.Store
	srv       *httptest.Server
	phonebook *handlers.Phonebook
}

// newInstance starts an instance on the database at dbURL. The webhook's
// signature check is off.
func newInstance(tb testing.TB, dbURL string, dash handlers.DashboardOptions, so handlers.StreamOptions) *instance {
	tb.Helper()
	return newInstanceClock(tb, dbURL, dash, so, nil)
}

// newInstanceClock is newInstance with the webhook's clock now (nil:
// time.Now).
func newInstanceClock(tb testing.TB, dbURL string, dash handlers.DashboardOptions, so handlers.StreamOptions, now func() time.Time) *instance {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, dbURL, store.Options{MaxConns: 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	dash.Store = st
	if dash.Webhooks != nil && dash.Webhooks.Store == nil {
		dash.Webhooks.Store = st
	}
	if dash.Devices != nil && dash.Devices.Store == nil {
		dash.Devices.Store = st
	}
	if dash.Now == nil && now != nil {
		dash.Now = now
	}
	if so.Logger == nil {
		so.Logger = slog.New(slog.DiscardHandler)
	}
	plan, _ := callstate.NewNumberPlan("DE")
	dash.Phonebook = handlers.NewPhonebook(st, plan, so.Logger)
	so.Phonebook = dash.Phonebook
	dash.Stream = handlers.NewStream(st, so)
	e, err := handlers.New(handlers.Options{
		Store: st, Ready: st, Logger: slog.New(slog.DiscardHandler), Dashboard: dash,
		Sipgate: handlers.SipgateOptions{PublicURL: "https://callstate.example.com", Now: now},
	})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(e)
	// Like cmd/callstate: short request timeouts, which streams outlive,
	// and a longer idle timeout (without one, the read timeout closes an
	// idle keep-alive connection, and a POST sent on it as it closes gets
	// EOF).
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 2*time.Second, 2*time.Second
	srv.Config.IdleTimeout = 2 * time.Minute
	srv.Start()
	listening := make(chan struct{})
	done := make(chan struct{}, 2)
	go func() {
		dash.Stream.Run(ctx) //nolint:errcheck // test
		done <- struct{}{}
	}()
	pbDone := make(chan struct{})
	go func() {
		dash.Phonebook.Run(ctx) //nolint:errcheck // returns nil
		close(pbDone)
	}()
	go func() {
		first := true
		st.Listen(ctx, func(c store.Change) { //nolint:errcheck // returns nil
			dash.Stream.Notify()
			if c.Kind == store.ChangeListening && first {
				first = false
				close(listening)
			}
		})
		done <- struct{}{}
	}()
	select {
	case <-listening:
	case <-time.After(10 * time.Second):
		tb.Fatal("not listening after 10s")
	}
	tb.Cleanup(func() {
		cancel()
		<-done
		<-done
		<-pbDone
		srv.Close()
		st.Close()
	})
	return &instance{url: srv.URL, store: st, srv: srv, phonebook: dash.Phonebook}
}

// post sends a sipgate webhook form.
func (in *instance) post(tb testing.TB, form string) {
	tb.Helper()
	res, err := http.Post(in.url+handlers.SipgatePath, "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		tb.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		tb.Fatalf("post %s: %d %s", form, res.StatusCode, body)
	}
}

// sipgateCall returns the webhook forms of a call offered to user w<n>.
func sipgateCall(id string, user int) (newCall, answer, hangup string) {
	u := fmt.Sprintf("w%d", user)
	name := fmt.Sprintf("User %d", user)
	v := url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {"491701234"}, "to": {"4930555"},
		"callId": {id}, "user[]": {name}, "userId[]": {u}}
	a := url.Values{"event": {"answer"}, "direction": {"in"}, "from": {"491701234"}, "to": {"4930555"},
		"callId": {id}, "user": {name}, "userId": {u}, "answeringNumber": {"4930555"}}
	h := url.Values{"event": {"hangup"}, "direction": {"in"}, "callId": {id}, "cause": {"normalClearing"}}
	return v.Encode(), a.Encode(), h.Encode()
}
