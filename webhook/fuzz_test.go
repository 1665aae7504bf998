package webhook

import (
	"errors"
	"testing"
	"time"
)

// FuzzParseSecret: any text gives a key of 24 to 64 bytes or
// ErrBadSecret, and the error never shows the text.
func FuzzParseSecret(f *testing.F) {
	for _, s := range []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "", "whsec_!!", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := ParseSecret(s)
		if err != nil {
			if !errors.Is(err, ErrBadSecret) || err.Error() != ErrBadSecret.Error() {
				t.Fatalf("error %v", err)
			}
			return
		}
		if len(key) < 24 || len(key) > 64 {
			t.Fatalf("key of %d bytes", len(key))
		}
	})
}

// FuzzVerify: Verify never panics on any headers, and accepts what Sign
// made.
func FuzzVerify(f *testing.F) {
	f.Add("msg_1", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{"test": 2432232314}`))
	f.Add("", "", "", []byte{})
	f.Add("msg_2", "-1", "v1, v2,x  v1,", []byte("x"))
	key, _ := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		_ = Verify(key, id, ts, sig, body)
		now := time.Unix(1614265330, 0)
		good := Sign([][]byte{key}, id, now, body)
		if err := Verify(key, id, "1614265330", good, body); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
	})
}

// FuzzRetryAfter: any Retry-After gives a wait of 0 or more.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"120", "0", "-5", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2015, 10, 21, 7, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d := retryAfter(s, now); d < 0 {
			t.Fatalf("retryAfter(%q) = %s", s, d)
		}
	})
}
