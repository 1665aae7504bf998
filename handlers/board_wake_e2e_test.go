package handlers_test

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
	"github.com/callstate/callstate/webpush"
)

// wakeToken is the API token of the wake tests' instance: the board's
// data is behind it, the app page and its files are not.
const wakeToken = "wake-test-token"

// wakeNote is what the service worker reported to the page about one push
// (sw.js report), as the page keeps it in window.callstateWakeLog.
type wakeNote struct {
	Type   string `json:"type"`
	Call   string `json:"call"`
	Tag    string `json:"tag"`
	Title  string `json:"title"`
	Body   string `json:"body"`
	Shown  bool   `json:"shown"`
	Error  string `json:"error"`
	Ready  string `json:"ready"`
	Closed int    `json:"closed"`
}

// shownNotification is a notification the browser holds for the board's
// worker (ServiceWorkerRegistration.getNotifications).
type shownNotification struct {
	Title              string `json:"title"`
	Body               string `json:"body"`
	Tag                string `json:"tag"`
	Renotify           bool   `json:"renotify"`
	RequireInteraction bool   `json:"requireInteraction"`
	Call               string `json:"call"`
}

// wakeBoard is the board opened at /board/ in Chromium with its service
// worker active, and the worker's registration id for pushes.
type wakeBoard struct {
	in     *instance
	ctx    context.Context
	origin string
	regID  serviceworker.RegistrationID
}

// openWakeBoard starts an instance with an API token, opens path in
// Chromium with notifications allowed, and waits for the board's service
// worker to be active.
func openWakeBoard(t *testing.T, path string) *wakeBoard {
	t.Helper()
	return openWakeBoardWith(t, path, browser.PermissionSettingGranted, handlers.DashboardOptions{})
}

// openWakeBoardWith is openWakeBoard with the person's answer to the
// notification permission question, on an instance with dash's options
// (and the API token).
func openWakeBoardWith(t *testing.T, path string, perm browser.PermissionSetting, dash handlers.DashboardOptions) *wakeBoard {
	t.Helper()
	dash.BearerToken = wakeToken
	in := newInstance(t, storetest.NewDatabase(t), dash, handlers.StreamOptions{})
	bctx := newBrowser(t, 1280, 900)
	u, err := url.Parse(in.url)
	if err != nil {
		t.Fatal(err)
	}
	origin := u.Scheme + "://" + u.Host
	// Start the browser and its tab, then answer the notification
	// permission for the board's origin as a person would when asked.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	if _, err := chromedp.CallBrowser(bctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "notifications"}, Setting: perm, Origin: origin,
	}); err != nil {
		t.Fatalf("allow notifications: %v", err)
	}
	regs := chromedp.Events(bctx, serviceworker.WorkerRegistrationUpdated)
	if _, err := chromedp.Call(bctx, serviceworker.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("ServiceWorker.enable: %v", err)
	}
	if err := chromedp.Do(bctx,
		chromedp.Navigate(in.url+path),
		chromedp.Poll[chromedp.Void](`!!window.callstateWorkerScope`, chromedp.WithPollingTimeout(20*time.Second)),
	); err != nil {
		t.Fatalf("board's service worker not active: %v", err)
	}
	scope := origin + "/board/"
	wctx, cancel := context.WithTimeout(bctx, 20*time.Second)
	defer cancel()
	var regID serviceworker.RegistrationID
	for ev, err := range regs {
		if err != nil {
			t.Fatalf("no registration of scope %s reported: %v", scope, err)
		}
		for _, r := range ev.Registrations {
			if r.ScopeURL == scope && !r.IsDeleted {
				regID = r.RegistrationID
			}
		}
		if regID != "" || wctx.Err() != nil {
			break
		}
	}
	if regID == "" {
		t.Fatalf("no registration of scope %s reported", scope)
	}
	return &wakeBoard{in: in, ctx: bctx, origin: origin, regID: regID}
}

// push delivers data to the board's worker as its push service would, and
// returns the worker's report of it.
func (b *wakeBoard) push(t *testing.T, data string) wakeNote {
	t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`window.callstateWakeLog.length`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(b.ctx, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
		Origin: b.origin, RegistrationID: b.regID, Data: data,
	}); err != nil {
		t.Fatalf("deliver push %q: %v", data, err)
	}
	note, err := chromedp.Run(b.ctx, chromedp.Poll[wakeNote](fmt.Sprintf(`window.callstateWakeLog[%d]`, n),
		chromedp.WithPollingTimeout(15*time.Second)))
	if err != nil {
		t.Fatalf("no report of push %q from the worker: %v", data, err)
	}
	return note
}

// notifications lists the notifications the browser shows for the board.
func (b *wakeBoard) notifications(t *testing.T) []shownNotification {
	t.Helper()
	ns, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]shownNotification](`(async () => {
		const reg = await navigator.serviceWorker.getRegistration("board/");
		const ns = await reg.getNotifications();
		return ns.map((n) => ({ title: n.title, body: n.body, tag: n.tag, renotify: n.renotify,
			requireInteraction: n.requireInteraction, call: (n.data || {}).call || "" }));
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// incoming is an "incoming" push payload of docs/wake.md.
func incoming(call, journey, from, fromFormatted, fromName, to, toName, ext string) string {
	b, _ := json.Marshal(map[string]any{
		"v": 1, "kind": "incoming", "call": call, "journey": journey, "from": from, "fromFormatted": fromFormatted,
		"fromName": fromName, "to": to, "toName": toName, "user": "w1", "extension": ext,
		"at": "2026-12-07T10:42:00Z", "ready": "/api/devices/d1/ready?call=" + call,
	})
	return string(b)
}

// TestBoardWakeNotifications delivers pushes to the board's service worker
// in Chromium, as a push service would, and reads the notifications the
// browser shows: the caller's name, else the number as the board formats
// it, else "Anonymous"; who was called; one per journey, closed by its
// clear; nothing for a malformed payload.
func TestBoardWakeNotifications(t *testing.T) {
	b := openWakeBoard(t, "/board/?access_token="+wakeToken)
	if err := chromedp.Do(b.ctx, chromedp.WaitVisible(`#conn.live`)); err != nil {
		t.Fatalf("the board at /board/ is not live: %v", err)
	}
	scope, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`window.callstateWorkerScope`))
	if err != nil || scope != b.origin+"/board/" {
		t.Fatalf("worker scope = %q, %v; want %s/board/", scope, err, b.origin)
	}
	// Chromium's own verdict: the manifest parses and the page is
	// installable (icons, start_url, display, a service worker).
	man, err := chromedp.Call(b.ctx, cdppage.GetAppManifest, cdppage.GetAppManifestParams{})
	if err != nil || len(man.Errors) > 0 || man.URL != b.origin+"/board/manifest.webmanifest" {
		t.Fatalf("Chromium read the manifest %s with errors %+v (%v)", man.URL, man.Errors, err)
	}
	inst, err := chromedp.Call(b.ctx, cdppage.GetInstallabilityErrors, cdp.Empty{})
	if err != nil || len(inst.InstallabilityErrors) > 0 {
		var why []string
		for _, e := range inst.InstallabilityErrors {
			why = append(why, e.ErrorID)
		}
		t.Fatalf("Chromium says the board is not installable: %v (%v)", why, err)
	}

	const from = "+4915112345678"
	formatted := b.in.phonebook.Format(from)
	if formatted == from || formatted == "" {
		t.Fatalf("the phonebook does not format %s (%q): the test needs a formatted number", from, formatted)
	}
	cases := []struct {
		name, payload, title, body, tag string
	}{
		{"Name", incoming("c-name", "j-name", from, formatted, "Anna Schmidt", "+4921112345678", "Alice", ""),
			"Anna Schmidt", "for Alice", "j-name"},
		{"NumberFormatted", incoming("c-num", "j-num", from, formatted, "", "+4921112345678", "Bob", ""),
			formatted, "for Bob", "j-num"},
		{"Anonymous", incoming("c-anon", "j-anon", "", "", "", "", "", "101"),
			"Anonymous", "for 101", "j-anon"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			note := b.push(t, tc.payload)
			if note.Type != "shown" || !note.Shown || note.Title != tc.title || note.Body != tc.body || note.Tag != tc.tag {
				t.Fatalf("worker reported %+v; want shown %q / %q tagged %q", note, tc.title, tc.body, tc.tag)
			}
			if note.Ready != "not sent: no device" {
				t.Errorf("ready with no device record here: %q, want not sent", note.Ready)
			}
			var got *shownNotification
			for _, n := range b.notifications(t) {
				if n.Tag == tc.tag {
					got = &n
				}
			}
			if got == nil || got.Title != tc.title || got.Body != tc.body || !got.Renotify || !got.RequireInteraction {
				t.Fatalf("browser shows %+v for tag %s; want %q / %q, renotify, requireInteraction", got, tc.tag, tc.title, tc.body)
			}
		})
	}

	t.Run("SameJourneyReplaces", func(t *testing.T) {
		b.push(t, incoming("c-name-2", "j-name", from, formatted, "Anna Schmidt", "+4921112345678", "Carol", ""))
		var tagged []shownNotification
		for _, n := range b.notifications(t) {
			if n.Tag == "j-name" {
				tagged = append(tagged, n)
			}
		}
		if len(tagged) != 1 || tagged[0].Body != "for Carol" || tagged[0].Call != "c-name-2" {
			t.Fatalf("journey j-name shows %+v; want the second push's notification only", tagged)
		}
	})

	t.Run("Clear", func(t *testing.T) {
		before := len(b.notifications(t))
		note := b.push(t, `{"v":1,"kind":"clear","call":"c-name-2","journey":"j-name","reason":"answered"}`)
		if note.Type != "cleared" || note.Closed != 1 || note.Tag != "j-name" {
			t.Fatalf("worker reported %+v; want cleared, 1 closed, tag j-name", note)
		}
		ns := b.notifications(t)
		for _, n := range ns {
			if n.Tag == "j-name" {
				t.Fatalf("the cleared notification is still shown: %+v", n)
			}
		}
		if len(ns) != before-1 {
			t.Fatalf("%d notifications after the clear, want %d", len(ns), before-1)
		}
		// A clear for a journey with nothing shown closes nothing.
		if note := b.push(t, `{"v":1,"kind":"clear","call":"x","journey":"j-none","reason":"ended"}`); note.Type != "cleared" || note.Closed != 0 {
			t.Fatalf("clear of nothing: %+v", note)
		}
	})

	t.Run("Malformed", func(t *testing.T) {
		before := b.notifications(t)
		for _, tc := range []struct{ payload, err string }{
			{"", "no payload"},
			{"not json", "not JSON"},
			{`[1,2]`, "not a JSON object"},
			{`{"v":2,"kind":"incoming","call":"c","journey":"j","toName":"Alice"}`, "version 2 is not 1"},
			{`{"v":1,"kind":"ring","call":"c","journey":"j"}`, `kind "ring"`},
			{`{"v":1,"kind":"incoming","journey":"j","toName":"Alice"}`, "has no call"},
			{`{"v":1,"kind":"incoming","call":"c","toName":"Alice"}`, "has no journey"},
			{`{"v":1,"kind":"incoming","call":"c","journey":"j","fromName":42,"toName":"Alice"}`, "fromName is not a string"},
			{`{"v":1,"kind":"incoming","call":"c","journey":"j","fromName":"` + strings.Repeat("x", 300) + `","toName":"Alice"}`, "longer than 256"},
			{`{"v":1,"kind":"incoming","call":"c","journey":"j","from":"+49301234567"}`, "nobody was called"},
		} {
			note := b.push(t, tc.payload)
			if note.Type != "ignored" || !strings.Contains(note.Error, tc.err) {
				t.Errorf("payload %.60q: worker reported %+v; want ignored with %q", tc.payload, note, tc.err)
			}
		}
		after := b.notifications(t)
		if len(after) != len(before) {
			t.Fatalf("malformed pushes changed the notifications: %+v -> %+v", before, after)
		}
	})

	t.Run("ReadyOnlyToItsServer", func(t *testing.T) {
		if err := chromedp.Do(b.ctx, chromedp.Evaluate[chromedp.Void](`callstateWake.putDevice({id: "d1", secret: "dev_test", user: "w1", extension: "", endpoint: "x"})`,
			chromedp.EvalAwaitPromise)); err != nil {
			t.Fatal(err)
		}
		p := strings.Replace(incoming("c-far", "j-far", from, formatted, "", "", "Alice", ""), `"/api/devices/d1/ready?call=c-far"`, `"//evil.example/ready"`, 1)
		if note := b.push(t, p); note.Type != "shown" || note.Ready != "not sent: not on this server" {
			t.Fatalf("ready to another host: %+v", note)
		}
	})
}

// TestBoardOpensTheCall opens /board/?call=ID, what a tapped notification
// opens: the board marks that call and scrolls to it; a call it no longer
// holds gets a note instead.
func TestBoardOpensTheCall(t *testing.T) {
	b := openWakeBoard(t, "/board/?access_token="+wakeToken)
	n, _, _ := sipgateCall("wake-open", 3)
	b.in.post(t, n)
	err := chromedp.Do(b.ctx,
		chromedp.Navigate(b.in.url+"/board/?access_token="+wakeToken+"&call=wake-open"),
		chromedp.WaitVisible(`#waiting-list .call.focus`),
	)
	if err != nil {
		t.Fatalf("the ringing call is not marked: %v", err)
	}
	note, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.getElementById("call-note").hidden`))
	if err != nil || !note {
		t.Fatalf("a note shows beside the marked call (hidden=%v, %v)", note, err)
	}
	err = chromedp.Do(b.ctx,
		chromedp.Navigate(b.in.url+"/board/?access_token="+wakeToken+"&call=gone-long-ago"),
		chromedp.WaitVisible(`#call-note`),
	)
	if err != nil {
		t.Fatalf("no note for a call not on the board: %v", err)
	}
	marked, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll(".call.focus").length`))
	if err != nil || marked != 0 {
		t.Fatalf("%d calls marked for an unknown call (%v)", marked, err)
	}
}

// TestBoardWakeRefused turns call notifications on where they cannot be:
// the page says why, in words, and keeps no device.
func TestBoardWakeRefused(t *testing.T) {
	b := openWakeBoardWith(t, "/board/?enroll=enroll_test&user=w1#wake", browser.PermissionSettingDenied, handlers.DashboardOptions{})
	// The panel shows at once; its first render, after the worker is
	// active, hides the "For" field of a link that names its user, and
	// the button moves left by that field's width: a click aimed before
	// that render and sent after it lands beside the button.
	if err := chromedp.Do(b.ctx,
		chromedp.WaitVisible(`#notify-panel`),
		chromedp.Poll[chromedp.Void](`document.getElementById("notify-who-label").hidden`, chromedp.WithPollingTimeout(20*time.Second)),
	); err != nil {
		t.Fatalf("the panel of an enrollment link for w1 still asks whose calls: %v", err)
	}
	err := chromedp.Do(b.ctx,
		chromedp.WaitVisible(`#notify-on`),
		chromedp.Click(chromedp.CSS(`#notify-on`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("notify-msg").textContent.includes("blocked")`,
			chromedp.WithPollingTimeout(10*time.Second)),
		screenshot(t, artifactDir(t))("board-notifications-blocked.png"),
	)
	if err != nil {
		msg, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(`#notify-msg`)))
		t.Fatalf("no message for blocked notifications (shown: %q): %v", msg, err)
	}
	got, err := chromedp.Run(b.ctx, chromedp.Evaluate[map[string]any](`(async () => ({
		device: await callstateWake.getDevice(),
		subscribed: !!(await (await navigator.serviceWorker.getRegistration("board/")).pushManager.getSubscription()),
		msg: document.getElementById("notify-msg").textContent,
	}))()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if got["device"] != nil || got["subscribed"] != false {
		t.Fatalf("after the refusal: %v; want no device and no subscription", got)
	}
	t.Logf("shown: %s", got["msg"])
	// The page has no API token: the board says it is not signed in, not
	// that it is offline.
	if err := chromedp.Do(b.ctx, chromedp.Poll[chromedp.Void](`document.getElementById("conn").textContent === "not signed in"`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the board without a token does not say it is not signed in: %v", err)
	}
}

// TestBoardAppServed checks what makes the board installable: the page at
// /board/ (open, unlike /, which keeps its auth), the manifest with its
// fields, the icons and the service worker script.
func TestBoardAppServed(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{BearerToken: wakeToken}, handlers.StreamOptions{})
	get := func(t *testing.T, path string) (*http.Response, []byte) {
		t.Helper()
		res, err := http.Get(in.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, body
	}
	t.Run("RootKeepsAuth", func(t *testing.T) {
		if res, _ := get(t, "/"); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET / without the token: %d, want 401", res.StatusCode)
		}
	})
	t.Run("AppPage", func(t *testing.T) {
		res, body := get(t, "/board/?enroll=enroll_x")
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET /board/: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
		}
		for _, want := range []string{`<base href="../">`, `rel="manifest" href="board/manifest.webmanifest"`, `id="notify"`} {
			if !strings.Contains(string(body), want) {
				t.Errorf("/board/ lacks %s", want)
			}
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "worker-src 'self'") || !strings.Contains(csp, "manifest-src 'self'") {
			t.Errorf("CSP %q", csp)
		}
		if _, api := get(t, "/api/calls"); !strings.Contains(string(api), "credentials") {
			t.Errorf("the API answers without the token: %s", api)
		}
	})
	t.Run("RedirectToSlash", func(t *testing.T) {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := c.Get(in.url + "/board?call=c1")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/board/?call=c1" {
			t.Fatalf("GET /board: %d Location %q", res.StatusCode, res.Header.Get("Location"))
		}
	})
	t.Run("Manifest", func(t *testing.T) {
		res, body := get(t, "/board/manifest.webmanifest")
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/manifest+json" {
			t.Fatalf("manifest: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
		}
		var m struct {
			Name      string `json:"name"`
			ShortName string `json:"short_name"`
			StartURL  string `json:"start_url"`
			Scope     string `json:"scope"`
			Display   string `json:"display"`
			Icons     []struct {
				Src   string `json:"src"`
				Sizes string `json:"sizes"`
				Type  string `json:"type"`
			} `json:"icons"`
		}
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("manifest is not JSON: %v", err)
		}
		base, _ := url.Parse(in.url + "/board/manifest.webmanifest")
		resolve := func(s string) string { u, _ := base.Parse(s); return u.Path }
		if m.Name == "" || m.ShortName == "" || m.Display != "standalone" || resolve(m.StartURL) != "/board/" || resolve(m.Scope) != "/board/" {
			t.Fatalf("manifest %+v: want name, short_name, display standalone, start_url and scope /board/", m)
		}
		sizes := map[string]bool{}
		for _, ic := range m.Icons {
			res, img := get(t, resolve(ic.Src))
			if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != ic.Type || len(img) == 0 {
				t.Errorf("icon %s: %d %s, want %s", ic.Src, res.StatusCode, res.Header.Get("Content-Type"), ic.Type)
			}
			if ic.Type == "image/png" && string(img[1:4]) != "PNG" {
				t.Errorf("icon %s is not a PNG", ic.Src)
			}
			sizes[ic.Sizes] = true
		}
		if !sizes["192x192"] || !sizes["512x512"] {
			t.Errorf("icons %v: installable needs 192x192 and 512x512", sizes)
		}
	})
	t.Run("Worker", func(t *testing.T) {
		for _, name := range []string{"sw.js", "wake.js", "notify.js"} {
			res, body := get(t, "/board/"+name)
			if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" || len(body) == 0 {
				t.Errorf("%s: %d %q", name, res.StatusCode, res.Header.Get("Content-Type"))
			}
			if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("%s: Cache-Control %q: a new worker must reach the browser", name, cc)
			}
		}
	})
}

// stubPushManager replaces the page's PushManager.subscribe and
// getSubscription. It is the one stand-in of these tests, and it cannot
// be avoided: Chromium subscribes at its push service (Google's FCM),
// which a test offline cannot reach. The stand-in answers with an object
// of PushSubscription's shape: an https endpoint of that service and a
// real P-256 key and 16-byte auth secret made by the browser's own
// WebCrypto, as the server checks them. It records what the page asked
// for (userVisibleOnly, the applicationServerKey) in window.stubPush.
const stubPushManager = `(async () => {
	const kp = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: "P-256" }, true, ["deriveBits"]);
	const raw = new Uint8Array(await crypto.subtle.exportKey("raw", kp.publicKey));
	const auth = crypto.getRandomValues(new Uint8Array(16));
	const b64 = (u) => btoa(String.fromCharCode(...u)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
	let current = null;
	window.stubPush = { calls: [], unsubscribed: 0, endpoint: "" };
	PushManager.prototype.subscribe = async function (opts) {
		window.stubPush.calls.push({ userVisibleOnly: opts.userVisibleOnly, key: b64(new Uint8Array(opts.applicationServerKey)) });
		const endpoint = "https://fcm.googleapis.com/fcm/send/stand-in-" + b64(crypto.getRandomValues(new Uint8Array(8)));
		window.stubPush.endpoint = endpoint;
		const keys = { p256dh: b64(raw), auth: b64(auth) };
		current = {
			endpoint, expirationTime: null, options: opts,
			getKey: (name) => (name === "p256dh" ? raw.buffer : auth.buffer),
			toJSON: () => ({ endpoint, expirationTime: null, keys }),
			unsubscribe: async () => { current = null; window.stubPush.unsubscribed++; return true; },
		};
		return current;
	};
	PushManager.prototype.getSubscription = async function () { return current; };
})()`

// TestBoardWakeSubscribe turns call notifications on and off from the
// board against the real device API: the page subscribes with the
// server's VAPID key, registers the subscription (the body the server
// takes, a device in PostgreSQL), keeps the device's id and secret where
// the worker finds them, and the worker's ready reaches the server with
// that secret. Then turn off, a refused enrollment and a good one.
func TestBoardWakeSubscribe(t *testing.T) {
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	vapid := base64.RawURLEncoding.EncodeToString(key.PublicKey().Bytes())
	b := openWakeBoardWith(t, "/board/?access_token="+wakeToken, browser.PermissionSettingGranted, handlers.DashboardOptions{
		Devices: &handlers.DeviceOptions{
			VAPIDKey:      func() string { return vapid },
			CheckEndpoint: func(e string) error { return webpush.CheckEndpoint(e, false) },
		},
	})
	ctx := context.Background()
	type state struct {
		Device *struct{ ID, Secret, User, Extension, Endpoint string }
		Stub   struct {
			Calls []struct {
				UserVisibleOnly bool
				Key             string
			}
			Unsubscribed int
			Endpoint     string
		}
		Sent  map[string]any
		State string
		Msg   string
		URL   string
	}
	read := func(t *testing.T) state {
		t.Helper()
		s, err := chromedp.Run(b.ctx, chromedp.Evaluate[state](`(async () => ({
			device: await callstateWake.getDevice(), stub: window.stubPush, sent: window.callstateLastEnrollment || null,
			state: document.getElementById("notify-state").textContent, msg: document.getElementById("notify-msg").textContent,
			url: location.href,
		}))()`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// enable opens the panel of a freshly loaded page, puts the stand-in
	// in place, and turns notifications on (for who, if not from a link).
	enable := func(t *testing.T, who string, want string) {
		t.Helper()
		steps := []chromedp.Action[chromedp.Void]{
			chromedp.WaitVisible(`#notify`),
			chromedp.Evaluate[chromedp.Void](stubPushManager, chromedp.EvalAwaitPromise),
		}
		if who != "" {
			steps = append(steps, chromedp.Click(chromedp.CSS(`#notify`)),
				chromedp.SetValue(chromedp.CSS(`#notify-who`), who))
		}
		steps = append(steps, chromedp.WaitVisible(`#notify-on`), chromedp.Click(chromedp.CSS(`#notify-on`)),
			chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.getElementById("notify-state").textContent.includes(%q) ||
				document.getElementById("notify-msg").textContent !== ""`, want), chromedp.WithPollingTimeout(15*time.Second)))
		if err := chromedp.Do(b.ctx, steps...); err != nil {
			t.Fatalf("turning on: %v", err)
		}
	}

	var dev callstate.Device
	t.Run("On", func(t *testing.T) {
		enable(t, "w1", "On for user w1")
		if err := chromedp.Do(b.ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Sleep(300*time.Millisecond),
			screenshot(t, artifactDir(t))("board-notifications-on-phone.png"), chromedp.EmulateViewport(1280, 900)); err != nil {
			t.Fatal(err)
		}
		s := read(t)
		if s.Msg != "" || !strings.Contains(s.State, "On for user w1") {
			t.Fatalf("panel says %q, error %q", s.State, s.Msg)
		}
		if len(s.Stub.Calls) != 1 || !s.Stub.Calls[0].UserVisibleOnly || s.Stub.Calls[0].Key != vapid {
			t.Fatalf("subscribe asked with %+v; want userVisibleOnly and the server's key %s", s.Stub.Calls, vapid)
		}
		sub, _ := s.Sent["subscription"].(map[string]any)
		if s.Sent["user"] != "w1" || s.Sent["extension"] != nil || sub["endpoint"] != s.Stub.Endpoint || s.Sent["name"] == "" {
			t.Fatalf("POST /api/devices body %v", s.Sent)
		}
		ds, err := b.in.store.DevicesFor(ctx, []string{"w1"}, "")
		if err != nil || len(ds) != 1 || ds[0].Subscription.Endpoint != s.Stub.Endpoint {
			t.Fatalf("devices of w1 in the store: %+v, %v", ds, err)
		}
		dev = ds[0]
		if s.Device == nil || s.Device.ID != dev.ID || !strings.HasPrefix(s.Device.Secret, handlers.DevicePrefix) ||
			s.Device.User != "w1" || s.Device.Endpoint != s.Stub.Endpoint {
			t.Fatalf("device kept in IndexedDB %+v; want id %s and its dev_ secret", s.Device, dev.ID)
		}
	})

	t.Run("ReadyReachesTheServer", func(t *testing.T) {
		if dev.ID == "" {
			t.Skip("no device (On failed)")
		}
		if _, err := b.in.store.ClaimWakePush(ctx, "j-ready", "c-ready", []string{"w1"}, ""); err != nil {
			t.Fatal(err)
		}
		p := incoming("c-ready", "j-ready", "+4915112345678", "", "Anna Schmidt", "", "User 1", "")
		p = strings.Replace(p, "/api/devices/d1/", "/api/devices/"+dev.ID+"/", 1)
		if note := b.push(t, p); note.Type != "shown" || note.Ready != "204" {
			t.Fatalf("worker reported %+v; want shown and ready answered 204", note)
		}
		got, err := b.in.store.ReadyCalls(ctx, []string{"c-ready"})
		if err != nil || len(got) != 1 {
			t.Fatalf("ready calls %v, %v; want c-ready", got, err)
		}
		// A call not pushed to this device: the server says so (404).
		p = strings.Replace(incoming("c-other", "j-other", "", "", "", "", "User 1", ""), "/api/devices/d1/", "/api/devices/"+dev.ID+"/", 1)
		if note := b.push(t, p); note.Ready != "404" {
			t.Fatalf("ready for a call not pushed: %+v", note)
		}
	})

	t.Run("Off", func(t *testing.T) {
		if dev.ID == "" {
			t.Skip("no device (On failed)")
		}
		err := chromedp.Do(b.ctx,
			chromedp.WaitVisible(`#notify-off`),
			chromedp.Click(chromedp.CSS(`#notify-off`)),
			chromedp.Poll[chromedp.Void](`document.getElementById("notify-state").textContent.startsWith("Off.")`,
				chromedp.WithPollingTimeout(10*time.Second)),
		)
		if err != nil {
			t.Fatalf("turning off: %v (%+v)", err, read(t))
		}
		s := read(t)
		if s.Device != nil || s.Stub.Unsubscribed != 1 || s.Msg != "" {
			t.Fatalf("after turning off: %+v", s)
		}
		if ds, err := b.in.store.DevicesFor(ctx, []string{"w1"}, ""); err != nil || len(ds) != 0 {
			t.Fatalf("devices of w1 after turning off: %+v, %v", ds, err)
		}
	})

	t.Run("EnrollmentRefused", func(t *testing.T) {
		if err := chromedp.Do(b.ctx, chromedp.Navigate(b.in.url+"/board/?enroll=enroll_unknown&user=w2#wake")); err != nil {
			t.Fatal(err)
		}
		enable(t, "", "On for user w2")
		s := read(t)
		if !strings.Contains(s.Msg, "The server refused to register this device") || !strings.Contains(s.Msg, "(HTTP 401)") ||
			!strings.Contains(s.Msg, "enrollment token unknown, used or expired") {
			t.Fatalf("message %q; want the server's refusal and its status", s.Msg)
		}
		if s.Device != nil || s.Stub.Unsubscribed != 1 || s.Sent["user"] != "w2" {
			t.Fatalf("after the refusal: %+v; want no device, the subscription undone", s)
		}
	})

	t.Run("Enrollment", func(t *testing.T) {
		tok, hash := handlers.NewEnrollToken()
		if err := b.in.store.AddEnrollment(ctx, hash, "w2", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(b.ctx, chromedp.Navigate(b.in.url+"/board/?enroll="+tok+"&user=w2#wake")); err != nil {
			t.Fatal(err)
		}
		enable(t, "", "On for user w2")
		s := read(t)
		if s.Msg != "" || s.Device == nil || s.Device.User != "w2" || strings.Contains(s.URL, "enroll") {
			t.Fatalf("after enrolling: %+v; want on for w2 and the token gone from the address", s)
		}
		if ds, err := b.in.store.DevicesFor(ctx, []string{"w2"}, ""); err != nil || len(ds) != 1 {
			t.Fatalf("devices of w2: %+v, %v", ds, err)
		}
	})
}

// TestBoardWakeTap taps a notification: the worker closes it and tells the
// open board which call, and the board marks it. The tap is the worker's
// own notificationclick listener run on a NotificationEvent made in the
// worker for the notification the browser shows, since DevTools has no
// command to click a notification; such an event is untrusted, so the
// worker's waitUntil throws after the listener did its work, and the
// browser would not let it open a window (a tap with no board open, which
// this test cannot reach).
func TestBoardWakeTap(t *testing.T) {
	b := openWakeBoard(t, "/board/?access_token="+wakeToken)
	n, _, _ := sipgateCall("wake-tap", 4)
	b.in.post(t, n)
	if err := chromedp.Do(b.ctx, chromedp.WaitVisible(`#waiting-list .call`)); err != nil {
		t.Fatal(err)
	}
	if note := b.push(t, incoming("wake-tap", "j-tap", "+491701234", "", "", "", "User 4", "")); note.Type != "shown" {
		t.Fatalf("push: %+v", note)
	}
	targets, err := chromedp.Targets(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var worker *target.Info
	for _, ti := range targets {
		if ti.Type == "service_worker" && strings.HasSuffix(ti.URL, "/board/sw.js") {
			worker = ti
		}
	}
	if worker == nil {
		t.Fatal("no service worker target")
	}
	wctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithTargetID(worker.TargetID))
	defer cancel()
	found, err := chromedp.Run(wctx, chromedp.Evaluate[int](`(async () => {
		const ns = await self.registration.getNotifications({ tag: "j-tap" });
		ns.forEach((n) => self.dispatchEvent(new NotificationEvent("notificationclick", { notification: n })));
		return ns.length;
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || found != 1 {
		t.Fatalf("%d notifications of j-tap in the worker (%v), want 1", found, err)
	}
	if err := chromedp.Do(b.ctx,
		chromedp.Poll[chromedp.Void](`window.callstateWakeLog.some((m) => m.type === "open-call" && m.call === "wake-tap")`,
			chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.WaitVisible(`#waiting-list .call.focus`),
	); err != nil {
		t.Fatalf("the board was not told to open the tapped call: %v", err)
	}
	for _, n := range b.notifications(t) {
		if n.Tag == "j-tap" {
			t.Fatalf("the tapped notification is still shown: %+v", n)
		}
	}
}
