package webhook_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate/webhook"
)

// TestSign checks the signature against the example of the Standard
// Webhooks specification (and Svix's documentation).
func TestSign(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, err := webhook.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	got := webhook.Sign([][]byte{key}, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	if err := webhook.Verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,bad "+got, []byte(`{"test": 2432232314}`)); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func TestVerify(t *testing.T) {
	key, _ := webhook.ParseSecret(webhook.NewSecret())
	other, _ := webhook.ParseSecret(webhook.NewSecret())
	now := time.Now()
	body := []byte(`{"type":"call.missed"}`)
	sig := webhook.Sign([][]byte{other, key}, "msg_1", now, body)
	if len(strings.Fields(sig)) != 2 {
		t.Fatalf("two keys, signature %q", sig)
	}
	ts := webhook.Headers([][]byte{key}, "msg_1", now, body)["webhook-timestamp"]
	tests := []struct {
		name      string
		id, ts    string
		sig, body string
		want      error
	}{
		{"OK", "msg_1", ts, sig, string(body), nil},
		{"ErrBodyChanged", "msg_1", ts, sig, `{"type":"call.ended"}`, webhook.ErrBadSignature},
		{"ErrOtherID", "msg_2", ts, sig, string(body), webhook.ErrBadSignature},
		{"ErrBadTimestamp", "msg_1", "x", sig, string(body), webhook.ErrBadSignature},
		{"ErrNoSignature", "msg_1", ts, "", string(body), webhook.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := webhook.Verify(key, tt.id, tt.ts, tt.sig, []byte(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "v1,") {
				t.Fatalf("the error discloses a signature: %v", err)
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	for _, bad := range []string{"", "whsec_", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!!", "whsec_c2hvcnQ="} {
		if _, err := webhook.ParseSecret(bad); !errors.Is(err, webhook.ErrBadSecret) {
			t.Errorf("%q: %v", bad, err)
		}
		if _, err := webhook.ParseSecret(bad); err != nil && len(bad) > len(webhook.SecretPrefix) && strings.Contains(err.Error(), bad) {
			t.Errorf("the error discloses the secret: %v", err)
		}
	}
	if _, err := webhook.ParseSecret(webhook.NewSecret()); err != nil {
		t.Fatal(err)
	}
}
