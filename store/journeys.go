package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// refreshCallsSQL recomputes the journeys of the calls given by source and
// key (callstate_refresh_calls): a journey is a function of its legs, so
// computing it again after any write keeps it right whatever order the
// legs' events came in. Events' journeys are refreshed after their batch
// commits (refresher.go); Recompute, retention and erase refresh in their
// own transactions.
const refreshCallsSQL = `SELECT callstate_refresh_calls($1::text[], $2::text[])`

// refreshJourneys recomputes, within tx, the journeys ids and those of the
// calls given by sources and keys.
func refreshJourneys(ctx context.Context, tx pgx.Tx, ids, sources, keys []string) error {
	if len(ids) > 0 {
		if _, err := tx.Exec(ctx, `SELECT callstate_refresh_journeys($1::text[])`, ids); err != nil {
			return fmt.Errorf("refresh journeys: %w", err)
		}
	}
	if len(keys) > 0 {
		if _, err := tx.Exec(ctx, refreshCallsSQL, sources, keys); err != nil {
			return fmt.Errorf("refresh journeys: %w", err)
		}
	}
	return nil
}

// pendingSQL queues the journeys of the calls given by source and key to
// be computed again (journey_pending).
const pendingSQL = `INSERT INTO journey_pending (source, call_key) SELECT * FROM unnest($1::text[], $2::text[])`

// pendingKeys returns the calls of the events of batch, each once, as
// pendingSQL's parameters.
func pendingKeys(batch []*applyReq) (sources, keys []string) {
	seen := make(map[callKey]bool, len(batch))
	for _, r := range batch {
		k := callKey{string(r.ev.Source), r.ev.Update.Key}
		if !seen[k] {
			seen[k] = true
			sources, keys = append(sources, k.source), append(keys, k.key)
		}
	}
	return sources, keys
}

// journeyColumns are what the journey reads select, in journeyRow's order.
// The rule that routed a journey is read from its legs (the leg routed
// first, as internal/reference.JourneyOf says), so that the journey's refresh stays
// as it is.
const journeyColumns = `journey_id, source, direction, from_party, to_party, started_at, answered_at, ended_at,
    outcome, answered_by, answered_user_id, wait_seconds, talk_seconds, user_ids, legs, hangup_cause, voicemail_at,
    coalesce((SELECT l.routed_rule FROM call_state l
              WHERE l.journey_id = journey.journey_id AND l.routed_rule <> ''
              ORDER BY l.routed_at, l.routed_rule COLLATE "C" DESC LIMIT 1), '') AS routed_rule`

type journeyRow struct {
	ID             string     `db:"journey_id" json:"journey_id"`
	Source         string     `db:"source" json:"source"`
	Direction      string     `db:"direction" json:"direction"`
	From           string     `db:"from_party" json:"from_party"`
	To             string     `db:"to_party" json:"to_party"`
	StartedAt      *time.Time `db:"started_at" json:"started_at"`
	AnsweredAt     *time.Time `db:"answered_at" json:"answered_at"`
	EndedAt        *time.Time `db:"ended_at" json:"ended_at"`
	Outcome        string     `db:"outcome" json:"outcome"`
	AnsweredBy     string     `db:"answered_by" json:"answered_by"`
	AnsweredUserID string     `db:"answered_user_id" json:"answered_user_id"`
	WaitSeconds    *float64   `db:"wait_seconds" json:"wait_seconds"`
	TalkSeconds    *float64   `db:"talk_seconds" json:"talk_seconds"`
	UserIDs        []string   `db:"user_ids" json:"user_ids"`
	Legs           int        `db:"legs" json:"legs"`
	Cause          string     `db:"hangup_cause" json:"hangup_cause"`
	VoicemailAt    *time.Time `db:"voicemail_at" json:"voicemail_at"`
	Rule           string     `db:"routed_rule" json:"routed_rule"`
}

func (r journeyRow) journey() callstate.Journey {
	t := func(p *time.Time) time.Time {
		if p == nil {
			return time.Time{}
		}
		return p.UTC()
	}
	return callstate.Journey{
		ID: r.ID, Direction: callstate.Direction(r.Direction), From: r.From, To: r.To,
		StartedAt: t(r.StartedAt), AnsweredAt: t(r.AnsweredAt), EndedAt: t(r.EndedAt),
		Outcome: callstate.Outcome(r.Outcome), AnsweredBy: r.AnsweredBy, AnsweredUserID: r.AnsweredUserID,
		WaitSeconds: r.WaitSeconds, TalkSeconds: r.TalkSeconds,
		UserIDs: r.UserIDs, Legs: r.Legs, Cause: r.Cause, VoicemailAt: t(r.VoicemailAt), Rule: r.Rule,
	}
}

func collectJourneys(rows pgx.Rows) ([]callstate.Journey, error) {
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[journeyRow])
	if err != nil {
		return nil, readErr(err)
	}
	out := make([]callstate.Journey, len(rs))
	for i, r := range rs {
		out[i] = r.journey()
	}
	return out, nil
}

// JourneysByID returns the journeys with these ids that exist, in no
// particular order.
func (s *Store) JourneysByID(ctx context.Context, ids []string) ([]callstate.Journey, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+journeyColumns+` FROM journey WHERE journey_id = ANY ($1)`, ids)
	js, err := collectJourneys(rows)
	if err != nil {
		return nil, fmt.Errorf("store: journeys by id: %w", err)
	}
	return js, nil
}

// ListJourneys returns a page of the journeys f selects, newest first (by
// start, then id), and the next page's cursor, empty after the last. It
// returns an error wrapping ErrBadCursor for a cursor it did not make.
func (s *Store) ListJourneys(ctx context.Context, f callstate.JourneyFilter) ([]callstate.Journey, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	var (
		where = []string{`started_at IS NOT NULL`}
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if !f.Since.IsZero() {
		where = append(where, `started_at >= `+arg(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, `started_at < `+arg(f.Until))
	}
	if f.Outcome != "" {
		where = append(where, `outcome = `+arg(string(f.Outcome)))
	}
	if f.UserID != "" {
		where = append(where, arg(f.UserID)+` = ANY (user_ids)`)
	}
	if f.Cursor != "" {
		at, id, err := decodeJourneyCursor(f.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("store: list journeys: %w", err)
		}
		where = append(where, `(started_at, journey_id) < (`+arg(at)+`, `+arg(id)+`)`)
	}
	q := `SELECT ` + journeyColumns + ` FROM journey WHERE ` + strings.Join(where, ` AND `) +
		` ORDER BY started_at DESC, journey_id DESC LIMIT ` + arg(limit+1)
	rows, _ := s.pool.Query(ctx, q, args...)
	js, err := collectJourneys(rows)
	if err != nil {
		return nil, "", fmt.Errorf("store: list journeys: %w", err)
	}
	next := ""
	if len(js) > limit {
		js = js[:limit]
		last := js[len(js)-1]
		next = encodeJourneyCursor(last.StartedAt, last.ID)
	}
	return js, next, nil
}

func encodeJourneyCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + " " + id))
}

func decodeJourneyCursor(c string) (time.Time, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", ErrBadCursor
	}
	us, id, ok := strings.Cut(string(b), " ")
	n, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil {
		return time.Time{}, "", ErrBadCursor
	}
	return time.UnixMicro(n).UTC(), id, nil
}

// MissedCalls returns the calls to return (missed and voicemail) f
// selects, newest first.
func (s *Store) MissedCalls(ctx context.Context, f callstate.MissedFilter) ([]callstate.MissedCall, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	q := `SELECT journey_id, outcome, number, to_party, user_ids, started_at, ended_at, called_back, called_back_at,
            done_at, done_by
        FROM missed_call WHERE ($1::timestamptz IS NULL OR started_at >= $1)`
	if f.Open {
		q += ` AND open AND number NOT IN ('', 'anonymous')`
	}
	q += ` ORDER BY started_at DESC, journey_id DESC LIMIT $2`
	rows, _ := s.pool.Query(ctx, q, timeOrNil(f.Since), limit)
	var out []callstate.MissedCall
	var (
		m                 callstate.MissedCall
		outcome           string
		ended, back, done *time.Time
		doneBy            *string
	)
	_, err := pgx.ForEachRow(rows, []any{&m.JourneyID, &outcome, &m.Number, &m.To, &m.UserIDs, &m.StartedAt, &ended,
		&m.CalledBack, &back, &done, &doneBy}, func() error {
		mc := m
		mc.Outcome = callstate.Outcome(outcome)
		mc.StartedAt = mc.StartedAt.UTC()
		if ended != nil {
			mc.EndedAt = ended.UTC()
		}
		if back != nil {
			mc.CalledBackAt = back.UTC()
		}
		if done != nil {
			mc.DoneAt = done.UTC()
		}
		if doneBy != nil {
			mc.DoneBy = *doneBy
		}
		out = append(out, mc)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: missed calls: %w", readErr(err))
	}
	return out, nil
}

// MarkMissedDone records that by (a lead's name) marked the call to
// return of journey id as done at at: it leaves the open calls to return,
// whether it was called back or not. The first mark stands: marking it
// again returns the first, and created false. It returns an error
// wrapping ErrNotFound when id is no missed or voicemail journey.
func (s *Store) MarkMissedDone(ctx context.Context, id, by string, at time.Time) (d callstate.MissedDone, created bool, err error) {
	if err := s.available(); err != nil {
		return callstate.MissedDone{}, false, fmt.Errorf("store: mark missed call done: %w", err)
	}
	d = callstate.MissedDone{JourneyID: id}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The journey's row lock keeps a refresh from turning it into
		// another outcome (or deleting it) until the mark is in.
		var outcome string
		if err := tx.QueryRow(ctx, `SELECT outcome FROM journey WHERE journey_id = $1 FOR SHARE`, id).Scan(&outcome); err != nil {
			return err
		}
		if outcome != string(callstate.OutcomeMissed) && outcome != string(callstate.OutcomeVoicemail) {
			return pgx.ErrNoRows
		}
		tag, err := tx.Exec(ctx, `INSERT INTO missed_call_done (journey_id, done_at, done_by) VALUES ($1, $2, $3)
            ON CONFLICT (journey_id) DO NOTHING`, id, at, by)
		if err != nil {
			return err
		}
		created = tag.RowsAffected() == 1
		return tx.QueryRow(ctx, `SELECT done_at, done_by FROM missed_call_done WHERE journey_id = $1`, id).Scan(&d.DoneAt, &d.DoneBy)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return callstate.MissedDone{}, false, fmt.Errorf("store: mark missed call %q done: %w", id, ErrNotFound)
	}
	if err != nil {
		return callstate.MissedDone{}, false, fmt.Errorf("store: mark missed call %q done: %w", id, readErr(err))
	}
	d.DoneAt = d.DoneAt.UTC()
	return d, created, nil
}

// JourneyStats returns journey_stats_day's rows for the days from and to
// (inclusive, as dates in the stats time zone), of the whole team (user
// "") and each user, or of one user when user is not empty; by day, then
// user.
func (s *Store) JourneyStats(ctx context.Context, from, to time.Time, user string, all bool) ([]callstate.DayStats, error) {
	q := `SELECT day, user_id, calls_in, calls_out, answered, missed, voicemail, answer_ratio,
            mean_answer_seconds, max_answer_seconds, talk_seconds, abandoned, short_abandoned, service_level
        FROM journey_stats_day WHERE day BETWEEN $1::date AND $2::date`
	args := []any{from.Format(time.DateOnly), to.Format(time.DateOnly)}
	if !all {
		q += ` AND user_id = $3`
		args = append(args, user)
	}
	q += ` ORDER BY day, user_id`
	rows, _ := s.pool.Query(ctx, q, args...)
	var out []callstate.DayStats
	var d callstate.DayStats
	_, err := pgx.ForEachRow(rows, []any{&d.Day, &d.UserID, &d.CallsIn, &d.CallsOut, &d.Answered, &d.Missed, &d.Voicemail,
		&d.AnswerRatio, &d.MeanAnswerSeconds, &d.MaxAnswerSeconds, &d.TalkSeconds, &d.Abandoned, &d.ShortAbandoned,
		&d.ServiceLevel}, func() error {
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: journey stats: %w", readErr(err))
	}
	return out, nil
}

// TimeZone returns the time zone that cuts the days of journey_stats_day.
func (s *Store) TimeZone(ctx context.Context) (string, error) {
	var tz string
	if err := s.pool.QueryRow(ctx, `SELECT callstate_time_zone()`).Scan(&tz); err != nil {
		return "", fmt.Errorf("store: time zone: %w", readErr(err))
	}
	return tz, nil
}

// SetTimeZone makes tz (an IANA name PostgreSQL knows, such as
// Europe/Berlin) the time zone that cuts the days of the journeys and of
// journey_stats_day. When it changes, every journey's day is computed
// again, in one transaction. moved says whether any journey's day moved
// (false on a new database, and when tz is the zone already set). It
// returns an error wrapping ErrBadTimeZone for a zone PostgreSQL does not
// know.
func (s *Store) SetTimeZone(ctx context.Context, tz string) (moved bool, err error) {
	if err := s.available(); err != nil {
		return false, fmt.Errorf("store: set time zone: %w", err)
	}
	var known bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)`, tz).Scan(&known); err != nil {
		return false, fmt.Errorf("store: set time zone: %w", readErr(err))
	}
	if !known {
		return false, fmt.Errorf("store: set time zone %q: %w", tz, ErrBadTimeZone)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO callstate_setting (name, value) VALUES ('time_zone', $1)
			ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value WHERE callstate_setting.value <> EXCLUDED.value`, tz)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		tag, err = tx.Exec(ctx, `UPDATE journey SET day = (started_at AT TIME ZONE $1)::date
			WHERE day IS DISTINCT FROM (started_at AT TIME ZONE $1)::date`, tz)
		moved = tag.RowsAffected() > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: set time zone %q: %w", tz, readErr(err))
	}
	return moved, nil
}

// SetServiceLevel makes sla the time within which an answer counts in
// the service level, and short the wait under which an abandoned call is
// a short abandon (callstate_setting sla_seconds, short_abandon_seconds).
// When either changes, every day's stats are computed again, in one
// transaction. sla must be positive, short not negative (0: no short
// abandons).
func (s *Store) SetServiceLevel(ctx context.Context, sla, short time.Duration) (changed bool, err error) {
	if err := s.available(); err != nil {
		return false, fmt.Errorf("store: set service level: %w", err)
	}
	if sla <= 0 || short < 0 {
		return false, fmt.Errorf("store: set service level: sla %s must be positive, short abandon %s not negative", sla, short)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO callstate_setting (name, value) VALUES ('sla_seconds', $1), ('short_abandon_seconds', $2)
			ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value WHERE callstate_setting.value <> EXCLUDED.value`,
			strconv.FormatFloat(sla.Seconds(), 'f', -1, 64), strconv.FormatFloat(short.Seconds(), 'f', -1, 64))
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		changed = true
		_, err = tx.Exec(ctx, `SELECT callstate_rebuild_journey_stats()`)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: set service level: %w", readErr(err))
	}
	return changed, nil
}

// ErrBadTimeZone is returned wrapped by SetTimeZone for a time zone
// PostgreSQL does not know.
var ErrBadTimeZone = errors.New("unknown time zone")

// compactDays bounds the days one compaction computes again.
const compactDays = 31

// CompactJourneyStats folds the changes journey_stats_day has collected
// since the last time into one row per day and user, computed again from
// the journeys (migration 016): the view stays a few rows per day to
// read, and its longest time to answer exact. It returns the days it
// compacted; 0 when there was nothing to do, or when another instance is
// compacting. Run it every few seconds.
func (s *Store) CompactJourneyStats(ctx context.Context) (days int, err error) {
	if err := s.available(); err != nil {
		return 0, fmt.Errorf("store: compact journey stats: %w", err)
	}
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT callstate_compact_journey_stats($1)`, compactDays).Scan(&days)
	})
	if err != nil {
		return 0, fmt.Errorf("store: compact journey stats: %w", readErr(err))
	}
	return max(days, 0), nil
}
