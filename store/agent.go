package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// LampsAndCalls returns the lamp view, as LampStatuses does, and every
// call of either source that is ringing or answered, oldest first, both
// read from one snapshot of the database, so that the calls are those that
// light the lamps: what the presence agent shows.
func (s *Store) LampsAndCalls(ctx context.Context) ([]callstate.LampStatus, []callstate.Call, error) {
	var (
		lamps []callstate.LampStatus
		calls []callstate.Call
	)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `
SELECT source, extension, name, lamp, active_calls, updated_at
FROM lamp ORDER BY source, extension`)
		rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[lampRow])
		if err != nil {
			return err
		}
		lamps = make([]callstate.LampStatus, len(rs))
		for i, r := range rs {
			lamps[i] = r.status()
		}
		rows, _ = tx.Query(ctx, `SELECT `+callColumns+` FROM call_state
WHERE state IN ('ringing', 'answered') ORDER BY id`)
		calls, err = collectCalls(rows)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: lamps and calls: %w", readErr(err))
	}
	return lamps, calls, nil
}

// PresenceAccounts returns the enabled presence_account rows of realm: user
// name to HA1.
func (s *Store) PresenceAccounts(ctx context.Context, realm string) (map[string]string, error) {
	rows, _ := s.pool.Query(ctx, `
SELECT username, ha1 FROM presence_account WHERE enabled AND realm = $1`, realm)
	m := map[string]string{}
	var user, ha1 string
	if _, err := pgx.ForEachRow(rows, []any{&user, &ha1}, func() error {
		m[user] = ha1
		return nil
	}); err != nil {
		return nil, fmt.Errorf("store: presence accounts: %w", readErr(err))
	}
	return m, nil
}

// PresenceAlias is one row of presence_alias: a further name of a lamp.
type PresenceAlias struct {
	Alias     string           `db:"alias"`
	Source    callstate.Source `db:"source"`
	Extension string           `db:"extension"`
}

// PresenceAliases returns the presence_alias table.
func (s *Store) PresenceAliases(ctx context.Context) ([]PresenceAlias, error) {
	rows, _ := s.pool.Query(ctx, `SELECT alias, source, extension FROM presence_alias ORDER BY alias`)
	as, err := pgx.CollectRows(rows, pgx.RowToStructByName[PresenceAlias])
	if err != nil {
		return nil, fmt.Errorf("store: presence aliases: %w", readErr(err))
	}
	return as, nil
}

// SIPLamps returns the sip_lamp rows of exts as lamp statuses (source sip).
func (s *Store) SIPLamps(ctx context.Context, exts []string) ([]callstate.LampStatus, error) {
	rows, _ := s.pool.Query(ctx, `
SELECT 'sip' AS source, extension, '' AS name, lamp, active_calls, updated_at
FROM sip_lamp WHERE extension = ANY ($1)`, exts)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[lampRow])
	if err != nil {
		return nil, fmt.Errorf("store: sip lamps: %w", readErr(err))
	}
	ls := make([]callstate.LampStatus, len(rs))
	for i, r := range rs {
		ls[i] = r.status()
	}
	return ls, nil
}
