package store

import (
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// userTTL is how long the store trusts that a sipgate user it recorded is
// still in sipgate_user. A row deleted by hand (to hide a user's lamp)
// comes back with the user's next call once this has passed.
const userTTL = time.Minute

// recordUsersSQL adds the users a sipgate call concerns to sipgate_user,
// and their names where the table has none. ON CONFLICT DO NOTHING and an
// UPDATE that matches only a missing name take no lock on a known user's
// row, so concurrent calls to one user never wait for each other.
const recordUsersSQL = `
WITH u AS (SELECT * FROM unnest($1::text[], $2::text[]) AS u(id, name)),
added AS (
    INSERT INTO sipgate_user (user_id, name) SELECT id, name FROM u
    ON CONFLICT (user_id) DO NOTHING
)
UPDATE sipgate_user s SET name = u.name
FROM u
WHERE s.user_id = u.id AND s.name = '' AND u.name <> ''`

// userCache remembers the sipgate users this store has recorded in
// sipgate_user (the users each call was offered to, and the one whose call
// it is, so that every user has a lamp even when idle), so that an event
// about known users costs no statement for them. It replaced a trigger
// that ran for every new sipgate call (docs/benchmarks.md).
type userCache struct {
	mu   sync.Mutex
	seen map[string]userSeen // by user id
}

type userSeen struct {
	named bool // recorded with a name
	at    time.Time
}

// pending returns the users that the events of batch name and that
// sipgate_user may lack, or lack the name of, sorted by id, each once with
// the name it has in the events (empty if none does).
func (c *userCache) pending(batch []*applyReq, now time.Time) (ids, names []string) {
	want := map[string]string{}
	add := func(id, name string) {
		if id != "" && (want[id] == "" || name != "") {
			want[id] = name
		}
	}
	for _, r := range batch {
		u := r.ev.Update
		if r.ev.Source != callstate.SourceSipgate {
			continue
		}
		for i, id := range u.UserIDs {
			name := ""
			if i < len(u.Users) {
				name = u.Users[i]
			}
			add(id, name)
		}
		// sipgate's answer names who answered (user, userId), also when
		// the newCall offered the call with empty user[] names.
		if u.PinExtension {
			add(u.Extension, u.AnsweredBy)
		} else {
			add(u.Extension, "")
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, name := range want {
		if s, ok := c.seen[id]; ok && now.Sub(s.at) < userTTL && (s.named || name == "") {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		names = append(names, want[id])
	}
	return ids, names
}

// remember notes that ids (with names) are in sipgate_user now.
func (c *userCache) remember(ids, names []string, now time.Time) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil || len(c.seen) > 100_000 {
		c.seen = map[string]userSeen{}
	}
	for i, id := range ids {
		c.seen[id] = userSeen{named: names[i] != "" || c.seen[id].named, at: now}
	}
}

// queueUsers adds the statement that records ids to b, if there are any.
func queueUsers(b *pgx.Batch, ids, names []string) {
	if len(ids) > 0 {
		b.Queue(recordUsersSQL, ids, names)
	}
}
