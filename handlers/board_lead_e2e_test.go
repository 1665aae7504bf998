package handlers_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store/storetest"
)

// longTeam are 60 users with names as long as German teams have them:
// double names, nobility particles, titles, four that share their first
// 27 characters.
var longTeam = []string{
	"Dr. Friederike Kowalczyk-Brandenburg", "Friedrich-Wilhelm von Hohenzollern-Sigmaringen",
	"Friedrich-Wilhelm von Hohenzollern-Hechingen", "Friedrich-Wilhelm von Hohenzollern-Haigerloch",
	"Friedrich-Wilhelm von Hohenzollern-Berg", "Maximiliane Lindenberger-Schwarzenbach",
	"Annemarie Oberhuber-Wittelsbacher", "Hans-Joachim Zimmermann-Kleinschmidt", "Prof. Dr. Ursula Meyer-Hildebrandt",
	"Karl-Theodor zu Guttenberg-Waldstein", "Sophie-Charlotte Günther-Rosenthal", "Jan-Philipp Keller-Eschenbach",
	"Mustafa Yıldırım-Schäfer", "Aleksandra Nowakowska-Brandt", "Giulia Romano-Hartmann", "Katharina Bergmann-Lichtenstein",
	"Wolfgang Amadeus Vogelsang", "Marie-Luise Schröder-Neuhaus", "Bernadette Fürstenberg-Hohenau", "Heinz-Dieter Kaltenbrunner",
	"Johanna Elisabeth Schwarzkopf", "Christoph Maximilian Lehmann", "Eva-Maria Krüger-Hoffmeister", "Ludwig van der Heyden-Rynsch",
	"Anna-Lena Becker-Wiesenthal", "Benedikt Schulz-Oberländer", "Leopoldine Wagner-Jauregg", "Konstantin Papadopoulos-Richter",
	"Theresa Müller-Lüdenscheidt", "Gottfried Schimmelpfennig", "Clara Zimmermann-Rautenstrauch", "Felix Schwarzenegger-Brandl",
	"Emilia Sonnenschein-Weber", "Leonhard Bauer-Kirchberger", "Mathilda Herrmann-Sternberg", "Oskar König-Wartenberg",
	"Luisa Walter-Hohenstein", "Moritz Mayer-Vorfelder", "Johann Huber-Edelstein", "Greta Fuchs-Löwenstein",
	"Vincent Peters-Falkenhausen", "Charlotte Lang-Eichendorff", "Julian Scholz-Rosenberg", "Amelie Möller-Stadtfeld",
	"Samuel Weiß-Grünewald", "Nele Jung-Tannenberg", "David Hahn-Lilienthal", "Marlene Schubert-Blumenthal",
	"Aaron Vogel-Birkenfeld", "Zoe Friedrich-Adlersberg", "Oliver Frank-Lindenau", "Tim Winkler-Eisenhardt",
	"Laura Roth-Kesselring", "Nico Beck-Marienfeld", "Fatma Demir-Schönberger", "Henrike Lange-Steinbrück",
	"Emil Krause-Wolfsburg", "Lena Meier-Buchholz", "Anton Lehmann-Hasselbach", "Ida Schmid-Rotenhahn",
}

// seedLead posts, through the webhook, a day of longTeam with 12 calls
// going on: 4 callers waiting (one a group ring at three people, the
// longest first), 8 in progress (incoming from callers of long names,
// outgoing to numbers); and calls to return: two missed, a voicemail, one
// missed yesterday... as far as the webhook's clock goes: all of today.
func seedLead(tb testing.TB, in *instance, clk *clock) {
	tb.Helper()
	post := func(at time.Time, v url.Values) { clk.set(at); in.post(tb, v.Encode()) }
	uid := func(i int) string { return fmt.Sprintf("w%d", i) }
	now := time.Now()
	for i, name := range longTeam {
		id := fmt.Sprintf("day%d", i)
		at := now.Add(-2*time.Hour + time.Duration(i)*time.Minute)
		post(at, url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {fmt.Sprintf("4915%09d", 100000+i)},
			"to": {"4930555000"}, "callId": {id}, "user[]": {name}, "userId[]": {uid(i)}})
		post(at.Add(4*time.Second), url.Values{"event": {"answer"}, "callId": {id}, "user": {name}, "userId": {uid(i)}, "answeringNumber": {"4930555000"}})
		post(at.Add(90*time.Second), url.Values{"event": {"hangup"}, "callId": {id}, "cause": {"normalClearing"}})
	}
	// To call back: two missed, a voicemail.
	for i, from := range []string{"4917012345678", "491709998887"} {
		id := fmt.Sprintf("missed%d", i)
		at := now.Add(-50*time.Minute + time.Duration(i)*time.Minute)
		post(at, url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {from}, "to": {"4930555000"},
			"callId": {id}, "user[]": {longTeam[5], longTeam[6]}, "userId[]": {uid(5), uid(6)}})
		post(at.Add(30*time.Second), url.Values{"event": {"hangup"}, "callId": {id}, "cause": {"cancel"}})
	}
	at := now.Add(-40 * time.Minute)
	post(at, url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {"4930901820"}, "to": {"4930555000"},
		"callId": {"vm1"}, "origCallId": {"vm1"}, "user[]": {longTeam[7]}, "userId[]": {uid(7)}})
	post(at.Add(20*time.Second), url.Values{"event": {"hangup"}, "callId": {"vm1"}, "origCallId": {"vm1"}, "cause": {"forwarded"}})
	post(at.Add(20*time.Second), url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {"4930901820"}, "to": {"4930555000"},
		"callId": {"vm1v"}, "origCallId": {"vm1"}, "user[]": {"voicemail"}})
	post(at.Add(21*time.Second), url.Values{"event": {"answer"}, "callId": {"vm1v"}, "origCallId": {"vm1"}})
	post(at.Add(80*time.Second), url.Values{"event": {"hangup"}, "callId": {"vm1v"}, "origCallId": {"vm1"}, "cause": {"normalClearing"}})

	// In progress: 6 incoming answered, from callers of long names, and 2
	// outgoing.
	callers := []string{"4916012345678", "4922147110", "4989123456", "4940998877", "491722223333", "4969887766"}
	for i, from := range callers {
		id := fmt.Sprintf("live%d", i)
		u := (i * 7) % len(longTeam)
		at := now.Add(-time.Duration(10-i) * time.Minute)
		post(at, url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {from}, "to": {"4930555000"},
			"callId": {id}, "user[]": {longTeam[u]}, "userId[]": {uid(u)}})
		post(at.Add(6*time.Second), url.Values{"event": {"answer"}, "callId": {id}, "user": {longTeam[u]}, "userId": {uid(u)},
			"answeringNumber": {"4930555000"}})
	}
	for i, to := range []string{"4921155443", "4935112233"} {
		id := fmt.Sprintf("out%d", i)
		u := 1 + i
		at := now.Add(-time.Duration(3-i) * time.Minute)
		post(at, url.Values{"event": {"newCall"}, "direction": {"out"}, "from": {"4930555000"}, "to": {to},
			"callId": {id}, "user[]": {longTeam[u]}, "userId[]": {uid(u)}})
		post(at.Add(8*time.Second), url.Values{"event": {"answer"}, "callId": {id}})
	}
	// Waiting: a group ring at three people (the longest wait), then three
	// callers at one each.
	post(now.Add(-95*time.Second), url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {"4917012345678"}, "to": {"4930555000"},
		"callId": {"wait0"}, "user[]": {longTeam[0], longTeam[1], longTeam[2]}, "userId[]": {uid(0), uid(1), uid(2)}})
	for i, from := range []string{"491511234567", "4930901820", "4922147110"} {
		u := 20 + i
		post(now.Add(-time.Duration(40-10*i)*time.Second), url.Values{"event": {"newCall"}, "direction": {"in"}, "from": {from},
			"to": {"4930555000"}, "callId": {fmt.Sprintf("wait%d", i+1)}, "user[]": {longTeam[u]}, "userId[]": {uid(u)}})
	}
	clk.set(time.Time{})
}

// TestBoardForALead opens the board as a team lead reads it, with calls
// posted through the webhook into PostgreSQL: at 1920x1080 with 60 users
// of long names and 12 calls, the callers waiting come first (longest wait
// on top, a group ring as one caller with the people it rings), every
// party of every call is shown whole or shortened in the middle, lamps
// whose names start alike read apart, and no text a lead reads is under
// 18px; on a phone the first screen shows the callers waiting. Screenshots
// go to the artifact directory.
func TestBoardForALead(t *testing.T) {
	clk := &clock{}
	in := newInstanceClock(t, storetest.NewDatabase(t), handlers.DashboardOptions{Board: handlers.BoardOptions{Sound: true}},
		handlers.StreamOptions{}, clk.now)
	for name, number := range map[string]string{
		"Dr. Friederike Kowalczyk-Brandenburg (Stadtwerke)":    "+49 160 12345678",
		"Bezirksschornsteinfegermeisterin Waltraud Oberländer": "+49 221 47110",
		"Zentrale Notdienst":                   "+49 89 123456",
		"Jürgen Müller sen.":                   "+49 170 12345678",
		"Hausverwaltung Kowalski & Söhne GmbH": "+49 30 901820",
	} {
		if code, body := postJSON(t, in, "/api/contacts", "application/json", fmt.Sprintf(`{"name": %q, "numbers": [%q]}`, name, number)); code != 201 {
			t.Fatalf("contact %s: %d %s", name, code, body)
		}
	}
	seedLead(t, in, clk)
	syncJourneys(t, in)
	bctx := newBrowser(t, 1920, 1080)
	shot := screenshot(t, artifactDir(t))

	err := chromedp.Do(bctx,
		chromedp.EmulateViewport(1920, 1080),
		chromedp.Navigate(in.url+"/?wall"),
		chromedp.WaitVisible(`#conn.live`),
		// The calls and lamps come with the stream's snapshot, today's
		// numbers and the calls to return with one fetch beside it; each
		// arrival draws the board, its timers and levels at once.
		chromedp.Poll[chromedp.Void](`document.querySelectorAll(".lamp").length === 60 && document.querySelectorAll("#waiting-list .call").length === 4 &&
			document.querySelectorAll("#active .call").length === 8 && document.querySelectorAll("#missed-list .call").length === 3 &&
			document.getElementById("sla").textContent !== ""`,
			chromedp.WithPollingTimeout(30*time.Second)),
		shot("board-lead-1920.png"),
	)
	if err != nil {
		t.Fatalf("board at 1920x1080: %v", err)
	}

	type party struct{ Full, Shown string }
	type wall struct {
		Order                 []string // section ids by reading order: top, then left
		Waits                 []int    // waiting callers' timers, seconds, top to bottom
		GroupRing             string
		Parties               []party
		Hidden                []string // parties not on the screen or cut by their box
		Lamps                 []party
		Small                 []string // text under 18px
		Page, LampsOver, Cut  bool
		ServiceLevel, Abandon string
		Sound                 string
		Levels                map[string]string
	}
	got, err := chromedp.Run(bctx, chromedp.Evaluate[wall](`(() => {
		const vis = (e) => e.getClientRects().length > 0 && !e.closest("[hidden]") && getComputedStyle(e).visibility !== "hidden";
		const secs = [...document.querySelectorAll("main > section")].filter(vis)
			.map((s) => ({ id: s.className, r: s.getBoundingClientRect() }))
			.sort((a, b) => (a.r.left < b.r.right - 1 && b.r.left < a.r.right - 1 ? a.r.top - b.r.top : a.r.left - b.r.left));
		const secs2 = secs.map((s) => s.id);
		const secs3 = secs2;
		const sec = (t) => { const [m, s] = t.split(":").map(Number); return m * 60 + s; };
		const parties = [...document.querySelectorAll("#waiting-list .party, #active .party")];
		const inView = (e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.top >= 0 && r.bottom <= innerHeight && r.left >= 0 && r.right <= innerWidth; };
		const small = [];
		for (const e of document.querySelectorAll("header *, main *")) {
			if (!vis(e)) continue;
			const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim() !== "");
			if (!own) continue;
			const fs = parseFloat(getComputedStyle(e).fontSize);
			if (fs < 18) small.push(e.tagName + "." + e.className + " " + fs.toFixed(1) + "px: " + e.textContent.trim().slice(0, 40));
		}
		const d = document.documentElement, box = document.getElementById("lamps-box");
		return {
			Order: secs3,
			Waits: [...document.querySelectorAll("#waiting-list .time")].map((t) => sec(t.textContent)),
			GroupRing: (document.querySelector("#waiting-list .call") || {}).textContent || "",
			Parties: parties.map((p) => ({ Full: p.dataset.full, Shown: p.textContent })),
			Hidden: parties.filter((p) => !vis(p) || !inView(p) || p.scrollWidth > p.clientWidth + 1).map((p) => p.dataset.full),
			Lamps: [...document.querySelectorAll(".lamp .name")].map((p) => ({ Full: p.dataset.full, Shown: p.textContent })),
			Small: small,
			Page: d.scrollHeight > innerHeight || d.scrollWidth > innerWidth,
			LampsOver: box.scrollHeight > box.clientHeight + 1,
			Cut: [...document.querySelectorAll(".lamp")].some((l) => { const r = l.getBoundingClientRect(); return r.bottom > innerHeight || r.right > innerWidth; }),
			ServiceLevel: document.getElementById("service-level").textContent,
			Abandon: document.getElementById("abandoned").textContent,
			Sound: vis(document.getElementById("sound")) ? document.getElementById("sound").textContent : "",
			Levels: Object.fromEntries([...document.querySelectorAll(".kpi[data-level]")].map((k) => [k.id, k.dataset.level])),
		};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Order) == 0 || got.Order[0] != "waiting-section" || got.Order[1] != "active-section" {
		t.Errorf("sections in reading order %q; want the callers waiting first, then the calls in progress", got.Order)
	}
	if len(got.Waits) != 4 {
		t.Errorf("waiting callers %v; want 4 (the group ring once)", got.Waits)
	}
	for i := 1; i < len(got.Waits); i++ {
		if got.Waits[i] > got.Waits[i-1] {
			t.Errorf("waits top to bottom %v; want the longest on top", got.Waits)
		}
	}
	for _, name := range longTeam[:3] { // the group ring's people, by their first word at least
		if first, _, _ := strings.Cut(name, " "); !strings.Contains(got.GroupRing, first) {
			t.Errorf("the group ring %q does not name %s", got.GroupRing, name)
		}
	}
	for _, p := range got.Parties {
		if !recognisable(p.Full, p.Shown) {
			t.Errorf("party %q shown as %q", p.Full, p.Shown)
		}
	}
	if len(got.Parties) != 4*2+2+8*2 {
		t.Errorf("%d parties shown; want both of each of the 12 calls, the group ring's three people", len(got.Parties))
	}
	if len(got.Hidden) > 0 {
		t.Errorf("parties not (whole) on the screen: %q", got.Hidden)
	}
	// live0 was answered 9:54 before the seed: its timer turns 10:00 a
	// few seconds on, with no event to draw the board again, and is a
	// digit wider; the names beside it still fit their narrower box.
	cut, err := chromedp.Run(bctx, chromedp.Poll[[]string](`[...document.querySelectorAll("#active .time")].some((t) => /^\d\d:\d\d$/.test(t.textContent)) &&
		[...document.querySelectorAll("#active .party")].filter((p) => p.scrollWidth > p.clientWidth + 1).map((p) => p.dataset.full)`,
		chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		t.Fatalf("no call in progress reached ten minutes: %v", err)
	}
	if len(cut) > 0 {
		t.Errorf("after a timer turned 10:00, parties cut by their box: %q", cut)
	}
	shown := map[string]string{}
	for _, l := range got.Lamps {
		if !recognisable(l.Full, l.Shown) {
			t.Errorf("lamp %q shown as %q", l.Full, l.Shown)
		}
		if o, ok := shown[l.Shown]; ok && o != l.Full {
			t.Errorf("lamps %q and %q both read %q", o, l.Full, l.Shown)
		}
		shown[l.Shown] = l.Full
	}
	if len(got.Small) > 0 {
		t.Errorf("text under 18px on the wall:\n%s", strings.Join(got.Small, "\n"))
	}
	if got.Page || got.LampsOver || got.Cut {
		t.Errorf("something scrolls or is off screen: page %v, lamps %v, lamps off screen %v", got.Page, got.LampsOver, got.Cut)
	}
	var td todayJSON
	get(t, in, "/api/today", nil, &td)
	if got.ServiceLevel == "–" || got.Abandon != fmt.Sprint(td.Abandoned) {
		t.Errorf("service level %q, abandoned %q; want a service level and %d abandoned", got.ServiceLevel, got.Abandon, td.Abandoned)
	}

	// The default thresholds: waiting=3:6 (4 waiting: amber at least),
	// service_level=0.9:0.8.
	wantSL := "ok"
	switch sl := deref(td.ServiceLevel); {
	case sl == nil:
	case sl.(float64) < 0.8:
		wantSL = "bad"
	case sl.(float64) < 0.9:
		wantSL = "warn"
	}
	if got.Levels["kpi-sl"] != wantSL || got.Levels["kpi-waiting"] == "ok" {
		t.Errorf("levels %v; want kpi-sl %s (service level %v) and kpi-waiting amber or red", got.Levels, wantSL, deref(td.ServiceLevel))
	}
	if !strings.Contains(got.Sound, "click") {
		t.Errorf("sound button says %q; want it to ask for a click", got.Sound)
	}
	t.Run("SoundAfterAClick", func(t *testing.T) {
		var hidden bool
		err := chromedp.Do(bctx,
			chromedp.Evaluate[chromedp.Void](`document.body.click()`),
			chromedp.Sleep(200*time.Millisecond),
		)
		if err == nil {
			hidden, err = chromedp.Run(bctx, chromedp.Evaluate[bool](`document.getElementById("sound").hidden`))
		}
		if err != nil || !hidden {
			t.Errorf("sound button still shown after a click (%v)", err)
		}
	})

	t.Run("Phone390", func(t *testing.T) {
		err := chromedp.Do(bctx,
			chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)),
			chromedp.Navigate(in.url+"/"),
			chromedp.WaitVisible(`#conn.live`),
			// The page as a lead sees it once everything has come: today's
			// numbers and the calls to return change the height of what is
			// above and beside the callers waiting.
			chromedp.Poll[chromedp.Void](`document.querySelectorAll("#waiting-list .call").length === 4 && document.querySelectorAll(".lamp").length === 60 &&
				document.querySelectorAll("#missed-list .call").length === 3 && document.getElementById("sla").textContent !== ""`,
				chromedp.WithPollingTimeout(30*time.Second)),
			viewShot(t, artifactDir(t), "board-lead-phone-first-screen.png"),
			shot("board-lead-phone.png"),
		)
		if err != nil {
			t.Fatal(err)
		}
		type phone struct {
			Top, Bottom float64
			Scrollers   []string
			Wide        bool
		}
		p, err := chromedp.Run(bctx, chromedp.Evaluate[phone](`(() => {
			const w = document.querySelector("#waiting-list .call").getBoundingClientRect();
			const before = [...document.querySelectorAll("body *")].filter((e) => {
				if (!(e.compareDocumentPosition(document.getElementById("waiting-list")) & Node.DOCUMENT_POSITION_FOLLOWING)) return false;
				const o = getComputedStyle(e).overflowY;
				return (o === "auto" || o === "scroll") && e.scrollHeight > e.clientHeight + 1;
			}).map((e) => e.tagName + "#" + e.id + "." + e.className);
			return { Top: w.top, Bottom: w.bottom, Scrollers: before, Wide: document.documentElement.scrollWidth > innerWidth };
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		if p.Bottom > 844 || p.Top < 0 {
			t.Errorf("first waiting caller at y=%.0f..%.0f; want it on the first screen (844px)", p.Top, p.Bottom)
		}
		if len(p.Scrollers) > 0 || p.Wide {
			t.Errorf("scroll boxes before the callers waiting: %q; page wider than the phone: %v", p.Scrollers, p.Wide)
		}
	})

	t.Run("MarkDoneFromTheBoard", func(t *testing.T) {
		err := chromedp.Do(bctx,
			chromedp.EmulateViewport(1600, 1000),
			chromedp.Evaluate[chromedp.Void](`localStorage.setItem("callstate.lead", "Lena Lead")`),
			chromedp.Navigate(in.url+"/"),
			chromedp.Poll[chromedp.Void](`document.querySelectorAll("#missed-list .call").length === 3`, chromedp.WithPollingTimeout(30*time.Second)),
			chromedp.Evaluate[chromedp.Void](`document.querySelector('#missed-list .call[data-outcome="voicemail"] .done').click()`),
			chromedp.Poll[chromedp.Void](`document.querySelectorAll("#missed-list .call").length === 2 &&
				!document.querySelector('#missed-list .call[data-outcome="voicemail"]')`, chromedp.WithPollingTimeout(20*time.Second)),
			shot("board-lead-marked.png"),
		)
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Missed []returnJSON `json:"missed"`
		}
		get(t, in, "/api/missed?open=false", nil, &out)
		marked := 0
		for _, m := range out.Missed {
			if m.Outcome == "voicemail" && m.DoneBy == "Lena Lead" && m.DoneAt != nil {
				marked++
			}
		}
		if marked != 1 {
			t.Errorf("calls to return %+v; want the voicemail marked done by Lena Lead", out.Missed)
		}
	})
}

// recognisable reports whether shown is full, or full shortened in the
// middle with at least 5 characters of its start and 5 of its end.
func recognisable(full, shown string) bool {
	if shown == full {
		return true
	}
	head, tail, ok := strings.Cut(shown, "…")
	return ok && len([]rune(head)) >= 5 && len([]rune(tail)) >= 5 &&
		strings.HasPrefix(full, head) && strings.HasSuffix(full, tail) && len([]rune(head))+len([]rune(tail)) < len([]rune(full))
}

// viewShot saves what the screen shows (not the whole page) as dir/name.
func viewShot(tb testing.TB, dir, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		png, err := chromedp.CaptureScreenshot()(ctx, tg)
		if err != nil {
			return err
		}
		path := filepath.Join(dir, name)
		tb.Logf("screenshot: %s", path)
		return os.WriteFile(path, png, 0o644)
	})
}
