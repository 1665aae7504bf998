package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/callstate/callstate"
)

// ContactsAdded is callstate.ContactsAdded: what AddContacts did.
type ContactsAdded = callstate.ContactsAdded

// addContactSQL adds a contact, or gives one of the same name the numbers
// and groups it lacks (neither is ever taken away, so importing a file
// twice changes nothing). It returns no row when the contact had them all.
const addContactSQL = `
INSERT INTO contact (name, numbers, groups) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE
SET numbers = contact.numbers || ARRAY(
        SELECT n FROM unnest(EXCLUDED.numbers) WITH ORDINALITY AS x(n, i)
        WHERE n <> ALL (contact.numbers) ORDER BY i),
    groups = contact.groups || ARRAY(
        SELECT g FROM unnest(EXCLUDED.groups) WITH ORDINALITY AS x(g, i)
        WHERE lower(g) <> ALL (SELECT lower(h) FROM unnest(contact.groups) AS h) ORDER BY i),
    updated_at = now()
WHERE NOT (contact.numbers @> EXCLUDED.numbers
       AND ARRAY(SELECT lower(g) FROM unnest(contact.groups) AS g) @> ARRAY(SELECT lower(g) FROM unnest(EXCLUDED.groups) AS g))
RETURNING id, name, numbers, groups, updated_at, (xmax = 0) AS inserted`

// AddContacts adds cs to the phonebook in one transaction, merging each
// into a contact of the same name (see addContactSQL), and returns the
// contacts as they are now, in the order given, with what it did. Every
// contact is validated first: one invalid contact (an error wrapping
// callstate.ErrInvalidContact) stores none. A contact whose numbers would
// pass callstate.MaxContactNumbers is refused the same way.
func (s *Store) AddContacts(ctx context.Context, cs []callstate.Contact) ([]callstate.Contact, ContactsAdded, error) {
	var n ContactsAdded
	for _, c := range cs {
		if err := c.Validate(); err != nil {
			return nil, n, fmt.Errorf("store: add contacts: %w", err)
		}
	}
	out := make([]callstate.Contact, len(cs))
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for i, c := range cs {
			var inserted bool
			groups := c.Groups
			if groups == nil {
				groups = []string{}
			}
			err := tx.QueryRow(ctx, addContactSQL, c.Name, c.Numbers, groups).
				Scan(&out[i].ID, &out[i].Name, &out[i].Numbers, &out[i].Groups, &out[i].UpdatedAt, &inserted)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				n.Unchanged++
				if err := tx.QueryRow(ctx, `SELECT id, name, numbers, groups, updated_at FROM contact WHERE name = $1`, c.Name).
					Scan(&out[i].ID, &out[i].Name, &out[i].Numbers, &out[i].Groups, &out[i].UpdatedAt); err != nil {
					return err
				}
			case err != nil:
				if isCheckViolation(err) {
					return fmt.Errorf("%w: %q would have more than %d numbers or %d groups", callstate.ErrInvalidContact, c.Name,
						callstate.MaxContactNumbers, callstate.MaxContactGroups)
				}
				return err
			case inserted:
				n.Added++
			default:
				n.Updated++
			}
		}
		return nil
	})
	if err != nil {
		return nil, ContactsAdded{}, fmt.Errorf("store: add contacts: %w", readErr(err))
	}
	return out, n, nil
}

type contactRow struct {
	ID        int64     `db:"id"`
	Name      string    `db:"name"`
	Numbers   []string  `db:"numbers"`
	Groups    []string  `db:"groups"`
	UpdatedAt time.Time `db:"updated_at"`
}

// Contacts returns the whole phonebook, by name.
func (s *Store) Contacts(ctx context.Context) ([]callstate.Contact, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, name, numbers, groups, updated_at FROM contact ORDER BY name, id`)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[contactRow])
	if err != nil {
		return nil, fmt.Errorf("store: contacts: %w", readErr(err))
	}
	out := make([]callstate.Contact, len(rs))
	for i, r := range rs {
		out[i] = callstate.Contact{ID: r.ID, Name: r.Name, Numbers: r.Numbers, Groups: r.Groups, UpdatedAt: r.UpdatedAt}
	}
	return out, nil
}

// ContactsVersion returns a value that changes whenever the phonebook
// does (a contact added, changed or deleted), to reload it only then.
func (s *Store) ContactsVersion(ctx context.Context) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, `
SELECT count(*) || '/' || coalesce(max(id), 0) || '/' || coalesce(max(updated_at)::text, '') FROM contact`).Scan(&v)
	if err != nil {
		return "", fmt.Errorf("store: contacts version: %w", readErr(err))
	}
	return v, nil
}

// isCheckViolation reports whether err is a CHECK constraint's refusal.
func isCheckViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23514"
}
