package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// TeamDay returns the lead's numbers of the day of now, as the journey
// views cut it (callstate_setting time_zone): calls waiting now and the
// longest wait (call_journey; a sipgate journey ringing with no news for
// callstate_setting ringing_stale_seconds counts in NoNews instead, see
// callstate.Call.NoNews), the day's counts per team and person
// (journey_stats_day), and the day's missed calls with their call-back
// status (missed_call). Answered includes the incoming calls a person
// answered that are still going on (for the team and for that person),
// which journey_stats_day counts as answered once they end; and in the
// service level, answered within callstate_setting sla_seconds or not.
func (s *Store) TeamDay(ctx context.Context, now time.Time) (callstate.TeamDay, error) {
	var t callstate.TeamDay
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		var day time.Time
		var longest *time.Time
		var answering, answeringSL int
		err := tx.QueryRow(ctx, `
WITH d AS (SELECT ($1::timestamptz AT TIME ZONE callstate_time_zone())::date AS day,
                  callstate_setting_seconds('sla_seconds', 20) AS sla,
                  callstate_setting_seconds('ringing_stale_seconds', 0) AS stale)
SELECT d.day,
       d.day::timestamp AT TIME ZONE callstate_time_zone(),
       count(*) FILTER (WHERE j.answered_at IS NULL AND j.direction <> 'out'
                          AND NOT (d.stale > 0 AND j.source = 'sipgate' AND j.updated_at <= $1::timestamptz - make_interval(secs => d.stale))),
       min(j.started_at) FILTER (WHERE j.answered_at IS NULL AND j.direction <> 'out'
                          AND NOT (d.stale > 0 AND j.source = 'sipgate' AND j.updated_at <= $1::timestamptz - make_interval(secs => d.stale))),
       count(*) FILTER (WHERE j.answered_at IS NULL AND j.direction <> 'out'
                          AND d.stale > 0 AND j.source = 'sipgate' AND j.updated_at <= $1::timestamptz - make_interval(secs => d.stale)),
       count(*) FILTER (WHERE j.answered_at IS NOT NULL AND j.direction <> 'out' AND j.day = d.day),
       count(*) FILTER (WHERE j.answered_at IS NOT NULL AND j.direction <> 'out' AND j.day = d.day AND j.wait_seconds <= d.sla),
       d.sla
FROM d LEFT JOIN call_journey j ON j.outcome = 'active'
GROUP BY d.day, d.sla, d.stale`, now).Scan(&day, &t.DayStart, &t.Waiting, &longest, &t.NoNews, &answering, &answeringSL, &t.SLASeconds)
		if err != nil {
			return err
		}
		t.Day = day.Format(time.DateOnly)
		if longest != nil {
			t.LongestWaitSince = *longest
		}
		rows, _ := tx.Query(ctx, `
SELECT user_id, calls_in, calls_out, answered, missed, voicemail, talk_seconds,
       abandoned, short_abandoned, sl_answered, sl_offered
FROM journey_stats_day WHERE day = $1 ORDER BY user_id`, day)
		var st statsRow
		_, err = pgx.ForEachRow(rows, []any{&st.UserID, &st.In, &st.Out, &st.Answered, &st.Missed, &st.Voicemail, &st.Talk,
			&st.Abandoned, &st.ShortAbandoned, &st.SLAnswered, &st.SLOffered}, func() error {
			if st.UserID == "" {
				t.CallsIn, t.CallsOut, t.Answered, t.Missed, t.Voicemail = int(st.In), int(st.Out), int(st.Answered), int(st.Missed), int(st.Voicemail)
				t.Abandoned, t.ShortAbandoned = int(st.Abandoned), int(st.ShortAbandoned)
				t.SLAnswered, t.SLOffered = int(st.SLAnswered), int(st.SLOffered)
				return nil
			}
			t.People = append(t.People, callstate.PersonDay{UserID: st.UserID, Calls: int(st.In + st.Out),
				Answered: int(st.Answered), Missed: int(st.Missed), TalkSeconds: st.Talk})
			return nil
		})
		if err != nil {
			return err
		}
		// Calls answered and still going on count as answered for the team
		// and for whoever answered them, as journey_stats_day will count
		// them once they end (it counts calls from their start).
		t.Answered += answering
		t.SLAnswered += answeringSL
		t.SLOffered += answering
		if answering > 0 {
			rows, _ := tx.Query(ctx, `
SELECT answered_user_id, count(*) FROM call_journey
WHERE outcome = 'active' AND answered_at IS NOT NULL AND direction <> 'out' AND day = $1 AND answered_user_id <> ''
GROUP BY 1`, day)
			var user string
			var n int
			_, err = pgx.ForEachRow(rows, []any{&user, &n}, func() error {
				i := slices.IndexFunc(t.People, func(p callstate.PersonDay) bool { return p.UserID == user })
				if i < 0 {
					t.People = append(t.People, callstate.PersonDay{UserID: user})
					i = len(t.People) - 1
				}
				t.People[i].Answered += n
				return nil
			})
			if err != nil {
				return err
			}
			slices.SortFunc(t.People, func(a, b callstate.PersonDay) int { return strings.Compare(a.UserID, b.UserID) })
		}
		// The day's calls to return, and how many are open, in one pass:
		// each one's call back is looked up once.
		rows, _ = tx.Query(ctx, `
SELECT count(*) FILTER (WHERE open AND number NOT IN ('', 'anonymous')) OVER (),
       journey_id, outcome, number, to_party, started_at, ended_at, called_back_at, user_ids, done_at, coalesce(done_by, '')
FROM missed_call WHERE day = $1
ORDER BY started_at DESC, journey_id LIMIT $2`, day, callstate.MaxDayMissed)
		var m callstate.DayMissed
		var ended, back, done *time.Time
		var outcome string
		_, err = pgx.ForEachRow(rows, []any{&t.MissedOpen, &m.ID, &outcome, &m.Number, &m.To, &m.StartedAt, &ended, &back, &m.UserIDs, &done, &m.DoneBy}, func() error {
			m.EndedAt, m.CalledBackAt, m.DoneAt = time.Time{}, time.Time{}, time.Time{}
			m.Outcome = callstate.Outcome(outcome)
			if done != nil {
				m.DoneAt = *done
			}
			if ended != nil {
				m.EndedAt = *ended
			}
			if back != nil {
				m.CalledBackAt = *back
			}
			t.MissedCalls = append(t.MissedCalls, m)
			return nil
		})
		return err
	})
	if err != nil {
		return callstate.TeamDay{}, fmt.Errorf("store: team day: %w", readErr(err))
	}
	return t, nil
}

type statsRow struct {
	UserID                               string
	In, Out, Answered, Missed, Voicemail int64
	Talk                                 float64
	Abandoned, ShortAbandoned            int64
	SLAnswered, SLOffered                int64
}
