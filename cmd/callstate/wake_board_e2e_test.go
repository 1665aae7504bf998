package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"

	"github.com/callstate/callstate/store/storetest"
)

// TestWakeBoardEndToEnd wakes the board in Chromium for a sipgate call,
// through the whole service: the board turns notifications on for w0 (its
// own POST /api/devices), a newCall for w0 is held, callstate pushes to
// the push service stand-in, which decrypts the message (http_ece) and
// checks its VAPID signature; the test delivers that plaintext to the
// board's service worker as Chromium's push service would
// (ServiceWorker.deliverPushMessage); the worker shows the call and posts
// ready with its device secret, and that lets the held newCall answer go
// before WAKE_WAIT. The answer elsewhere then clears the notification.
//
// Chromium offline reaches no push service, so the page's
// PushManager.subscribe answers with the stand-in's subscription (its
// endpoint and the keys it decrypts with): the one stand-in on the
// browser's side.
func TestWakeBoardEndToEnd(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	ps := startPushService(t)
	const wait = 3 * time.Second
	_, base := startWebhookInstance(t, dbURL, "API_TOKEN="+wakeTestToken, "WAKE_ALLOW_HTTP=true", "WAKE_WAIT="+wait.String())
	sub := ps.subscribe(t, "")
	bctx := wakeBrowser(t)
	u, _ := url.Parse(base)
	origin := u.Scheme + "://" + u.Host

	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	if _, err := chromedp.CallBrowser(bctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "notifications"}, Setting: browser.PermissionSettingGranted, Origin: origin,
	}); err != nil {
		t.Fatal(err)
	}
	regs := chromedp.Events(bctx, serviceworker.WorkerRegistrationUpdated)
	if _, err := chromedp.Call(bctx, serviceworker.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	stub := fmt.Sprintf(`(() => {
		const sub = %s;
		const bytes = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)).buffer;
		let current = null;
		window.stubKey = "";
		PushManager.prototype.subscribe = async function (opts) {
			window.stubKey = btoa(String.fromCharCode(...new Uint8Array(opts.applicationServerKey)))
				.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
			current = { endpoint: sub.endpoint, expirationTime: null, options: opts,
				getKey: (n) => bytes(sub.keys[n]), toJSON: () => sub, unsubscribe: async () => { current = null; return true; } };
			return current;
		};
		PushManager.prototype.getSubscription = async function () { return current; };
	})()`, sub)
	err := chromedp.Do(bctx,
		chromedp.Navigate(base+"/board/?access_token="+wakeTestToken),
		chromedp.WaitVisible(`#notify`),
		chromedp.Poll[chromedp.Void](`!!window.callstateWorkerScope`, chromedp.WithPollingTimeout(15*time.Second)),
		chromedp.Evaluate[chromedp.Void](stub),
		chromedp.Click(chromedp.CSS(`#notify`)),
		chromedp.SetValue(chromedp.CSS(`#notify-who`), "w0"),
		chromedp.Click(chromedp.CSS(`#notify-on`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("notify-state").textContent.includes("On for user w0") ||
			document.getElementById("notify-msg").textContent !== ""`, chromedp.WithPollingTimeout(15*time.Second)),
	)
	if err != nil {
		t.Fatalf("turning notifications on: %v", err)
	}
	if msg, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#notify-msg`))); msg != "" {
		t.Fatalf("turning notifications on: %s", msg)
	}
	var regID serviceworker.RegistrationID
	for ev, err := range regs {
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range ev.Registrations {
			if r.ScopeURL == origin+"/board/" && !r.IsDeleted {
				regID = r.RegistrationID
			}
		}
		if regID != "" {
			break
		}
	}
	deliver := func(t *testing.T, r pushReceipt) {
		t.Helper()
		if !r.Verified || !r.Decrypted {
			t.Fatalf("push not verified or decrypted: %s", r.Error)
		}
		data, _ := json.Marshal(r.Payload)
		if _, err := chromedp.Call(bctx, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
			Origin: origin, RegistrationID: regID, Data: string(data)}); err != nil {
			t.Fatalf("deliver %s: %v", data, err)
		}
	}
	type shown struct{ Title, Body, Tag string }
	// notifications lists what the browser shows once the worker said it
	// showed call's (it posts ready while it shows: the answer may come
	// first).
	notifications := func(t *testing.T, call string) []shown {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.Poll[chromedp.Void](fmt.Sprintf(
			`window.callstateWakeLog.some((m) => m.type !== "ignored" && m.call === %q)`, call),
			chromedp.WithPollingTimeout(10*time.Second))); err != nil {
			t.Fatalf("the worker reported nothing of %s: %v", call, err)
		}
		ns, err := chromedp.Run(bctx, chromedp.Evaluate[[]shown](`(async () => {
			const reg = await navigator.serviceWorker.getRegistration("board/");
			return (await reg.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag }));
		})()`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}

	// The device the page registered gets the pushes, once the instance
	// has reloaded its set of users with devices (a database
	// notification; TestWake waits alike).
	time.Sleep(500 * time.Millisecond)
	subID := subID(t, sub)
	took := make(chan time.Duration, 1)
	go func() {
		f := url.Values{"callId": {"e2e-1"}, "from": {"4915112345678"}, "to": {"4921112345678"},
			"userId[]": {"w0"}, "user[]": {"Alice"}}
		took <- newCall(t, base, f)
	}()
	rs := ps.wait(t, subID, 1)
	deliver(t, rs[0])
	d := <-took
	if d >= wait {
		t.Fatalf("the held newCall was answered after %v, WAKE_WAIT %v: the board's ready did not let it go", d, wait)
	}
	if n := holds(t, base, "ready"); n != 1 {
		t.Errorf("holds ended by a ready: %v, want 1", n)
	}
	want := shown{Title: formattedDE("4915112345678"), Body: "for Alice", Tag: "e2e-1"}
	if ns := notifications(t, "e2e-1"); len(ns) != 1 || ns[0] != want {
		t.Fatalf("the browser shows %+v, want %+v", ns, want)
	}
	key, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`window.stubKey`))
	if key != rs[0].K {
		t.Errorf("the page subscribed with key %s; the pushes are signed with %s", key, rs[0].K)
	}
	t.Logf("newCall answered after %v: push out, delivered to the worker, its ready back (WAKE_WAIT %v)", d, wait)

	// A caller who withholds the number (sipgate's "anonymous").
	go func() {
		f := url.Values{"callId": {"e2e-2"}, "from": {"anonymous"}, "to": {"4921112345678"},
			"userId[]": {"w0"}, "user[]": {"Alice"}}
		took <- newCall(t, base, f)
	}()
	rs = ps.wait(t, subID, 2)
	if p := rs[1].Payload; p.From != "" || p.FromFormatted != "" || p.FromName != "" {
		t.Errorf("anonymous caller's push %+v; want no from, fromFormatted, fromName", p)
	}
	deliver(t, rs[1])
	if d := <-took; d >= wait {
		t.Errorf("the held newCall of the anonymous caller was answered after %v", d)
	}
	anon := shown{Title: "Anonymous", Body: "for Alice", Tag: "e2e-2"}
	if ns := notifications(t, "e2e-2"); len(ns) != 2 || (ns[0] != anon && ns[1] != anon) {
		t.Fatalf("the browser shows %+v, want also %+v", ns, anon)
	}

	// Answered elsewhere: the clear reaches the board and closes it.
	postEvent(t, base, url.Values{"event": {"answer"}, "callId": {"e2e-1"}, "direction": {"in"}, "user": {"Bob"},
		"userId": {"w1"}, "answeringNumber": {"4921112345678"}})
	rs = ps.wait(t, subID, 3)
	if rs[2].Payload.Kind != "clear" || rs[2].Payload.Call != "e2e-1" {
		t.Fatalf("third push %+v, want the first call's clear", rs[2].Payload)
	}
	deliver(t, rs[2])
	if err := chromedp.Do(bctx, chromedp.Poll[chromedp.Void](`window.callstateWakeLog.some((m) => m.type === "cleared" && m.tag === "e2e-1")`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("the worker did not take the clear: %v", err)
	}
	if ns := notifications(t, "e2e-1"); len(ns) != 1 || ns[0] != anon {
		t.Fatalf("after the clear the browser shows %+v, want only %+v", ns, anon)
	}
}

// wakeBrowser starts headless Chromium for the test (as the board's
// browser tests in handlers do).
func wakeBrowser(t *testing.T) context.Context {
	t.Helper()
	path := "/usr/bin/chromium"
	if _, err := os.Stat(path); err != nil {
		p, lerr := exec.LookPath("chromium")
		if lerr != nil {
			t.Fatalf("Chromium is needed for the board's browser test and was not found at %s or on PATH; "+
				"install it with: apt-get install -y chromium (make deps does)", path)
		}
		path = p
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(cancelB)
	bctx, cancelT := context.WithTimeout(bctx, 120*time.Second)
	t.Cleanup(cancelT)
	return bctx
}
