package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
)

// do sends method path with body (JSON) and token, and returns the status
// and body.
func do(tb testing.TB, in *instance, method, path, token, body string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(method, in.url+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func webhookOptions() *handlers.WebhookOptions {
	n := 0
	return &handlers.WebhookOptions{
		NewSecret: func() string {
			n++
			return "whsec_" + strings.Repeat("QUJD", 8)[:32-n%4] + strings.Repeat("=", n%4)
		},
		TestMessage: func(e callstate.WebhookEndpoint, now time.Time) callstate.WebhookDelivery {
			return callstate.WebhookDelivery{EndpointID: e.ID, MsgID: "msg_test_1", OrderKey: "msg_test_1",
				Type: callstate.EventWebhookTest, Body: []byte(`{}`), ContentType: "application/json"}
		},
	}
}

// TestWebhooksAPIOpenInstall: without API credentials, endpoints can be
// read but not made: nobody may send call data to a URL of their own.
func TestWebhooksAPIOpenInstall(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{Webhooks: webhookOptions()}, handlers.StreamOptions{})
	if code, body := do(t, in, http.MethodGet, "/api/webhooks", "", ""); code != http.StatusOK || body != `{"webhooks":[]}`+"\n" {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, r := range []struct{ method, path string }{
		{http.MethodPost, "/api/webhooks"}, {http.MethodPatch, "/api/webhooks/1"}, {http.MethodDelete, "/api/webhooks/1"},
		{http.MethodPost, "/api/webhooks/1/rotate"}, {http.MethodPost, "/api/webhooks/1/test"},
		{http.MethodPost, "/api/webhooks/1/replay?since=2026-01-01T00:00:00Z"},
	} {
		code, body := do(t, in, r.method, r.path, "", `{"url":"https://example.com/hook"}`)
		if code != http.StatusForbidden || !strings.Contains(body, "API_TOKEN") {
			t.Errorf("%s %s: %d %s", r.method, r.path, code, body)
		}
	}
}

func TestWebhooksAPI(t *testing.T) {
	const token = "0123456789abcdef-token"
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{BearerToken: token, Webhooks: webhookOptions()}, handlers.StreamOptions{})
	type ep struct {
		ID      int64    `json:"id"`
		URL     string   `json:"url"`
		Types   []string `json:"types"`
		Format  string   `json:"format"`
		Enabled bool     `json:"enabled"`
		Secret  string   `json:"secret"`
	}
	t.Run("BadInput", func(t *testing.T) {
		for _, body := range []string{`{}`, `{"url":"ftp://x"}`, `{"url":"https://x.example/h","types":["call.exploded"]}`,
			`{"url":"https://x.example/h","format":"xml"}`, `[1]`} {
			if code, b := do(t, in, http.MethodPost, "/api/webhooks", token, body); code != http.StatusBadRequest {
				t.Errorf("%s: %d %s", body, code, b)
			}
		}
		if code, b := do(t, in, http.MethodPost, "/api/webhooks", "", `{"url":"https://x.example/h"}`); code != http.StatusUnauthorized {
			t.Errorf("no token: %d %s", code, b)
		}
		if code, b := do(t, in, http.MethodGet, "/api/webhooks/99", token, ""); code != http.StatusNotFound {
			t.Errorf("unknown id: %d %s", code, b)
		}
		if code, b := do(t, in, http.MethodPost, "/api/webhooks/x/test", token, ""); code != http.StatusBadRequest {
			t.Errorf("bad id: %d %s", code, b)
		}
	})
	var made ep
	code, body := do(t, in, http.MethodPost, "/api/webhooks", token, `{"url":"https://crm.example.com/hook","types":["call.missed"],"format":"chat"}`)
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &made) != nil || made.ID == 0 || !strings.HasPrefix(made.Secret, "whsec_") ||
		made.Format != "chat" || len(made.Types) != 1 || !made.Enabled {
		t.Fatalf("create: %d %s", code, body)
	}
	path := "/api/webhooks/" + itoa(made.ID)
	if code, body := do(t, in, http.MethodGet, "/api/webhooks", token, ""); code != http.StatusOK || strings.Contains(body, "whsec_") {
		t.Fatalf("list shows a secret, or fails: %d %s", code, body)
	}
	var rotated ep
	code, body = do(t, in, http.MethodPost, path+"/rotate", token, "")
	if code != http.StatusOK || json.Unmarshal([]byte(body), &rotated) != nil || rotated.Secret == "" || rotated.Secret == made.Secret {
		t.Fatalf("rotate: %d %s", code, body)
	}
	var updated ep
	code, body = do(t, in, http.MethodPatch, path, token, `{"enabled":false,"types":[]}`)
	if code != http.StatusOK || json.Unmarshal([]byte(body), &updated) != nil || updated.Enabled || len(updated.Types) != len(callstate.FeedTypes) {
		t.Fatalf("update: %d %s", code, body)
	}
	if code, body := do(t, in, http.MethodPost, path+"/test", token, ""); code != http.StatusAccepted || !strings.Contains(body, "msg_test_1") {
		t.Fatalf("test: %d %s", code, body)
	}
	if code, body := do(t, in, http.MethodGet, path+"/deliveries", token, ""); code != http.StatusOK ||
		!strings.Contains(body, `"type":"webhook.test"`) || !strings.Contains(body, `"status":"pending"`) {
		t.Fatalf("deliveries: %d %s", code, body)
	}
	if code, body := do(t, in, http.MethodGet, path+"/deliveries?status=lost", token, ""); code != http.StatusBadRequest {
		t.Fatalf("bad status: %d %s", code, body)
	}
	if code, body := do(t, in, http.MethodPost, path+"/replay?since=yesterday", token, ""); code != http.StatusBadRequest {
		t.Fatalf("bad since: %d %s", code, body)
	}
	if code, body := do(t, in, http.MethodPost, path+"/replay?since=2026-01-01T00:00:00Z", token, ""); code != http.StatusAccepted || !strings.Contains(body, `"replayed":1`) {
		t.Fatalf("replay: %d %s", code, body)
	}
	if code, body := do(t, in, http.MethodDelete, path, token, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, body := do(t, in, http.MethodGet, path, token, ""); code != http.StatusNotFound {
		t.Fatalf("after delete: %d %s", code, body)
	}
	// The store keeps the endpoint of the configuration apart: the API
	// neither deletes it nor changes where it sends.
	cfgEP, _, err := in.store.ConfigWebhook(context.Background(), callstate.WebhookEndpoint{URL: "https://cfg.example.com/", Secrets: []string{"whsec_" + strings.Repeat("QUJD", 8)}, Format: "standard"})
	if err != nil {
		t.Fatal(err)
	}
	cpath := "/api/webhooks/" + itoa(cfgEP.ID)
	if code, body := do(t, in, http.MethodDelete, cpath, token, ""); code != http.StatusConflict {
		t.Fatalf("delete the config's: %d %s", code, body)
	}
	if code, body := do(t, in, http.MethodPatch, cpath, token, `{"url":"https://evil.example.com/"}`); code != http.StatusConflict {
		t.Fatalf("move the config's: %d %s", code, body)
	}
	if code, body := do(t, in, http.MethodPatch, cpath, token, `{"enabled":true}`); code != http.StatusOK {
		t.Fatalf("enable the config's: %d %s", code, body)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
