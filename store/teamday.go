package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// TeamDay returns the numbers of the day that started at dayStart: calls
// waiting now, and today's calls answered, missed (with call-back status)
// and per person; see callstate.Tally.
func (s *Store) TeamDay(ctx context.Context, dayStart time.Time) (callstate.TeamDay, error) {
	calls, err := s.dayCallsFromCallState(ctx, dayStart)
	if err != nil {
		return callstate.TeamDay{}, err
	}
	return callstate.Tally(calls, dayStart), nil
}

type dayCallRow struct {
	ID             string     `db:"journey_id"`
	Direction      string     `db:"direction"`
	From           string     `db:"from_party"`
	To             string     `db:"to_party"`
	StartedAt      time.Time  `db:"started_at"`
	AnsweredAt     *time.Time `db:"answered_at"`
	EndedAt        *time.Time `db:"ended_at"`
	Outcome        string     `db:"outcome"`
	AnsweredUserID string     `db:"answered_user_id"`
	TalkSeconds    *float64   `db:"talk_seconds"`
	UserIDs        []string   `db:"user_ids"`
}

// dayCallsFromCallState reads the calls of the day from dayStart, and the
// active ones, as calls a person counts, straight from call_state: the
// legs of one sipgate call (origCallId, else callId) or of one SIP Call-ID
// joined, with their outcome. It stands in for the journey views, and
// reads the same columns they have.
func (s *Store) dayCallsFromCallState(ctx context.Context, dayStart time.Time) ([]callstate.DayCall, error) {
	rows, _ := s.pool.Query(ctx, `
WITH leg AS (
    SELECT CASE WHEN c.source = 'sip' THEN 'sip:' || CASE WHEN c.call_id <> '' THEN c.call_id ELSE c.call_key END
                WHEN c.orig_call_id <> '' THEN c.orig_call_id
                WHEN c.call_id <> '' THEN c.call_id
                ELSE c.call_key END AS journey_id,
           c.*,
           c.source = 'sipgate' AND c.users = '{voicemail}'::text[] AS voicemail,
           c.answered_at IS NOT NULL AND NOT (c.source = 'sipgate' AND c.users = '{voicemail}'::text[])
               AND (c.source = 'sip' OR c.direction = 'out' OR c.answered_by <> '' OR c.answering_number <> '') AS person
    FROM call_state c
    WHERE c.started_at >= $1 OR c.state IN ('ringing', 'answered')
), j AS (
    SELECT l.journey_id,
           CASE WHEN bool_or(l.direction = 'in') THEN 'in' WHEN bool_or(l.direction = 'out') THEN 'out' ELSE '' END AS direction,
           coalesce((array_agg(l.from_party ORDER BY l.started_at, l.call_key) FILTER (WHERE l.from_party <> ''))[1], '') AS from_party,
           coalesce((array_agg(l.to_party ORDER BY l.started_at, l.call_key) FILTER (WHERE l.to_party <> ''))[1], '') AS to_party,
           min(l.started_at) AS started_at,
           min(l.answered_at) FILTER (WHERE l.person) AS answered_at,
           bool_or(l.answered_at IS NOT NULL AND NOT l.person) AS voicemail,
           bool_or(l.state <> 'ended') AS active,
           max(l.ended_at) AS last_end,
           (array_agg(l.hangup_cause ORDER BY l.ended_at DESC NULLS LAST, l.call_key DESC))[1] AS last_cause,
           coalesce((array_agg(l.extension ORDER BY l.answered_at, l.call_key) FILTER (WHERE l.person))[1], '') AS answered_user_id,
           ARRAY(SELECT DISTINCT u FROM unnest(array_agg(l.extension)) AS u WHERE u NOT IN ('', 'voicemail')) AS exts
    FROM leg l
    GROUP BY l.journey_id
), u AS (
    SELECT l.journey_id, array_agg(DISTINCT x ORDER BY x) AS user_ids
    FROM leg l, unnest(l.user_ids) AS x
    WHERE x NOT IN ('', 'voicemail')
    GROUP BY l.journey_id
)
SELECT j.journey_id, j.direction, j.from_party, j.to_party, j.started_at, j.answered_at,
       CASE WHEN j.active THEN NULL ELSE j.last_end END AS ended_at,
       CASE WHEN j.active THEN 'active'
            WHEN j.answered_at IS NOT NULL THEN 'answered'
            WHEN j.voicemail THEN 'voicemail'
            WHEN j.last_cause IN ('congestion', 'timeout', 'notFound', 'error', 'pbx-restart') THEN 'failed'
            WHEN j.direction = 'out' THEN 'outgoing-unreached'
            WHEN j.last_cause = 'forwarded' THEN 'forwarded'
            ELSE 'missed' END AS outcome,
       j.answered_user_id,
       CASE WHEN NOT j.active AND j.answered_at IS NOT NULL
            THEN extract(epoch FROM j.last_end - j.answered_at)::double precision END AS talk_seconds,
       ARRAY(SELECT DISTINCT x FROM unnest(coalesce(u.user_ids, '{}') || j.exts) AS x ORDER BY x) AS user_ids
FROM j LEFT JOIN u USING (journey_id)
WHERE j.started_at IS NOT NULL
ORDER BY j.started_at, j.journey_id`, dayStart)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[dayCallRow])
	if err != nil {
		return nil, fmt.Errorf("store: calls of the day: %w", readErr(err))
	}
	out := make([]callstate.DayCall, len(rs))
	for i, r := range rs {
		out[i] = callstate.DayCall{ID: r.ID, Direction: callstate.Direction(r.Direction), From: r.From, To: r.To,
			StartedAt: r.StartedAt, Outcome: r.Outcome, AnsweredUserID: r.AnsweredUserID, UserIDs: r.UserIDs}
		if r.AnsweredAt != nil {
			out[i].AnsweredAt = *r.AnsweredAt
		}
		if r.EndedAt != nil {
			out[i].EndedAt = *r.EndedAt
		}
		if r.TalkSeconds != nil {
			out[i].TalkSeconds = *r.TalkSeconds
		}
	}
	return out, nil
}
