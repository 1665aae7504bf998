package handlers

import (
	"testing"
	"unicode/utf8"
)

// FuzzParseDeviceInput feeds POST /api/devices's body parser anything: no
// panic, and whatever passes names exactly one of user and extension as
// text, and has a subscription with keys that are a P-256 point and 16
// bytes.
func FuzzParseDeviceInput(f *testing.F) {
	for _, s := range []string{
		`{"user":"w0","subscription":{"endpoint":"https://push.example.net/x","keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"BTBZMqHH6r4Tts7J_aSIgg"}},"name":"phone"}`,
		`{"extension":"101","subscription":{"endpoint":"https://push.example.net/x","expirationTime":null,"keys":{"p256dh":"BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4","auth":"BTBZMqHH6r4Tts7J_aSIgg"}}}`,
		`{"user":"w0","extension":"101"}`,
		`{"user":"w0","subscription":null}`,
		`{"user":"w0","unknown":1}`,
		`[]`,
		`{`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		in, sub, err := parseDeviceInput([]byte(body))
		if err != nil {
			return
		}
		if (in.User == "") == (in.Extension == "") || !isText(in.User) || !isText(in.Extension) || !utf8.ValidString(in.Name) {
			t.Fatalf("accepted %q: user %q extension %q name %q", body, in.User, in.Extension, in.Name)
		}
		p, a, err := sub.PushKeys()
		if err != nil || len(p) != 65 || len(a) != 16 || sub.Endpoint == "" {
			t.Fatalf("accepted %q with a subscription that cannot be pushed to: %v", body, err)
		}
	})
}
