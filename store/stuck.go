package store

import (
	"context"
	"fmt"
	"time"

	"github.com/callstate/callstate"
)

// StuckCalls returns, oldest first and at most limit of them, the calls of
// source still ringing that started before ringingBefore and those still
// answered that were answered before answeredBefore; a zero time leaves
// that state out. They are the calls whose end never came (a lost hangup).
func (s *Store) StuckCalls(ctx context.Context, source callstate.Source, ringingBefore, answeredBefore time.Time, limit int) ([]callstate.Call, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+callColumns+` FROM call_state
		WHERE state IN ('ringing', 'answered') AND source = $1
		  AND ((state = 'ringing' AND started_at < $2) OR (state = 'answered' AND answered_at < $3))
		ORDER BY id LIMIT $4`,
		string(source), timeOrNil(ringingBefore), timeOrNil(answeredBefore), limit)
	calls, err := collectCalls(rows)
	if err != nil {
		return nil, fmt.Errorf("store: stuck calls source=%s: %w", source, err)
	}
	return calls, nil
}
