package handlers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/callstate/callstate"
)

// JourneyStore is what the journey endpoints need from a store. A
// DashboardStore that also is one gets /api/journeys, /api/missed and
// /api/stats.
type JourneyStore interface {
	// ListJourneys returns a page of journeys, newest first, and the next
	// page's cursor ("" after the last); a cursor it did not make is
	// callstate.ErrBadCursor.
	ListJourneys(ctx context.Context, f callstate.JourneyFilter) ([]callstate.Journey, string, error)
	// JourneysByID returns those of the journeys that exist.
	JourneysByID(ctx context.Context, ids []string) ([]callstate.Journey, error)
	// MissedCalls returns missed calls with their call-back status, newest first.
	MissedCalls(ctx context.Context, f callstate.MissedFilter) ([]callstate.MissedCall, error)
	// JourneyStats returns the day stats from..to (dates), of user only
	// unless all.
	JourneyStats(ctx context.Context, from, to time.Time, user string, all bool) ([]callstate.DayStats, error)
}

// MissedMarker is what POST /api/missed/{journey_id}/done needs of a
// JourneyStore: a store that also is one serves it.
type MissedMarker interface {
	// MarkMissedDone records that by marked the call to return of journey
	// id as done at at, and returns the mark that stands (the first) and
	// whether it is this one; a journey that is no missed or voicemail one
	// is callstate.ErrNotFound.
	MarkMissedDone(ctx context.Context, id, by string, at time.Time) (d callstate.MissedDone, created bool, err error)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

type journeysPage struct {
	Journeys   []callstate.JourneyJSON `json:"journeys"`
	NextCursor string                  `json:"next_cursor"`
}

type statsJSON struct {
	Day               string   `json:"day"`
	UserID            string   `json:"user_id"`
	CallsIn           int64    `json:"calls_in"`
	CallsOut          int64    `json:"calls_out"`
	Answered          int64    `json:"answered"`
	Missed            int64    `json:"missed"`
	Voicemail         int64    `json:"voicemail"`
	AnswerRatio       *float64 `json:"answer_ratio"`
	MeanAnswerSeconds *float64 `json:"mean_answer_seconds"`
	MaxAnswerSeconds  *float64 `json:"max_answer_seconds"`
	TalkSeconds       float64  `json:"talk_seconds"`
	Abandoned         int64    `json:"abandoned"`
	ShortAbandoned    int64    `json:"short_abandoned"`
	ServiceLevel      *float64 `json:"service_level"`
}

type journeyAPI struct {
	*api
	js JourneyStore
}

// journeysQuery is GET /api/journeys's query string.
type journeysQuery struct {
	Since   string `query:"since" validate:"omitempty,datetime=2006-01-02T15:04:05Z07:00"`
	Until   string `query:"until" validate:"omitempty,datetime=2006-01-02T15:04:05Z07:00"`
	Outcome string `query:"outcome" validate:"omitempty,outcome"`
	User    string `query:"user" validate:"omitempty,max=255,text"`
	Limit   string `query:"limit" validate:"omitempty,number,max=4"`
	Cursor  string `query:"cursor" validate:"omitempty,max=400,base64rawurl"`
}

func (a *journeyAPI) listJourneys(c echo.Context) error {
	var q journeysQuery
	if err := bindQuery(c, &q); err != nil {
		return err
	}
	f := callstate.JourneyFilter{Outcome: callstate.Outcome(q.Outcome), UserID: q.User, Cursor: q.Cursor}
	f.Since, _ = time.Parse(time.RFC3339, q.Since) // validated; zero when absent
	f.Until, _ = time.Parse(time.RFC3339, q.Until)
	var err error
	if f.Limit, err = parseLimit(q.Limit); err != nil {
		return err
	}
	ctx, cancel := a.queryContext(c)
	defer cancel()
	js, next, err := a.js.ListJourneys(ctx, f)
	if errors.Is(err, callstate.ErrBadCursor) {
		return echo.NewHTTPError(http.StatusBadRequest, "cursor is not one this API returned").SetInternal(err)
	}
	if err != nil {
		return err
	}
	out := journeysPage{Journeys: make([]callstate.JourneyJSON, 0, len(js)), NextCursor: next}
	for _, j := range js {
		out.Journeys = append(out.Journeys, callstate.NewJourneyJSON(j, a.phonebook))
	}
	setNextLink(c, next)
	return c.JSON(http.StatusOK, out)
}

// missedQuery is GET /api/missed's query string.
type missedQuery struct {
	Open  string `query:"open" validate:"omitempty,oneof=true false 1 0"`
	Since string `query:"since" validate:"omitempty,datetime=2006-01-02T15:04:05Z07:00"`
	Limit string `query:"limit" validate:"omitempty,number,max=4"`
}

func (a *journeyAPI) missed(c echo.Context) error {
	var q missedQuery
	if err := bindQuery(c, &q); err != nil {
		return err
	}
	f := callstate.MissedFilter{Open: q.Open != "false" && q.Open != "0"}
	f.Since, _ = time.Parse(time.RFC3339, q.Since)
	var err error
	if f.Limit, err = parseLimit(q.Limit); err != nil {
		return err
	}
	ctx, cancel := a.queryContext(c)
	defer cancel()
	ms, err := a.js.MissedCalls(ctx, f)
	if err != nil {
		return err
	}
	out := struct {
		Missed []missedJSON `json:"missed"`
	}{Missed: make([]missedJSON, 0, len(ms))}
	for _, m := range ms {
		users := m.UserIDs
		if users == nil {
			users = []string{}
		}
		out.Missed = append(out.Missed, missedJSON{JourneyID: m.JourneyID, Outcome: string(m.Outcome), Number: m.Number, To: m.To,
			UserIDs: users, NumberFormatted: a.phonebook.Format(m.Number), Name: a.phonebook.Name(m.Number),
			StartedAt: m.StartedAt, EndedAt: timePtr(m.EndedAt), CalledBack: m.CalledBack, CalledBackAt: timePtr(m.CalledBackAt),
			DoneAt: timePtr(m.DoneAt), DoneBy: m.DoneBy})
	}
	return c.JSON(http.StatusOK, out)
}

// maxDoneBody bounds POST /api/missed/{journey_id}/done's body.
const maxDoneBody = 4 << 10

// doneJSON is POST /api/missed/{journey_id}/done's answer.
type doneJSON struct {
	JourneyID string    `json:"journey_id"`
	DoneAt    time.Time `json:"done_at"`
	DoneBy    string    `json:"done_by"`
}

// markDone is POST /api/missed/{journey_id}/done with {"by": "Anna"}: the
// lead by marks the call to return as done, and it leaves the open calls
// to return. The first mark stands: marking it again answers 200 with the
// first mark, a new one 201.
func (a *journeyAPI) markDone(c echo.Context) error {
	mm := a.js.(MissedMarker) // registered only when it is one
	req := c.Request()
	id, err := url.PathUnescape(c.Param("id"))
	if err != nil || id == "" || len(id) > 255 || !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl) {
		return echo.NewHTTPError(http.StatusBadRequest, "the journey id in the path is not valid")
	}
	if mt, _, _ := strings.Cut(req.Header.Get(echo.HeaderContentType), ";"); strings.TrimSpace(mt) != echo.MIMEApplicationJSON {
		return echo.NewHTTPError(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	body, err := readBody(c.Response(), req, maxDoneBody)
	if err != nil {
		return err
	}
	var in struct {
		By string `json:"by"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "body must be a JSON object {\"by\": \"who marks it done\"}: "+err.Error()).SetInternal(err)
	}
	in.By = strings.TrimSpace(in.By)
	if in.By == "" || utf8.RuneCountInString(in.By) > callstate.MaxDoneBy || !utf8.ValidString(in.By) || strings.ContainsFunc(in.By, unicode.IsControl) {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("by must name who marks it done: 1 to %d characters, no control characters", callstate.MaxDoneBy))
	}
	ctx, cancel := a.queryContext(c)
	defer cancel()
	at := a.now()
	d, created, err := mm.MarkMissedDone(ctx, id, in.By, at)
	if errors.Is(err, callstate.ErrNotFound) {
		return echo.NewHTTPError(http.StatusNotFound, "no missed or voicemail call with this journey id").SetInternal(err)
	}
	if err != nil {
		return err
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	a.log.Info("call to return marked done", "journey_id", id, "by", d.DoneBy, "new", code == http.StatusCreated)
	a.today.mu.Lock()
	a.today.at = time.Time{} // the board asks again at once
	a.today.mu.Unlock()
	return c.JSON(code, doneJSON{JourneyID: d.JourneyID, DoneAt: d.DoneAt, DoneBy: d.DoneBy})
}

// statsQuery is GET /api/stats's query string.
type statsQuery struct {
	From string `query:"from" validate:"omitempty,datetime=2006-01-02"`
	To   string `query:"to" validate:"omitempty,datetime=2006-01-02"`
	User string `query:"user" validate:"omitempty,max=255,text"`
}

// maxStatsDays bounds the days of one GET /api/stats.
const maxStatsDays = 366

func (a *journeyAPI) stats(c echo.Context) error {
	var q statsQuery
	if err := bindQuery(c, &q); err != nil {
		return err
	}
	to := time.Now().UTC().AddDate(0, 0, 1) // today, wherever the stats' day is cut
	if q.To != "" {
		to, _ = time.Parse(time.DateOnly, q.To)
	}
	from := to.AddDate(0, 0, -30)
	if q.From != "" {
		from, _ = time.Parse(time.DateOnly, q.From)
	}
	if from.After(to) {
		return echo.NewHTTPError(http.StatusBadRequest, "from must not be after to")
	}
	if to.Sub(from) > maxStatsDays*24*time.Hour {
		return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf("at most %d days at once", maxStatsDays))
	}
	_, hasUser := c.QueryParams()["user"]
	ctx, cancel := a.queryContext(c)
	defer cancel()
	rows, err := a.js.JourneyStats(ctx, from, to, q.User, !hasUser)
	if err != nil {
		return err
	}
	out := struct {
		Stats []statsJSON `json:"stats"`
	}{Stats: make([]statsJSON, 0, len(rows))}
	for _, d := range rows {
		out.Stats = append(out.Stats, statsJSON{Day: d.Day.Format(time.DateOnly), UserID: d.UserID,
			CallsIn: d.CallsIn, CallsOut: d.CallsOut, Answered: d.Answered, Missed: d.Missed, Voicemail: d.Voicemail,
			AnswerRatio: d.AnswerRatio, MeanAnswerSeconds: d.MeanAnswerSeconds, MaxAnswerSeconds: d.MaxAnswerSeconds,
			TalkSeconds: d.TalkSeconds, Abandoned: d.Abandoned, ShortAbandoned: d.ShortAbandoned, ServiceLevel: d.ServiceLevel})
	}
	return c.JSON(http.StatusOK, out)
}
