package handlers_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
)

// chromiumPath is where CI installs Chromium (Debian package chromium).
const chromiumPath = "/usr/bin/chromium"

// artifactDir is $ARTIFACTS_DIR, else the repository's artifacts/ (ignored
// by git).
func artifactDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "artifacts")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// TestBoardInBrowser opens the live board in headless Chromium, posts a
// call, and watches the caller's lamp ring, turn busy and go idle again,
// without a reload. It saves screenshots to the artifact directory.
func TestBoardInBrowser(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{}, handlers.StreamOptions{})
	seedBoard(t, in)
	bctx := newBrowser(t, 1600, 1000)

	dir := artifactDir(t)
	shot := screenshot(t, dir)
	lamp := func(key, state string) string {
		return fmt.Sprintf(`.lamp[data-key="%s"][data-lamp="%s"]`, key, state)
	}
	post := func(form string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(context.Context, *chromedp.Target) error { in.post(t, form); return nil })
	}
	n, a, h := sipgateCall("e2e", 9)
	err := chromedp.Do(bctx,
		chromedp.Navigate(in.url+"/"),
		chromedp.WaitVisible(`#conn.live`),
		chromedp.WaitVisible(lamp("sipgate/w1", "idle")),
		post(n),
		chromedp.WaitVisible(lamp("sipgate/w9", "ringing")),
		chromedp.WaitVisible(`.call[data-state="ringing"]`),
		shot("board-ringing.png"),
		post(a),
		chromedp.WaitVisible(lamp("sipgate/w9", "busy")),
		chromedp.Sleep(2100*time.Millisecond), // let the duration tick
		shot("board-in-call.png"),
		post(h),
		chromedp.WaitVisible(lamp("sipgate/w9", "idle")),
		chromedp.Poll[chromedp.Void](`!!document.querySelector('#history .call[data-answered="true"]')`, chromedp.WithPollingTimeout(10*time.Second)),
		shot("board-after.png"),
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
		chromedp.Sleep(300*time.Millisecond),
		shot("board-phone.png"),
	)
	if err != nil {
		t.Fatalf("board in Chromium: %v", err)
	}
}

// newBrowser starts headless Chromium with a w x h window for the test.
func newBrowser(tb testing.TB, w, h int) context.Context {
	tb.Helper()
	browser := chromiumPath
	if _, err := os.Stat(browser); err != nil {
		p, lerr := exec.LookPath("chromium")
		if lerr != nil {
			tb.Fatalf("Chromium is needed for the board's browser test and was not found at %s or on PATH; "+
				"install it with: apt-get install -y chromium (make deps does)", chromiumPath)
		}
		browser = p
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.WindowSize(w, h),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	tb.Cleanup(cancelA)
	bctx, cancelB := chromedp.NewContext(actx)
	tb.Cleanup(cancelB)
	bctx, cancelT := context.WithTimeout(bctx, 120*time.Second)
	tb.Cleanup(cancelT)
	return bctx
}

// screenshot returns an action that saves the page as dir/name.
func screenshot(tb testing.TB, dir string) func(name string) chromedp.Action[chromedp.Void] {
	return func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			path := filepath.Join(dir, name)
			tb.Logf("screenshot: %s", path)
			return os.WriteFile(path, png, 0o644)
		})
	}
}

// seedBoard gives the board something to show: sipgate users with a call
// in progress and some history, and PBX extensions in every lamp state.
func seedBoard(tb testing.TB, in *instance) {
	tb.Helper()
	ctx := context.Background()
	for i, name := range []string{"Alice", "Bob", "Carol", "Dave"} {
		_ = name
		n, a, h := sipgateCall(fmt.Sprintf("seed%d", i), i+1)
		in.post(tb, n)
		if i != 2 {
			in.post(tb, a)
		}
		in.post(tb, h)
	}
	n, a, _ := sipgateCall("talking", 2)
	in.post(tb, n)
	in.post(tb, a)
	if err := in.store.AddExtensions(ctx, []string{"100", "101", "102", "103"}); err != nil {
		tb.Fatal(err)
	}
	for _, e := range []string{"100", "101", "102"} {
		if err := in.store.SetSubscription(ctx, e, callstate.SubscriptionActive, ""); err != nil {
			tb.Fatal(err)
		}
	}
	hold := true
	ev := callstate.Event{
		Source: callstate.SourceSIP, Type: "dialog", DedupKey: "seed-101", ReceivedAt: time.Now().Add(-95 * time.Second),
		Payload: []byte("<dialog-info/>"),
		Update: callstate.Update{Key: "101/d1", CallID: "d1", Extension: "101", Direction: callstate.DirectionOut,
			From: "101", To: "0301234567", State: callstate.StateAnswered, OnHold: &hold},
	}
	if _, err := in.store.Apply(ctx, ev); err != nil {
		tb.Fatal(err)
	}
	ev.DedupKey, ev.Update.Key, ev.Update.Extension, ev.Update.From, ev.Update.OnHold = "seed-102", "102/d2", "102", "102", nil
	ev.Update.Direction, ev.Update.From, ev.Update.To, ev.Update.State = callstate.DirectionIn, "0891112223", "102", callstate.StateRinging
	ev.Update.CallID = "d2"
	if _, err := in.store.Apply(ctx, ev); err != nil {
		tb.Fatal(err)
	}
}
