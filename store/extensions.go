package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// ErrBadExtension is returned for an extension name the sip_extension table
// would refuse (callstate.ExtensionSyntax).
var ErrBadExtension = errors.New("bad extension name")

// CheckExtensions returns an error wrapping ErrBadExtension for the first
// name in exts that sip_extension cannot hold.
func CheckExtensions(exts []string) error {
	for _, e := range exts {
		if !callstate.ValidExtension(e) {
			return fmt.Errorf("store: add extension %q: %w", e, ErrBadExtension)
		}
	}
	return nil
}

// AddExtensions inserts the extensions that sip_extension does not hold yet,
// enabled; existing rows, enabled or not, are left as they are. It returns an
// error wrapping ErrBadExtension, and inserts nothing, if a name is invalid.
func (s *Store) AddExtensions(ctx context.Context, exts []string) error {
	if err := CheckExtensions(exts); err != nil {
		return err
	}
	if len(exts) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO sip_extension (extension)
SELECT unnest($1::text[])
ON CONFLICT (extension) DO NOTHING`, exts)
	if err != nil {
		return fmt.Errorf("store: add extensions: %w", readErr(err))
	}
	return nil
}

// Extensions returns the enabled extensions of sip_extension, sorted.
func (s *Store) Extensions(ctx context.Context) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `SELECT extension FROM sip_extension WHERE enabled ORDER BY extension`)
	exts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: extensions: %w", readErr(err))
	}
	return exts, nil
}

// SetSubscription records the state of an extension's dialog subscription
// (one of the Subscription* values) and why. It does nothing for an
// extension that has no row. It returns an error wrapping
// callstate.ErrInvalidEvent for a state the table does not allow.
func (s *Store) SetSubscription(ctx context.Context, ext, state, reason string) error {
	return s.SetSubscriptionsAs(ctx, "", []string{ext}, []string{state}, []string{reason})
}

// SetSubscriptionAs is SetSubscription on behalf of the instance owner (see
// ClaimExtensions): it does nothing while another instance holds ext, so
// that an instance handing an extension over cannot overwrite what the new
// owner wrote. An empty owner writes unconditionally.
func (s *Store) SetSubscriptionAs(ctx context.Context, owner, ext, state, reason string) error {
	return s.SetSubscriptionsAs(ctx, owner, []string{ext}, []string{state}, []string{reason})
}

// SetSubscriptions is SetSubscriptionsAs with no owner: it writes
// unconditionally.
func (s *Store) SetSubscriptions(ctx context.Context, exts, states, reasons []string) error {
	return s.SetSubscriptionsAs(ctx, "", exts, states, reasons)
}

// SetSubscriptionsAs is SetSubscriptionAs for many extensions in one
// statement: exts[i] gets states[i] and reasons[i]. The slices must be of
// one length and exts free of repeats (a repeated extension gets one of its
// states, which one is not said). Extensions without a row, and those
// another instance holds, are left alone. It returns an error wrapping
// callstate.ErrInvalidEvent when a state is not allowed (and writes none),
// and one wrapping ErrUnavailable when the database cannot be reached.
func (s *Store) SetSubscriptionsAs(ctx context.Context, owner string, exts, states, reasons []string) error {
	return s.setMany(ctx, "subscription", "reason", owner, exts, states, reasons)
}

// SetPresence records an extension's presence status (idle, ringing, busy,
// unavailable, or empty for unknown) and note. It does nothing for an
// extension that has no row.
func (s *Store) SetPresence(ctx context.Context, ext, status, note string) error {
	return s.SetPresencesAs(ctx, "", []string{ext}, []string{status}, []string{note})
}

// SetPresenceAs is SetPresence on behalf of the instance owner, guarded like
// SetSubscriptionAs.
func (s *Store) SetPresenceAs(ctx context.Context, owner, ext, status, note string) error {
	return s.SetPresencesAs(ctx, owner, []string{ext}, []string{status}, []string{note})
}

// SetPresences is SetPresencesAs with no owner.
func (s *Store) SetPresences(ctx context.Context, exts, statuses, notes []string) error {
	return s.SetPresencesAs(ctx, "", exts, statuses, notes)
}

// SetPresencesAs is SetPresenceAs for many extensions in one statement:
// exts[i] gets statuses[i] and notes[i], under the rules and with the
// errors of SetSubscriptionsAs.
func (s *Store) SetPresencesAs(ctx context.Context, owner string, exts, statuses, notes []string) error {
	return s.setMany(ctx, "presence_status", "presence_note", owner, exts, statuses, notes)
}

// setMany sets the columns value and why (constants of the callers, never
// input) of many extensions in one statement, under the owner guard of
// SetSubscriptionAs.
func (s *Store) setMany(ctx context.Context, value, why, owner string, exts, values, whys []string) error {
	if len(exts) != len(values) || len(exts) != len(whys) {
		return fmt.Errorf("store: set %s: %d extensions, %d values, %d %ss: %w",
			value, len(exts), len(values), len(whys), why, callstate.ErrInvalidEvent)
	}
	if len(exts) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `
UPDATE sip_extension e SET `+value+` = v.value, `+why+` = v.why, updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS v(extension, value, why)
WHERE e.extension = v.extension AND (e.`+value+`, e.`+why+`) IS DISTINCT FROM (v.value, v.why)
  AND ($4 = '' OR e.owner IN ($4, ''))`, exts, values, whys, owner)
	if err != nil {
		return fmt.Errorf("store: set %s of %d extensions: %w", value, len(exts), readErr(classify(err)))
	}
	return nil
}

// SetExtensionEnabled enables or disables watching ext. It returns an
// error wrapping ErrNotFound when ext has no row.
func (s *Store) SetExtensionEnabled(ctx context.Context, ext string, enabled bool) error {
	tag, err := s.pool.Exec(ctx, `
UPDATE sip_extension SET enabled = $2, updated_at = now() WHERE extension = $1`, ext, enabled)
	if err != nil {
		return fmt.Errorf("store: set extension %s enabled=%t: %w", ext, enabled, readErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: set extension %s enabled=%t: %w", ext, enabled, ErrNotFound)
	}
	return nil
}

// Calls returns every call of source for extension, oldest first.
func (s *Store) Calls(ctx context.Context, source callstate.Source, ext string) ([]callstate.Call, error) {
	return s.calls(ctx, `SELECT `+callColumns+` FROM call_state
WHERE source = $1 AND extension = $2 ORDER BY id`, source, ext)
}

// ActiveCalls returns the calls of source for extension that are ringing or
// answered, oldest first.
func (s *Store) ActiveCalls(ctx context.Context, source callstate.Source, ext string) ([]callstate.Call, error) {
	return s.calls(ctx, `SELECT `+callColumns+` FROM call_state
WHERE source = $1 AND extension = $2 AND state IN ('ringing', 'answered')
ORDER BY id`, source, ext)
}

func (s *Store) calls(ctx context.Context, sql string, source callstate.Source, ext string) ([]callstate.Call, error) {
	rows, _ := s.pool.Query(ctx, sql, string(source), ext)
	calls, err := collectCalls(rows)
	if err != nil {
		return nil, fmt.Errorf("store: calls source=%s ext=%s: %w", source, ext, err)
	}
	return calls, nil
}

// collectCalls reads call_state rows of callColumns into calls.
func collectCalls(rows pgx.Rows) ([]callstate.Call, error) {
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[callRow])
	if err != nil {
		return nil, readErr(err)
	}
	calls := make([]callstate.Call, 0, len(rs))
	for _, r := range rs {
		c, err := r.call()
		if err != nil {
			return nil, err
		}
		calls = append(calls, c)
	}
	return calls, nil
}

// Lamp is one row of the sip_lamp view: what a BLF key shows.
type Lamp struct {
	Extension    string `db:"extension"`
	Lamp         string `db:"lamp"` // idle, ringing, busy, hold or unavailable
	ActiveCalls  int64  `db:"active_calls"`
	Subscription string `db:"subscription"`
	Reason       string `db:"reason"`
	Presence     string `db:"presence_status"`
	PresenceNote string `db:"presence_note"`
}

// Lamps returns the sip_lamp view, by extension.
func (s *Store) Lamps(ctx context.Context) ([]Lamp, error) {
	rows, _ := s.pool.Query(ctx, `
SELECT extension, lamp, active_calls, subscription, reason, presence_status, presence_note
FROM sip_lamp ORDER BY extension`)
	ls, err := pgx.CollectRows(rows, pgx.RowToStructByName[Lamp])
	if err != nil {
		return nil, fmt.Errorf("store: lamps: %w", readErr(err))
	}
	return ls, nil
}
