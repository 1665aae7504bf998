package handlers

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/callstate/callstate"
)

//go:embed board
var boardFS embed.FS

// boardCSP is the board page's Content-Security-Policy: everything from
// the board's own origin, its service worker and manifest included.
const boardCSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; " +
	"worker-src 'self'; manifest-src 'self'"

// boardTypes are the Content-Types of the board's files by extension:
// set here, not read from the host's mime.types, since a service worker
// served as anything but JavaScript is refused and a manifest is read
// only as application/manifest+json.
var boardTypes = map[string]string{
	".js":          "text/javascript; charset=utf-8",
	".webmanifest": "application/manifest+json",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".css":         "text/css; charset=utf-8",
}

// registerBoard serves the live board: the page at / behind auth, the
// same page at /board/ without, and its script, style, manifest, icons
// and service worker under /board/ without (they hold no data, and a
// wall screen opened with ?access_token= could not send the token for
// them). /board/ is the installed app's start and scope: an enrollment
// link (/board/?enroll=...) and a tapped notification open it, and
// neither carries the API token; what the page reads is behind auth.
func registerBoard(e *echo.Echo, auth echo.MiddlewareFunc) {
	sub, _ := fs.Sub(boardFS, "board")
	page, _ := fs.ReadFile(sub, "index.html")
	// At /board/ the page's relative links (board/board.js, api/stream)
	// resolve from the directory above, as they do at /.
	appPage := bytes.Replace(page, []byte("<head>\n"), []byte("<head>\n<base href=\"../\">\n"), 1)
	servePage := func(body []byte) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Response().Header().Set(echo.HeaderCacheControl, "no-cache")
			c.Response().Header().Set("Content-Security-Policy", boardCSP)
			return c.HTMLBlob(http.StatusOK, body)
		}
	}
	e.GET("/", servePage(page), auth)
	e.GET("/board/", servePage(appPage))
	e.GET("/board", func(c echo.Context) error {
		u := *c.Request().URL
		u.Path, u.RawPath = "/board/", ""
		return c.Redirect(http.StatusMovedPermanently, u.RequestURI())
	})
	e.GET("/board/*", func(c echo.Context) error {
		// Only names of the embedded files: a path that does not decode,
		// is not UTF-8 or climbs out is not one of them.
		name, err := url.PathUnescape(strings.TrimPrefix(c.Request().URL.EscapedPath(), "/board/"))
		if err != nil || !utf8.ValidString(name) || !fs.ValidPath(name) || name == "." {
			return echo.NewHTTPError(http.StatusNotFound, "not found")
		}
		if st, err := fs.Stat(sub, name); err != nil || st.IsDir() {
			return echo.NewHTTPError(http.StatusNotFound, "not found")
		}
		h := c.Response().Header()
		h.Set(echo.HeaderCacheControl, "no-cache")
		if t, ok := boardTypes[path.Ext(name)]; ok {
			h.Set(echo.HeaderContentType, t)
		}
		http.ServeFileFS(c.Response(), c.Request(), sub, name)
		return nil
	})
}

// registerBoardAPI adds what the board reads besides calls and lamps: the
// team's day (/api/today) and the phonebook (/api/contacts).
func registerBoardAPI(g *echo.Group, a *api, shed echo.MiddlewareFunc) {
	g.GET("/today", a.teamDay, shed)
	if a.phonebook != nil {
		g.GET("/contacts", a.listContacts, shed)
		g.POST("/contacts", a.addContact, shed)
		g.Match([]string{http.MethodPut, http.MethodPatch, http.MethodDelete}, "/contacts", func(c echo.Context) error {
			c.Response().Header().Set(echo.HeaderAllow, "GET, HEAD, POST, OPTIONS")
			return echo.NewHTTPError(http.StatusMethodNotAllowed, "method not allowed: contacts are listed (GET) and added (POST)")
		})
	}
}

// todayCache keeps /api/today's answer for a second: every board asks
// after each change, and the day's numbers are one query over the day.
type todayCache struct {
	mu   sync.Mutex
	at   time.Time
	body teamDayJSON
}

const todayFresh = time.Second

// teamDayJSON is GET /api/today's answer.
type teamDayJSON struct {
	Day                string          `json:"day"`
	DayStart           time.Time       `json:"day_start"`
	Waiting            int             `json:"waiting"`
	NoNews             int             `json:"no_news"`
	RingingStale       float64         `json:"ringing_stale_seconds"`
	LongestWaitSince   *time.Time      `json:"longest_wait_since"`
	LongestWaitSeconds float64         `json:"longest_wait_seconds"`
	CallsIn            int             `json:"calls_in"`
	CallsOut           int             `json:"calls_out"`
	Answered           int             `json:"answered"`
	Missed             int             `json:"missed"`
	MissedOpen         int             `json:"missed_not_called_back"`
	Voicemail          int             `json:"voicemail"`
	Abandoned          int             `json:"abandoned"`
	ShortAbandoned     int             `json:"short_abandoned"`
	ServiceLevel       *float64        `json:"service_level"`
	SLASeconds         float64         `json:"sla_seconds"`
	Thresholds         thresholdsJSON  `json:"thresholds"`
	MissedCalls        []missedJSON    `json:"missed_calls"`
	People             []personDayJSON `json:"people"`
	AsOf               time.Time       `json:"as_of"`
}

// missedJSON is a call to return as /api/missed and /api/today show it.
type missedJSON struct {
	JourneyID       string     `json:"journey_id,omitempty"`
	Outcome         string     `json:"outcome"`
	Number          string     `json:"number"`
	To              string     `json:"to,omitempty"`
	NumberFormatted string     `json:"number_formatted"`
	Name            string     `json:"name,omitempty"`
	StartedAt       time.Time  `json:"started_at"`
	EndedAt         *time.Time `json:"ended_at"`
	CalledBack      bool       `json:"called_back"`
	CalledBackAt    *time.Time `json:"called_back_at"`
	DoneAt          *time.Time `json:"done_at"`
	DoneBy          string     `json:"done_by,omitempty"`
	UserIDs         []string   `json:"user_ids"`
}

type personDayJSON struct {
	UserID      string  `json:"user_id"`
	Name        string  `json:"name"`
	Calls       int     `json:"calls"`
	Answered    int     `json:"answered"`
	Missed      int     `json:"missed"`
	TalkSeconds float64 `json:"talk_seconds"`
}

func (a *api) teamDay(c echo.Context) error {
	if err := bindQuery(c, &struct{}{}); err != nil {
		return err
	}
	now := a.now()
	a.today.mu.Lock()
	defer a.today.mu.Unlock()
	if !a.today.at.IsZero() && now.Sub(a.today.at) < todayFresh && now.After(a.today.at) {
		return c.JSON(http.StatusOK, a.today.body)
	}
	ctx, cancel := a.queryContext(c)
	defer cancel()
	td, err := a.store.TeamDay(ctx, now)
	if err != nil {
		return err
	}
	ls, err := a.store.LampStatuses(ctx)
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, l := range ls {
		if l.Name != "" {
			names[l.Extension] = l.Name
		}
	}
	t := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	out := teamDayJSON{
		Day: td.Day, DayStart: td.DayStart, Waiting: td.Waiting, LongestWaitSince: t(td.LongestWaitSince),
		NoNews: td.NoNews, RingingStale: a.board.RingingStale.Seconds(),
		CallsIn: td.CallsIn, CallsOut: td.CallsOut, Answered: td.Answered, Missed: td.Missed, MissedOpen: td.MissedOpen,
		Voicemail: td.Voicemail, Abandoned: td.Abandoned, ShortAbandoned: td.ShortAbandoned, SLASeconds: td.SLASeconds,
		Thresholds: a.board.thresholdsJSON(), MissedCalls: make([]missedJSON, 0, len(td.MissedCalls)),
		People: make([]personDayJSON, 0, len(td.People)), AsOf: now,
	}
	if sl, ok := td.ServiceLevel(); ok {
		out.ServiceLevel = &sl
	}
	if !td.LongestWaitSince.IsZero() {
		out.LongestWaitSeconds = max(0, now.Sub(td.LongestWaitSince).Seconds())
	}
	for _, m := range td.MissedCalls {
		out.MissedCalls = append(out.MissedCalls, missedJSON{
			JourneyID: m.ID, Outcome: string(m.Outcome), DoneAt: t(m.DoneAt), DoneBy: m.DoneBy,
			Number: m.Number, NumberFormatted: a.phonebook.Format(m.Number), Name: a.phonebook.Name(m.Number),
			StartedAt: m.StartedAt, EndedAt: t(m.EndedAt), CalledBack: !m.CalledBackAt.IsZero(), CalledBackAt: t(m.CalledBackAt),
			UserIDs: m.UserIDs,
		})
	}
	for _, p := range td.People {
		out.People = append(out.People, personDayJSON{UserID: p.UserID, Name: names[p.UserID], Calls: p.Calls,
			Answered: p.Answered, Missed: p.Missed, TalkSeconds: p.TalkSeconds})
	}
	a.today.at, a.today.body = now, out
	return c.JSON(http.StatusOK, out)
}

// contactJSON is a contact as the API shows it.
type contactJSON struct {
	ID               int64     `json:"id"`
	Name             string    `json:"name"`
	Numbers          []string  `json:"numbers"`
	NumbersFormatted []string  `json:"numbers_formatted"`
	Groups           []string  `json:"groups"`
	UpdatedAt        time.Time `json:"updated_at"`
}

func (a *api) contactJSON(c callstate.Contact) contactJSON {
	groups := c.Groups
	if groups == nil {
		groups = []string{}
	}
	out := contactJSON{ID: c.ID, Name: c.Name, Numbers: c.Numbers, Groups: groups, UpdatedAt: c.UpdatedAt,
		NumbersFormatted: make([]string, len(c.Numbers))}
	for i, n := range c.Numbers {
		out.NumbersFormatted[i] = a.phonebook.Format(n)
	}
	return out
}

func (a *api) listContacts(c echo.Context) error {
	if err := bindQuery(c, &struct{}{}); err != nil {
		return err
	}
	ctx, cancel := a.queryContext(c)
	defer cancel()
	cs, err := a.phonebook.store.Contacts(ctx)
	if err != nil {
		return err
	}
	out := struct {
		Contacts []contactJSON `json:"contacts"`
	}{Contacts: make([]contactJSON, 0, len(cs))}
	for _, ct := range cs {
		out.Contacts = append(out.Contacts, a.contactJSON(ct))
	}
	return c.JSON(http.StatusOK, out)
}

// maxContactBody bounds POST /api/contacts's body.
const maxContactBody = 16 << 10

// addContact is POST /api/contacts: {"name": ..., "numbers": [...]},
// numbers as people write them. A contact of a known name gets the
// numbers it lacks. 201 for a new contact, 200 for a known one.
func (a *api) addContact(c echo.Context) error {
	req := c.Request()
	if mt, _, _ := strings.Cut(req.Header.Get(echo.HeaderContentType), ";"); strings.TrimSpace(mt) != echo.MIMEApplicationJSON {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	body, err := readBody(c.Response(), req, maxContactBody)
	if err != nil {
		return err
	}
	var in struct {
		Name    string   `json:"name"`
		Numbers []string `json:"numbers"`
		Groups  []string `json:"groups"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "body must be a JSON object {\"name\": \"...\", \"numbers\": [\"...\"], \"groups\": [\"...\"]}: "+err.Error()).SetInternal(err)
	}
	ct, err := callstate.NewContact(a.phonebook.plan, in.Name, in.Numbers)
	if err == nil {
		ct = ct.WithGroups(in.Groups...)
		err = ct.Validate()
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, err.Error()).SetInternal(err)
	}
	ctx, cancel := a.queryContext(c)
	defer cancel()
	got, n, err := a.phonebook.store.AddContacts(ctx, []callstate.Contact{ct})
	if errors.Is(err, callstate.ErrInvalidContact) {
		return echo.NewHTTPError(http.StatusBadRequest, strings.TrimPrefix(err.Error(), "store: add contacts: ")).SetInternal(err)
	}
	if err != nil {
		return err
	}
	if err := a.phonebook.Refresh(ctx); err != nil {
		a.log.Warn("phonebook: reload after adding a contact failed; it is tried again shortly", "err", err)
	}
	code := http.StatusOK
	if n.Added > 0 {
		code = http.StatusCreated
	}
	a.log.Info("contact added", "id", got[0].ID, "numbers", len(got[0].Numbers), "new", n.Added > 0)
	return c.JSON(code, a.contactJSON(got[0]))
}
