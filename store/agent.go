package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// LiveCalls returns every call, of either source, that is ringing or
// answered, oldest first: what the presence agent shows on the lamps.
func (s *Store) LiveCalls(ctx context.Context) ([]callstate.Call, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+callColumns+` FROM call_state
WHERE state IN ('ringing', 'answered') ORDER BY id`)
	calls, err := collectCalls(rows)
	if err != nil {
		return nil, fmt.Errorf("store: live calls: %w", err)
	}
	return calls, nil
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
