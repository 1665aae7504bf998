package handlers

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-playground/validator/v10"
)

// FuzzParseSipgateForm feeds the form parser and validator anything: no
// panic, and whatever passes both is safe to store (text fields hold valid
// UTF-8 without control characters) and makes a valid event.
func FuzzParseSipgateForm(f *testing.F) {
	if b, err := os.ReadFile("testdata/captured-newcall.http"); err == nil {
		if _, body, ok := strings.Cut(string(b), "\n\n"); ok {
			f.Add(body)
		}
	}
	for _, s := range []string{
		"event=answer&callId=1&user=Alice&userId=w0&fullUserId=1w0&answeringNumber=4930",
		"event=hangup&callId=1&cause=busy",
		"event=dtmf&callId=1&dtmf=",
		"event=newCall&callId=1&user%5B%5D=&user%5B%5D=Bob&from=anonymous",
		"event=newCall&callId=%ff",
		"a=%zz;b",
	} {
		f.Add(s)
	}
	v := validator.New(validator.WithRequiredStructEnabled())
	registerSipgateRules(v)
	f.Fuzz(func(t *testing.T, body string) {
		form, err := parseSipgateForm([]byte(body))
		if err != nil {
			return
		}
		if v.Struct(&form) != nil {
			return
		}
		for _, s := range append([]string{form.Event, form.CallID, form.From, form.To, form.User, form.Cause, form.DTMF},
			append(form.Users, form.UserIDs...)...) {
			if !isText(s) {
				t.Fatalf("accepted unsafe text %q", s)
			}
		}
		ev := form.event([]byte(body), time.Now())
		if err := ev.Validate(); err != nil {
			t.Fatalf("accepted form makes an invalid event: %v", err)
		}
	})
}

// FuzzVerifySignature: any header and body, no panic, and nothing verifies
// without the private key.
func FuzzVerifySignature(f *testing.F) {
	v, err := NewSignatureVerifier(SipgatePublicKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("event=newCall&callId=1"), "")
	f.Add([]byte("event=newCall&callId=1"), "AAAA")
	f.Add([]byte{}, strings.Repeat("A", 684)+"==")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		if v.Verify(body, header) == nil {
			t.Fatalf("signature %q verified for %q", header, body)
		}
	})
}
