package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// ErrIncompleteJournal is returned by Recompute for a call with events
// journaled before the journal kept what they told (migration 010).
var ErrIncompleteJournal = errors.New("journal has events without their updates")

// Recompute computes one call's row again from its journal alone: it folds
// callstate.Call.Apply over every journaled event with the event's own
// receive time (the order does not matter, see Call.Apply), writes the
// result in place of the row, and returns it. Writes to the call wait
// while it runs. It returns an error wrapping ErrNotFound when the
// journal holds no event of the call, and ErrIncompleteJournal when some
// of them were journaled without their updates.
func (s *Store) Recompute(ctx context.Context, source callstate.Source, key string) (callstate.Call, error) {
	var c callstate.Call
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var before []string // the journey the row was a leg of, if it was
		if err := tx.QueryRow(ctx, `SELECT ARRAY(SELECT journey_id FROM call_state WHERE source = $1 AND call_key = $2 FOR UPDATE)`,
			string(source), key).Scan(&before); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `
			SELECT id, received_at, call_update FROM call_event
			WHERE source = $1 AND call_key = $2 ORDER BY id`, string(source), key)
		var (
			id      int64
			at      time.Time
			raw     []byte
			n, last int64
			missing int
		)
		_, err := pgx.ForEachRow(rows, []any{&id, &at, &raw}, func() error {
			n, last = n+1, max(last, id)
			if raw == nil {
				missing++
				return nil
			}
			var u callstate.Update
			if err := json.Unmarshal(raw, &u); err != nil {
				return fmt.Errorf("event %d: %w", id, err)
			}
			c = c.Apply(u, at)
			return nil
		})
		switch {
		case err != nil:
			return err
		case n == 0:
			return ErrNotFound
		case missing > 0:
			return fmt.Errorf("%w: %d of %d", ErrIncompleteJournal, missing, n)
		}
		c.Source = source
		presses := make([]string, len(c.Presses))
		for i, p := range c.Presses {
			presses[i] = p.Key()
		}
		if err := tx.QueryRow(ctx, `
INSERT INTO call_state AS c (`+stateColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
          $17::text::call_phase, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34)
ON CONFLICT (source, call_key) DO UPDATE SET
    call_id = EXCLUDED.call_id, orig_call_id = EXCLUDED.orig_call_id,
    extension = EXCLUDED.extension, extension_pinned = EXCLUDED.extension_pinned,
    direction = EXCLUDED.direction, from_party = EXCLUDED.from_party, to_party = EXCLUDED.to_party,
    users = EXCLUDED.users, user_ids = EXCLUDED.user_ids, full_user_ids = EXCLUDED.full_user_ids,
    answered_by = EXCLUDED.answered_by, answering_number = EXCLUDED.answering_number,
    diversion = EXCLUDED.diversion, xcid = EXCLUDED.xcid,
    state = EXCLUDED.state, on_hold = EXCLUDED.on_hold, hold_at = EXCLUDED.hold_at,
    hangup_cause = EXCLUDED.hangup_cause, cause_at = EXCLUDED.cause_at,
    dtmf = EXCLUDED.dtmf, dtmf_presses = EXCLUDED.dtmf_presses,
    started_at = EXCLUDED.started_at, answered_at = EXCLUDED.answered_at,
    ended_at = EXCLUDED.ended_at, updated_at = EXCLUDED.updated_at,
    last_event_id = EXCLUDED.last_event_id,
    learned = EXCLUDED.learned, end_rank = EXCLUDED.end_rank,
    answer_rank = EXCLUDED.answer_rank, answer_at = EXCLUDED.answer_at,
    routed_rule = EXCLUDED.routed_rule, routed_at = EXCLUDED.routed_at,
    change_seq = EXCLUDED.change_seq
RETURNING id, journey_id`,
			string(source), key, c.CallID, c.OrigCallID, c.Extension, c.ExtensionPinned, string(c.Direction),
			c.From, c.To, nonNil(c.Users), nonNil(c.UserIDs), nonNil(c.FullUserIDs),
			c.AnsweredBy, c.Answering, c.Diversion, c.XCID,
			c.State.String(), c.OnHold, timeOrNil(c.HoldAt), c.Cause, timeOrNil(c.CauseAt), c.DTMF, presses,
			timeOrNil(c.StartedAt), timeOrNil(c.AnsweredAt), timeOrNil(c.EndedAt), c.UpdatedAt, last,
			c.Learned, int16(c.EndRank), int16(c.AnswerRank), timeOrNil(c.AnswerAt),
			c.Rule, timeOrNil(c.RuleAt),
		).Scan(&c.ID, &c.JourneyID); err != nil {
			return err
		}
		return refreshJourneys(ctx, tx, before, []string{string(source)}, []string{key})
	})
	if err != nil {
		return callstate.Call{}, fmt.Errorf("store: recompute source=%s key=%s: %w", source, key, readErr(err))
	}
	s.announce.changed()
	return c, nil
}

func timeOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}
