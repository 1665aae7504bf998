package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// refreshCallsSQL recomputes the journeys of the calls given by source and
// key (migration 012, callstate_refresh_calls), in the transaction that
// wrote them: a journey is a function of its legs, so computing it again
// after any write keeps it right whatever order the legs' events came in.
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

func batchSources(batch []*applyReq) []string {
	out := make([]string, len(batch))
	for i, r := range batch {
		out[i] = string(r.ev.Source)
	}
	return out
}

func batchKeys(batch []*applyReq) []string {
	out := make([]string, len(batch))
	for i, r := range batch {
		out[i] = r.ev.Update.Key
	}
	return out
}
