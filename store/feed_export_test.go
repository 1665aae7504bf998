package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/callstate/callstate"
)

// ViewFeedForTest reads the whole feed from the call_feed_event view, as
// SQL readers see it, decoding its JSON: what Feed must agree with.
func (s *Store) ViewFeedForTest(ctx context.Context, after int64, limit int) ([]callstate.FeedEvent, error) {
	rows, err := s.pool.Query(ctx, `
SELECT id, type, at, journey_id, data,
       CASE WHEN data ? 'journey' THEN coalesce((
           SELECT l.routed_rule FROM call_state l
           WHERE l.journey_id = e.journey_id AND l.routed_rule <> ''
           ORDER BY l.routed_at, l.routed_rule COLLATE "C" DESC LIMIT 1), '') ELSE '' END
FROM call_feed_event e WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, err
	}
	var evs []callstate.FeedEvent
	for rows.Next() {
		var (
			ev   callstate.FeedEvent
			data []byte
			rule string
		)
		if err := rows.Scan(&ev.ID, &ev.Type, &ev.At, &ev.JourneyID, &data, &rule); err != nil {
			return nil, err
		}
		ev.At = ev.At.UTC()
		var d struct {
			Call *struct {
				callRow
				Seq int64 `json:"change_seq"`
			} `json:"call"`
			Journey  *journeyRow `json:"journey"`
			Press    string      `json:"press"`
			Lamp     *lampRow    `json:"lamp"`
			Previous string      `json:"previous"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			return nil, fmt.Errorf("event %d: %w", ev.ID, err)
		}
		if d.Call != nil {
			c, err := d.Call.call()
			if err != nil {
				return nil, err
			}
			ev.Call, ev.Seq = &c, d.Call.Seq
		}
		if d.Journey != nil {
			j := d.Journey.journey()
			j.Rule = rule
			ev.Journey = &j
		}
		if d.Press != "" {
			p, err := callstate.ParsePress(d.Press)
			if err != nil {
				return nil, err
			}
			ev.Press = &p
		}
		if d.Lamp != nil {
			l := d.Lamp.status()
			ev.Lamp, ev.Previous = &l, d.Previous
		}
		evs = append(evs, ev)
	}
	return evs, rows.Err()
}

// FeedPlansForTest returns PostgreSQL's generic plans (those a prepared
// statement settles on) of the three statements that read the feed.
func (s *Store) FeedPlansForTest(ctx context.Context) ([]string, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		return nil, err
	}
	defer conn.Exec(ctx, `RESET plan_cache_mode; DEALLOCATE ALL`) //nolint:errcheck // the test's connection
	rows, calls, journeys := feedStatements(feedFrom)
	var plans []string
	for i, q := range []string{rows, calls, journeys} {
		name := fmt.Sprintf("feed_plan_%d", i)
		if _, err := conn.Exec(ctx, `PREPARE `+name+`(bigint, int, bigint, text[]) AS `+q); err != nil {
			return nil, err
		}
		var lines []string
		rs, err := conn.Query(ctx, `EXPLAIN EXECUTE `+name+`(0, 1000, 9223372036854775807, NULL)`)
		if err != nil {
			return nil, err
		}
		for rs.Next() {
			var l string
			if err := rs.Scan(&l); err != nil {
				return nil, err
			}
			lines = append(lines, l)
		}
		if err := rs.Err(); err != nil {
			return nil, err
		}
		plans = append(plans, strings.Join(lines, "\n"))
	}
	return plans, nil
}
