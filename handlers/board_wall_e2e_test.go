package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
)

// teamNames are 60 users as a team has them: up to 24 characters, two of
// one name, two that start alike.
var teamNames = []string{
	"Anna Becker", "Anna Becker", "Ben Schulz", "Ben Schmidt", "Maximiliane Lindenberger", "Jonas Wagner",
	"Lea Hoffmann", "Paul Schäfer", "Mia Koch", "Elias Bauer", "Emma Richter", "Noah Klein", "Sophia Wolf",
	"Luis Schröder", "Hannah Neumann", "Felix Schwarz", "Emilia Zimmermann", "Leon Braun", "Marie Krüger",
	"Finn Hofmann", "Lina Hartmann", "Henry Lange", "Clara Schmitt", "Theo Werner", "Ella Schmitz",
	"Emil Krause", "Lena Meier", "Anton Lehmann", "Ida Schmid", "Jakob Schulze", "Frieda Maier",
	"Karl Köhler", "Mathilda Herrmann", "Oskar König", "Luisa Walter", "Moritz Mayer", "Johanna Huber",
	"Leonard Kaiser", "Greta Fuchs", "Vincent Peters", "Charlotte Lang", "Julian Scholz", "Amelie Möller",
	"Samuel Weiß", "Nele Jung", "David Hahn", "Marlene Schubert", "Aaron Vogel", "Zoe Friedrich",
	"Jan-Philipp Keller", "Sophie-Charlotte Günther", "Mustafa Yıldırım", "Aleksandra Nowak", "Giulia Romano",
	"Oliver Frank", "Katharina Berger", "Tim Winkler", "Laura Roth", "Nico Beck", "Fatma Demir",
}

// restartable serves an instance's handler on a fixed address that can be
// stopped (every connection closed at once, as a crashed or restarting
// server does) and started again.
type restartable struct {
	tb   testing.TB
	h    http.Handler
	addr string
	srv  *http.Server
}

func newRestartable(tb testing.TB, h http.Handler) *restartable {
	r := &restartable{tb: tb, h: h, addr: "127.0.0.1:0"}
	r.start()
	tb.Cleanup(r.stop)
	return r
}

func (r *restartable) start() {
	r.tb.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may take a moment to be free again
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		r.tb.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.srv = &http.Server{Handler: r.h, ReadHeaderTimeout: 5 * time.Second}
	go r.srv.Serve(ln) //nolint:errcheck // ends with stop
}

func (r *restartable) stop() { _ = r.srv.Close() }

func (r *restartable) url() string { return "http://" + r.addr }

// seedTeam gives every user of teamNames a lamp and a call today, some
// missed calls (one called back), and 10 calls going on: 6 answered, 4
// ringing, 3 of them from numbers in the phonebook.
func seedTeam(tb testing.TB, in *instance) {
	tb.Helper()
	post := func(v url.Values) { in.post(tb, v.Encode()) }
	uid := func(i int) string { return fmt.Sprintf("w%d", i) }
	for i, name := range teamNames {
		id := fmt.Sprintf("day%d", i)
		from := fmt.Sprintf("4915%09d", 100000+i)
		post(url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {from}, "to": {"4930555000"},
			"callId": {id}, "user[]": {name}, "userId[]": {uid(i)}})
		post(url.Values{"event": {"answer"}, "direction": {"in"}, "callId": {id}, "user": {name}, "userId": {uid(i)},
			"answeringNumber": {"4930555000"}})
		post(url.Values{"event": {"hangup"}, "callId": {id}, "cause": {"normalClearing"}})
	}
	for i, from := range []string{"4917012345678", "491709998887", "anonymous"} { // Jürgen Müller sen., two unknown
		id := fmt.Sprintf("missed%d", i)
		post(url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {from}, "to": {"4930555000"},
			"callId": {id}, "user[]": {teamNames[5], teamNames[6]}, "userId[]": {uid(5), uid(6)}})
		post(url.Values{"event": {"hangup"}, "callId": {id}, "cause": {"cancel"}})
	}
	// Jonas calls the second one back.
	post(url.Values{"event": {"newCall"}, "direction": {"out"}, "from": {"4930555000"}, "to": {"491709998887"},
		"callId": {"back1"}, "user[]": {teamNames[5]}, "userId[]": {uid(5)}})
	post(url.Values{"event": {"answer"}, "direction": {"out"}, "callId": {"back1"}})
	post(url.Values{"event": {"dtmf"}, "callId": {"back1"}, "dtmf": {"12"}})
	post(url.Values{"event": {"hangup"}, "callId": {"back1"}, "cause": {"normalClearing"}})
	callers := []string{"4916012345678", "4922147110", "4930901820", "491511234567", "4989123456", "4940998877",
		"491722223333", "4969887766", "4921155443", "4935112233"}
	for i, from := range callers {
		id := fmt.Sprintf("live%d", i)
		u := 10 + i*3
		post(url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {from}, "to": {"4930555000"},
			"callId": {id}, "user[]": {teamNames[u]}, "userId[]": {uid(u)}})
		if i < 6 {
			post(url.Values{"event": {"answer"}, "direction": {"in"}, "callId": {id}, "user": {teamNames[u]},
				"userId": {uid(u)}, "answeringNumber": {"4930555000"}})
		}
	}
	// The day's journeys written: an unanswered one ends once its grace
	// has passed (docs/events.md).
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := in.store.SyncFeed(ctx); err != nil {
		tb.Fatal(err)
	}
}

// TestBoardOnTheWall opens the board as a wall screen shows it: 60 users
// and 10 calls (4 waiting, 6 in progress) at 1920x1080 fit without
// scrolling, with every name whole
// and the lead's numbers those of the database; at 1280x800 and on a
// phone it stays inside the screen's width. Then the server goes away
// (the board greys out) and comes back (it catches up from one snapshot).
func TestBoardOnTheWall(t *testing.T) {
	in := newInstance(t, storetest.NewDatabase(t), handlers.DashboardOptions{}, handlers.StreamOptions{})
	importFile(t, in, "contacts-iphone.vcf")
	importFile(t, in, "contacts-android.vcf")
	importFile(t, in, "contacts-outlook-de.csv")
	seedTeam(t, in)
	srv := newRestartable(t, in.srv.Config.Handler)
	bctx := newBrowser(t, 1920, 1080)
	shot := screenshot(t, artifactDir(t))
	ctx := context.Background()

	err := chromedp.Do(bctx,
		chromedp.EmulateViewport(1920, 1080),
		chromedp.Navigate(srv.url()+"/?wall"),
		chromedp.WaitVisible(`#conn.live`),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll(".lamp").length === 60 && document.querySelectorAll("#active .call").length === 6 &&
			document.querySelectorAll("#waiting-list .call").length === 4`,
			chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Sleep(1500*time.Millisecond), // today's numbers, and a tick
		shot("board-wall-1920.png"),
	)
	if err != nil {
		t.Fatalf("board at 1920x1080: %v", err)
	}

	t.Run("FitsAt1920", func(t *testing.T) {
		type fit struct {
			Page, Lamps, Active bool
			Cut                 []string
			Offscreen           int
			Shown               []string
			Dupes               int
		}
		got, err := chromedp.Run(bctx, chromedp.Evaluate[fit](`(() => {
			const over = (e) => e.scrollHeight > e.clientHeight + 1 || e.scrollWidth > e.clientWidth + 1;
			const d = document.documentElement;
			const items = [...document.querySelectorAll(".lamp, #active .call, #waiting-list .call")];
			return {
				Page: d.scrollHeight > innerHeight || d.scrollWidth > innerWidth,
				Lamps: over(document.getElementById("lamps-box")),
				Active: over(document.getElementById("active")),
				Cut: [...document.querySelectorAll(".lamp .name")]
					.filter((n) => [...n.dataset.full].length <= 24 && (n.textContent !== n.dataset.full || n.scrollWidth > n.clientWidth)).map((n) => n.textContent),
				Offscreen: items.filter((e) => { const r = e.getBoundingClientRect(); return r.bottom > innerHeight || r.right > innerWidth; }).length,
				Shown: [...document.querySelectorAll("#active .parties")].map((p) => p.querySelector(".from").textContent + " → " + p.querySelector(".to").textContent),
				Dupes: document.querySelectorAll(".lamp .ext").length,
			};
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		if got.Page || got.Lamps || got.Active || got.Offscreen > 0 {
			t.Errorf("something scrolls or is off screen: page %v, lamps %v, active calls %v, %d items off screen",
				got.Page, got.Lamps, got.Active, got.Offscreen)
		}
		if len(got.Cut) > 0 {
			dbg, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`(() => { const n = [...document.querySelectorAll(".lamp .name")].find((n) => n.dataset.full.startsWith("Maximiliane"));
				const ul = document.getElementById("lamps"); const cs = getComputedStyle(n);
				return [n.clientWidth, n.scrollWidth, n.closest(".lamp").getBoundingClientRect().width, ul.style.cssText, cs.fontSize, cs.fontWeight, cs.fontFamily, ul.clientWidth].join(" | "); })()`))
			t.Errorf("names cut: %q (%s)", got.Cut, dbg)
		}
		if got.Dupes != 2 {
			t.Errorf("%d lamps tell their extension, want the 2 Anna Beckers", got.Dupes)
		}
		all := strings.Join(got.Shown, "\n")
		for _, want := range []string{"Anna-Lena Becker → Emma Richter", "Sabine Hoffmann → ", "Zentrale Notdienst → ", "+49 89 123456 → Clara Schmitt"} {
			if !strings.Contains(all, want) {
				t.Errorf("active calls lack %q:\n%s", want, all)
			}
		}
	})

	t.Run("NumbersMatchDatabase", func(t *testing.T) {
		td, err := in.store.TeamDay(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]string](`(() => {
			const t = (id) => document.getElementById(id).textContent;
			return {waiting: t("waiting"), answered: t("answered"), out: t("calls-out"),
				open: t("to-call-back"), missed: t("missed-today"), longest: t("longest-wait"),
				jonas: document.querySelector('.lamp[data-key="sipgate/w5"] .today').textContent};
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"waiting": strconv.Itoa(td.Waiting), "answered": strconv.Itoa(td.Answered),
			"missed": fmt.Sprintf("%d missed · %d vm today", td.Missed, td.Voicemail),
			"out":    strconv.Itoa(td.CallsOut), "open": strconv.Itoa(td.MissedOpen),
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s shows %q, database says %q", k, got[k], v)
			}
		}
		if td.Waiting != 4 || td.Missed != 3 || td.MissedOpen != 1 || td.Answered != 60+6 { // the anonymous caller is none to call back
			t.Errorf("seeded day: %+v", td)
		}
		if !strings.HasPrefix(got["longest"], "longest 0:") {
			t.Errorf("longest wait shows %q", got["longest"])
		}
		for _, p := range td.People {
			if p.UserID == "w5" && !strings.HasPrefix(got["jonas"], fmt.Sprintf("%d ☎  %d ✕", p.Calls, p.Missed)) {
				t.Errorf("Jonas's tile says %q, database: %+v", got["jonas"], p)
			}
		}
	})

	narrow := func(w, h int64, name string) {
		t.Helper()
		err := chromedp.Do(bctx,
			chromedp.EmulateViewport(w, h),
			chromedp.Sleep(500*time.Millisecond),
			shot(name),
		)
		if err != nil {
			t.Fatal(err)
		}
		over, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("body *")]
			.filter((e) => e.getBoundingClientRect().right > innerWidth + 1 && e.getClientRects().length)
			.map((e) => e.tagName + "." + e.className).slice(0, 10)`))
		if err != nil {
			t.Fatal(err)
		}
		wide, _ := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > innerWidth`))
		if wide || len(over) > 0 {
			t.Errorf("at %dx%d the page is wider than the screen: %v", w, h, over)
		}
	}
	t.Run("Readable1280", func(t *testing.T) { narrow(1280, 800, "board-wall-1280.png") })
	t.Run("Phone390", func(t *testing.T) { narrow(390, 844, "board-wall-phone.png") })

	t.Run("OfflineGreysAndCatchesUp", func(t *testing.T) {
		if err := chromedp.Do(bctx, chromedp.EmulateViewport(1920, 1080), chromedp.Sleep(300*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		srv.stop()
		stopped := time.Now()
		err := chromedp.Do(bctx,
			chromedp.Poll[chromedp.Void](`document.body.classList.contains("stale") && !document.getElementById("offline").hidden`,
				chromedp.WithPollingTimeout(10*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)),
		)
		if err != nil {
			t.Fatalf("board not greyed out 10 s after the server stopped: %v", err)
		}
		t.Logf("greyed out %v after the server stopped", time.Since(stopped).Round(10*time.Millisecond))
		timer := `document.querySelector("#active .call .time").textContent`
		before, _ := chromedp.Run(bctx, chromedp.Evaluate[string](timer))
		if err := chromedp.Do(bctx, chromedp.Sleep(1200*time.Millisecond), shot("board-wall-offline.png")); err != nil {
			t.Fatal(err)
		}
		after, _ := chromedp.Run(bctx, chromedp.Evaluate[string](timer))
		if before != after {
			t.Errorf("a call's timer went on while offline: %s, then %s", before, after)
		}
		since, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById("offline-since").textContent`))
		if want := "since " + stopped.Format("15:04"); since != want && since != "since "+stopped.Add(-time.Minute).Format("15:04") {
			t.Errorf("offline banner says %q, want %q", since, want)
		}

		// Meanwhile a call comes in (events still reach the database, by
		// another instance) and an answered one ends.
		ev := callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: "while-down", ReceivedAt: time.Now(),
			Payload: []byte("event=newCall"), Update: callstate.Update{Key: "while-down", CallID: "while-down",
				Direction: callstate.DirectionIn, From: "4917012345678", To: "4930555000", Users: []string{"Ben Schulz"},
				UserIDs: []string{"w2"}, State: callstate.StateRinging}}
		if _, err := in.store.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
		srv.start()
		restarted := time.Now()
		err = chromedp.Do(bctx,
			chromedp.Poll[chromedp.Void](`!document.body.classList.contains("stale") &&
				[...document.querySelectorAll("#waiting-list .call")].some((li) => li.querySelector(".caller").textContent === "Jürgen Müller sen." &&
					li.querySelector(".ring").textContent === "Ben Schulz") &&
				document.getElementById("waiting").textContent === "5"`,
				chromedp.WithPollingTimeout(2*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)),
		)
		if err != nil {
			t.Fatalf("board not caught up 2 s after the server came back: %v", err)
		}
		t.Logf("caught up %v after the server came back", time.Since(restarted).Round(10*time.Millisecond))
		if err := chromedp.Do(bctx, chromedp.Sleep(300*time.Millisecond), shot("board-wall-back.png")); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	})
}
