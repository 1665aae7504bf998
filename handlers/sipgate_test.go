package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
	"github.com/callstate/callstate/xmlresponse"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) { storetest.Main(m) }

const formType = "application/x-www-form-urlencoded"

// testKey signs requests the way sipgate does, for bodies other than the capture.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func sign(body string) string { return signWith(testKey(), body) }

// signWith signs body as sipgate does: RSA PKCS#1 v1.5 over its SHA-256,
// base64.
func signWith(k *rsa.PrivateKey, body string) string {
	sum := sha256.Sum256([]byte(body))
	sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, sum[:])
	if err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func testVerifier(tb testing.TB) *handlers.SignatureVerifier { return verifierFor(tb, testKey()) }

// verifierFor returns a verifier for k's public half, given as a PEM
// "PUBLIC KEY" the way SIPGATE_PUBLIC_KEY_FILE holds one.
func verifierFor(tb testing.TB, k *rsa.PrivateKey) *handlers.SignatureVerifier {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := handlers.NewSignatureVerifier(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

type env struct {
	h     http.Handler
	store *store.Store
	logs  *bytes.Buffer
}

func newEnv(tb testing.TB, opts handlers.SipgateOptions) env {
	tb.Helper()
	st, err := store.Open(context.Background(), storetest.NewDatabase(tb), store.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	if opts.PublicURL == "" {
		opts.PublicURL = "https://callstate.example.com"
	}
	logs := &bytes.Buffer{}
	h, err := handlers.New(handlers.Options{Store: st, Ready: st, Sipgate: opts, Logger: slog.New(slog.NewTextHandler(&syncWriter{w: logs}, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	return env{h: h, store: st, logs: logs}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (e env) post(body string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, handlers.SipgatePath, strings.NewReader(body))
	req.Header.Set("Content-Type", formType)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func (e env) postSigned(body string) *httptest.ResponseRecorder {
	return e.post(body, http.Header{"X-Sipgate-Signature": {sign(body)}})
}

// readCapture returns the captured request's headers and raw body.
func readCapture(tb testing.TB) (http.Header, []byte) {
	tb.Helper()
	f, err := os.Open("testdata/captured-newcall.http")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	req, err := http.ReadRequest(bufio.NewReader(f))
	if err != nil {
		tb.Fatal(err)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return req.Header, body
}

func TestCapturedNewCall(t *testing.T) {
	header, body := readCapture(t)
	if len(body) != 267 {
		t.Fatalf("capture body is %d bytes, want 267", len(body))
	}
	v, err := handlers.NewSignatureVerifier(handlers.SipgatePublicKey)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, handlers.SipgateOptions{Verifier: v})
	rec := e.post(string(body), header)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != xmlresponse.ContentType {
		t.Errorf("Content-Type %q", ct)
	}
	golden(t, "newcall-response.xml", rec.Body.Bytes())

	const callID = "54566B150B0C0D3A5D534D5F565D7C5F54535A5C5B53525A7E5B5D5745504457444C425D5057"
	c, err := e.store.Call(context.Background(), callstate.SourceSipgate, callID)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != callstate.StateRinging || c.Direction != callstate.DirectionIn || c.From != "491776249000" ||
		c.To != "4928559389086" || c.XCID != "8419b3450b75cd19" || len(c.Users) != 0 || c.OrigCallID != callID {
		t.Errorf("stored call %+v", c)
	}
	j, err := e.store.Journal(context.Background(), callstate.SourceSipgate, callID)
	if err != nil || len(j) != 1 || !bytes.Equal(j[0].Payload, body) {
		t.Errorf("journal %+v, %v", j, err)
	}

	// One byte changed: the signature no longer verifies, nothing changes.
	tampered := bytes.Replace(body, []byte("direction=in"), []byte("direction=ou"), 1)
	if rec := e.post(string(tampered), header); rec.Code != http.StatusForbidden {
		t.Errorf("tampered body: status %d", rec.Code)
	}
}

func golden(tb testing.TB, name string, got []byte) {
	tb.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s differs:\n got  %s\n want %s", name, got, want)
	}
}

const (
	newCallBody = "event=newCall&direction=out&from=4930111&to=491702&callId=C2&origCallId=C2&user%5B%5D=Alice&userId%5B%5D=w0&fullUserId%5B%5D=123w0&xcid=x2"
	answerBody  = "event=answer&direction=out&from=4930111&to=491702&callId=C2&user=Alice&userId=w0&fullUserId=123w0&answeringNumber=491702"
	dtmfBody    = "event=dtmf&callId=C2&dtmf=12%23"
	hangupBody  = "event=hangup&direction=out&from=4930111&to=491702&callId=C2&cause=normalClearing&answeringNumber=491702"
)

// TestFullCallAnyOrder posts a whole call in several orders, some events
// twice, and expects one correct row each time, and four journal entries
// and one for each copy of the dtmf request (every dtmf request is
// journaled; the row counts a copy received within
// callstate.ReplayWindow once).
func TestFullCallAnyOrder(t *testing.T) {
	orders := map[string][]string{
		"InOrder":     {newCallBody, answerBody, dtmfBody, hangupBody},
		"Reversed":    {hangupBody, dtmfBody, answerBody, newCallBody},
		"Repeated":    {newCallBody, newCallBody, answerBody, hangupBody, dtmfBody, answerBody, hangupBody},
		"HangupFirst": {hangupBody, newCallBody, answerBody, dtmfBody, dtmfBody},
	}
	for name, bodies := range orders {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, handlers.SipgateOptions{Verifier: testVerifier(t)})
			for _, b := range bodies {
				if rec := e.postSigned(b); rec.Code != http.StatusOK {
					t.Fatalf("post %q: status %d %s", b, rec.Code, rec.Body)
				}
			}
			c, err := e.store.Call(context.Background(), callstate.SourceSipgate, "C2")
			if err != nil {
				t.Fatal(err)
			}
			if c.State != callstate.StateEnded || c.Direction != callstate.DirectionOut || c.Extension != "w0" ||
				c.AnsweredBy != "Alice" || c.Answering != "491702" || c.Cause != "normalClearing" || c.DTMF != "12#" ||
				c.From != "4930111" || c.To != "491702" || c.XCID != "x2" ||
				len(c.Users) != 1 || c.Users[0] != "Alice" || c.AnsweredAt.IsZero() || c.EndedAt.IsZero() {
				t.Errorf("stored call %+v", c)
			}
			want := 3
			for _, b := range bodies {
				if b == dtmfBody {
					want++
				}
			}
			j, err := e.store.Journal(context.Background(), callstate.SourceSipgate, "C2")
			if err != nil || len(j) != want {
				t.Errorf("journal: %d entries, %v", len(j), err)
			}
		})
	}
}

// TestDTMFRepeatOrPress posts the same dtmf request twice: within
// callstate.ReplayWindow it is a copy of one request and counts once; a
// later one is the caller pressing the same key again, in the next menu.
func TestDTMFRepeatOrPress(t *testing.T) {
	tests := []struct {
		name string
		gap  time.Duration
		want string
	}{
		{"CopyWithinTheWindow", 300 * time.Millisecond, "12#"},
		{"PressedAgainLater", 6 * time.Second, "12#12#"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			clock := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
			now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
			e := newEnv(t, handlers.SipgateOptions{Verifier: testVerifier(t), Now: now})
			for i := range 2 {
				if rec := e.postSigned(dtmfBody); rec.Code != http.StatusOK {
					t.Fatalf("post %d: status %d %s", i, rec.Code, rec.Body)
				}
				mu.Lock()
				clock = clock.Add(tt.gap)
				mu.Unlock()
			}
			c, err := e.store.Call(context.Background(), callstate.SourceSipgate, "C2")
			if err != nil {
				t.Fatal(err)
			}
			if c.DTMF != tt.want {
				t.Errorf("DTMF = %q, want %q", c.DTMF, tt.want)
			}
			if j, err := e.store.Journal(context.Background(), callstate.SourceSipgate, "C2"); err != nil || len(j) != 2 {
				t.Errorf("journal: %d entries, %v; want both requests", len(j), err)
			}
		})
	}
}

func TestResponses(t *testing.T) {
	e := newEnv(t, handlers.SipgateOptions{
		NewCallAction: xmlresponse.Gather{MaxDigits: 3, Timeout: 4000 * 1e6},
	})
	tests := []struct {
		name, body, contentType, golden string
	}{
		{"NewCallWithGather", newCallBody, xmlresponse.ContentType, "newcall-gather-response.xml"},
		{"DTMF", dtmfBody, xmlresponse.ContentType, "dtmf-response.xml"},
		{"Answer", answerBody, "", ""},
		{"Hangup", hangupBody, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := e.post(tt.body, nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if got := rec.Header().Get("Content-Type"); got != tt.contentType {
				t.Errorf("Content-Type %q, want %q", got, tt.contentType)
			}
			if tt.golden != "" {
				golden(t, tt.golden, rec.Body.Bytes())
			} else if rec.Body.Len() != 0 {
				t.Errorf("body %q, want empty", rec.Body)
			}
		})
	}
}

// TestBadInput sends every kind of bad request: each gets its 4xx with a
// JSON error naming the problem, a log line, and stores nothing.
func TestBadInput(t *testing.T) {
	e := newEnv(t, handlers.SipgateOptions{Verifier: testVerifier(t), MaxBodyBytes: 1024})
	big := "event=newCall&callId=big&from=" + strings.Repeat("1", 2000)
	tests := []struct {
		name        string
		body        string
		contentType string
		signature   string // "" = sign the body; "-" = none
		wantCode    int
		wantErr     string
	}{
		{"ErrContentTypeJSON", `{"event":"newCall"}`, "application/json", "", 415, "application/x-www-form-urlencoded"},
		{"ErrContentTypeMissing", "event=newCall&callId=x", "-", "", 415, "missing Content-Type"},
		{"ErrCharset", "event=newCall&callId=x", formType + "; charset=ISO-8859-1", "", 415, "charset"},
		{"ErrTooLarge", big, formType, "", 413, "over the limit"},
		{"ErrEmptyBody", "", formType, "", 400, "empty body"},
		{"ErrSignatureMissing", "event=newCall&callId=x", formType, "-", 401, "missing X-Sipgate-Signature"},
		{"ErrSignatureGarbage", "event=newCall&callId=x", formType, "not base64!", 403, "does not verify"},
		{"ErrSignatureOtherBody", "event=newCall&callId=x", formType, sign("event=newCall&callId=y"), 403, "does not verify"},
		{"ErrMalformedEncoding", "event=newCall&callId=%zz", formType, "", 400, "bad form"},
		{"ErrUnknownEvent", "event=fax&callId=x", formType, "", 400, "event must be one of"},
		{"ErrMissingEvent", "callId=x", formType, "", 400, "event is required"},
		{"ErrMissingCallID", "event=newCall&from=1", formType, "", 400, "callId is required"},
		{"ErrDuplicateKey", "event=newCall&callId=x&callId=y", formType, "", 400, "callId given 2 times"},
		{"ErrDirection", "event=newCall&callId=x&direction=up", formType, "", 400, "direction must be one of"},
		{"ErrInvalidUTF8", "event=newCall&callId=x&from=%ff%fe", formType, "", 400, "from must be UTF-8 text"},
		{"ErrControlChars", "event=newCall&callId=x%0d%0aX-Evil:1", formType, "", 400, "callId must be UTF-8 text"},
		{"ErrNUL", "event=newCall&callId=x&to=1%002", formType, "", 400, "to must be UTF-8 text"},
		{"ErrBlankCallID", "event=newCall&callId=%20%20%20", formType, "", 400, "callId must not be blank"},
		{"ErrRightToLeftOverride", "event=newCall&callId=x&user%5B%5D=Ann%E2%80%AEa", formType, "", 400, "user[][0] must be UTF-8 text"},
		{"ErrLineSeparator", "event=answer&callId=x&user=Ann%E2%80%A8Bob", formType, "", 400, "user must be UTF-8 text"},
		{"ErrDTMF", "event=dtmf&callId=x&dtmf=12x", formType, "", 400, "dtmf must contain only"},
		{"ErrTooLong", "event=newCall&callId=" + strings.Repeat("a", 300), formType, "", 400, "callId is too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			switch tt.signature {
			case "":
				h.Set("X-Sipgate-Signature", sign(tt.body))
			case "-":
			default:
				h.Set("X-Sipgate-Signature", tt.signature)
			}
			req := httptest.NewRequest(http.MethodPost, handlers.SipgatePath, strings.NewReader(tt.body))
			if tt.contentType != "-" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			for k, v := range h {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			e.h.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Errorf("status %d, want %d (%s)", rec.Code, tt.wantCode, rec.Body)
			}
			var body struct{ Error string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || !strings.Contains(body.Error, tt.wantErr) {
				t.Errorf("error body %q (%v), want it to mention %q", rec.Body, err, tt.wantErr)
			}
			if !strings.Contains(e.logs.String(), tt.wantErr) {
				t.Errorf("no log line mentions %q", tt.wantErr)
			}
		})
	}
	for _, key := range []string{"x", "y", "big"} {
		if _, err := e.store.Call(context.Background(), callstate.SourceSipgate, key); err == nil {
			t.Errorf("call %q was stored from a bad request", key)
		}
	}
	// And the service still serves.
	if rec := e.postSigned(newCallBody); rec.Code != http.StatusOK {
		t.Errorf("after bad input: status %d", rec.Code)
	}
}

// TestSignatureErrorDiscloses nothing: the error names the problem, not the
// signature received or expected.
func TestSignatureErrorDisclosesNothing(t *testing.T) {
	v := testVerifier(t)
	body := []byte("event=newCall&callId=x")
	bad := sign("event=newCall&callId=y")
	err := v.Verify(body, bad)
	if err == nil {
		t.Fatal("a signature over another body verified")
	}
	sum := sha256.Sum256(body)
	for _, secret := range []string{bad, bad[:16], base64.StdEncoding.EncodeToString(sum[:]), string(body)} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q discloses %q", err, secret)
		}
	}
}

func TestNewSignatureVerifierKeys(t *testing.T) {
	der, _ := x509.MarshalPKIXPublicKey(&testKey().PublicKey)
	tests := []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"OKSipgateCertificateLabel", handlers.SipgatePublicKey, true},
		{"OKPublicKey", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), true},
		{"OKPKCS1", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&testKey().PublicKey)}), true},
		{"ErrNoPEM", []byte("hello"), false},
		{"ErrGarbage", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handlers.NewSignatureVerifier(tt.pem)
			if (err == nil) != tt.ok {
				t.Errorf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestNewCallWhenStoreFails: newCall still gets its XML when the database
// write fails, so sipgate sends the later events; others get 503.
func TestNewCallWhenStoreFails(t *testing.T) {
	e := newEnv(t, handlers.SipgateOptions{})
	e.store.Close()
	if rec := e.post(newCallBody, nil); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "<Response") {
		t.Errorf("newCall: status %d body %q", rec.Code, rec.Body)
	}
	if rec := e.post(hangupBody, nil); rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("hangup: status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	if !strings.Contains(e.logs.String(), "newCall lost") {
		t.Error("no log line for the lost newCall")
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t, handlers.SipgateOptions{})
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d", path, rec.Code)
		}
	}
	e.store.Close()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the database closed: %d", rec.Code)
	}
}

// nopStore takes every event and keeps none: for tests of routes that
// store nothing.
type nopStore struct{}

func (nopStore) Apply(context.Context, callstate.Event) (bool, error) { return true, nil }

type pingFunc func(context.Context) error

func (f pingFunc) Ping(ctx context.Context) error { return f(ctx) }

// TestReadyzSaysWhy: /readyz names every failing check, with the reasons
// fit to show and not the causes, and logs a change of readiness once.
func TestReadyzSaysWhy(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	ready := pingFunc(func(context.Context) error {
		if !fail.Load() {
			return nil
		}
		return errors.Join(
			&handlers.NotReady{Check: "spool", Reason: "spool full: only new calls are kept", Err: errors.New("/var/spool/secret-path")},
			&handlers.NotReady{Check: "database", Reason: "database unreachable", Err: errors.New("dial tcp 10.1.2.3:5432")},
		)
	})
	logs := &bytes.Buffer{}
	h, err := handlers.New(handlers.Options{Store: nopStore{}, Ready: ready, Logger: slog.New(slog.NewTextHandler(&syncWriter{w: logs}, nil)),
		Sipgate: handlers.SipgateOptions{PublicURL: "https://callstate.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	get := func() *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec
	}
	for range 3 {
		rec := get()
		var body struct {
			Error  string            `json:"error"`
			Checks map[string]string `json:"checks"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d body %s: %v", rec.Code, rec.Body, err)
		}
		if body.Error != "spool full: only new calls are kept" || body.Checks["database"] != "database unreachable" || body.Checks["spool"] == "" {
			t.Errorf("body %+v", body)
		}
		if strings.Contains(rec.Body.String(), "10.1.2.3") || strings.Contains(rec.Body.String(), "secret-path") {
			t.Errorf("the answer discloses a cause: %s", rec.Body)
		}
	}
	fail.Store(false)
	if rec := get(); rec.Code != http.StatusOK {
		t.Fatalf("ready: %d", rec.Code)
	}
	if n := strings.Count(logs.String(), `msg="not ready"`); n != 1 {
		t.Errorf("%d 'not ready' lines for three probes, want 1:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), `msg="ready again"`) {
		t.Errorf("no 'ready again' line:\n%s", logs)
	}
}

func TestPathSecret(t *testing.T) {
	e := newEnv(t, handlers.SipgateOptions{PathSecret: "s3cr3t-path"})
	for _, tt := range []struct {
		path string
		want int
	}{
		{handlers.SipgatePath + "/s3cr3t-path", http.StatusOK},
		{handlers.SipgatePath + "/wrong", http.StatusNotFound},
		{handlers.SipgatePath, http.StatusNotFound},
	} {
		req := httptest.NewRequest(http.MethodPost, tt.path, strings.NewReader(newCallBody))
		req.Header.Set("Content-Type", formType)
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("%s: status %d, want %d", tt.path, rec.Code, tt.want)
		}
		if tt.want == http.StatusOK && !strings.Contains(rec.Body.String(), `onHangup="https://callstate.example.com/webhooks/sipgate/s3cr3t-path"`) {
			t.Errorf("subscriptions lack the secret: %s", rec.Body)
		}
	}
	if strings.Contains(e.logs.String(), "s3cr3t-path") {
		t.Errorf("the path secret reached the log:\n%s", e.logs)
	}
}

func TestAllowedNetworks(t *testing.T) {
	_, sipgateNet, _ := net.ParseCIDR("217.116.118.0/24")
	_, proxy, _ := net.ParseCIDR("10.0.0.0/8")
	st, err := store.Open(context.Background(), storetest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	h, err := handlers.New(handlers.Options{
		Store: st, TrustedProxies: []*net.IPNet{proxy},
		Sipgate: handlers.SipgateOptions{PublicURL: "https://x.example.com", AllowedNetworks: []*net.IPNet{sipgateNet}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote, xff string
		want              int
	}{
		{"OKDirect", "217.116.118.254:4000", "", http.StatusOK},
		{"OKThroughTrustedProxy", "10.1.2.3:4000", "217.116.118.254", http.StatusOK},
		{"ErrDirect", "203.0.113.9:4000", "", http.StatusForbidden},
		{"ErrForgedXFF", "203.0.113.9:4000", "217.116.118.254", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, handlers.SipgatePath, strings.NewReader(newCallBody))
			req.Header.Set("Content-Type", formType)
			req.RemoteAddr = tt.remote
			if tt.xff != "" {
				req.Header.Set("X-Forwarded-For", tt.xff)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("status %d, want %d (%s)", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	st, err := store.Open(context.Background(), storetest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	h, err := handlers.New(handlers.Options{Store: st, Metrics: metrics.New(),
		Sipgate: handlers.SipgateOptions{PublicURL: "https://x.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{newCallBody, newCallBody, "event=nope&callId=1", "event=hangup&callId=%20"} {
		req := httptest.NewRequest(http.MethodPost, handlers.SipgatePath, strings.NewReader(body))
		req.Header.Set("Content-Type", formType)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`callstate_events_total{outcome="applied",source="sipgate",type="newCall"} 1`,
		`callstate_events_total{outcome="duplicate",source="sipgate",type="newCall"} 1`,
		`callstate_events_total{outcome="rejected",source="sipgate",type=""} 1`,
		`callstate_events_total{outcome="rejected",source="sipgate",type="hangup"} 1`,
		`callstate_http_request_duration_seconds_count{code="2xx",route="/webhooks/sipgate"} 2`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestVerifyMatchesCryptoRSA checks the verifier against crypto/rsa on
// genuine signatures and on signatures altered in every way that matters:
// both must agree on each.
func TestVerifyMatchesCryptoRSA(t *testing.T) {
	v := testVerifier(t)
	k := testKey()
	n := new(big.Int).Set(k.N)
	for i := range 100 {
		body := fmt.Sprintf("event=newCall&callId=c%d&from=%d", i, i*7919)
		sig, _ := base64.StdEncoding.DecodeString(sign(body))
		cases := map[string][]byte{"genuine": sig}
		flipped := bytes.Clone(sig)
		flipped[i%len(flipped)] ^= 1 << (i % 8)
		cases["flipped bit"] = flipped
		// s + n: the same value mod n, but not a valid signature (s >= n).
		if plusN := new(big.Int).Add(new(big.Int).SetBytes(sig), n); len(plusN.Bytes()) <= len(sig) {
			cases["s+n"] = plusN.FillBytes(make([]byte, len(sig)))
		}
		cases["zero"] = make([]byte, len(sig))
		sum := sha256.Sum256([]byte(body))
		for name, s := range cases {
			want := rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, sum[:], s) == nil
			got := v.Verify([]byte(body), base64.StdEncoding.EncodeToString(s)) == nil
			if got != want {
				t.Fatalf("%s signature of %q: verifier %v, crypto/rsa %v", name, body, got, want)
			}
			if name == "genuine" && !got {
				t.Fatalf("genuine signature of %q rejected", body)
			}
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	v, err := handlers.NewSignatureVerifier(handlers.SipgatePublicKey)
	if err != nil {
		b.Fatal(err)
	}
	header, body := readCapture(b)
	sig := header.Get("X-Sipgate-Signature")
	for b.Loop() {
		if err := v.Verify(body, sig); err != nil {
			b.Fatal(err)
		}
	}
}
