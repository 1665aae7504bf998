package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// NotifyChannel is the channel on which writes are announced: each write
// to sip_extension by a trigger ("ext <seq> <extension>"), writes to
// call_state by the store after they commit, many at once (CallsChanged).
const NotifyChannel = "callstate"

// ListenerApplicationName is the application_name of Listen's connection,
// as pg_stat_activity shows it.
const ListenerApplicationName = "callstate-listener"

// The kinds of Change.
const (
	ChangeCall      = "call"      // a call_state row was written: CallID
	ChangeExtension = "ext"       // a sip_extension row was written or deleted: Extension
	ChangeListening = "listening" // Listen is (again) listening; changes missed meanwhile follow
)

// Change is one announced write: which row, and the change_seq it got.
type Change struct {
	Kind      string
	Seq       int64
	CallID    int64  // ChangeCall
	Extension string // ChangeExtension
	Ref       string // ChangeReady: the call id
}

// catchUpSlack is how far below the highest change_seq seen a catch-up
// starts: change_seq is taken when a row is written, not when its
// transaction commits, so a write can commit after one with a higher number.
// Re-reading a few is harmless; missing one is not.
const catchUpSlack = 256

// wakeSlack is catchUpSlack for the reads after a CallsChanged wake-up,
// which come often: enough for the writes in flight at once (a pool of
// connections on each instance).
const wakeSlack = 64

// catchUpMax bounds the changes re-read after a reconnect; beyond it, fn gets
// ChangeListening with Seq 0, meaning: too much was missed, start afresh.
const catchUpMax = 10000

// Listen calls fn, in order and from one goroutine, for every change
// announced on NotifyChannel, until ctx is done; then it returns nil. It
// keeps one connection of its own, outside the pool, and reconnects with
// backoff when it breaks. After each (re)connect it calls fn with a
// ChangeListening whose Seq is the highest change_seq written so far and,
// after a reconnect, first with the changes written while it was away (and
// a few before, see catchUpSlack), so that fn misses none.
func (s *Store) Listen(ctx context.Context, fn func(Change)) error {
	var (
		lastSeen  int64 // highest change_seq passed to fn
		connected bool  // has been connected before
		backoff   = 100 * time.Millisecond
	)
	for {
		err := s.listenOnce(ctx, fn, &lastSeen, connected, func() {
			connected = true
			backoff = 100 * time.Millisecond
		})
		if ctx.Err() != nil {
			return nil
		}
		s.log.Warn("change listener disconnected; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, fn func(Change), lastSeen *int64, caughtUp bool, up func()) error {
	cfg := s.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = ListenerApplicationName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("store: listen: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+NotifyChannel); err != nil {
		return fmt.Errorf("store: listen: %w", err)
	}
	up()
	seen := newSeqSet(4096) // re-reads overlap: pass each change once
	emit := func(c Change) {
		if c.Seq != 0 && !seen.add(c.Seq) {
			return
		}
		if c.Seq > *lastSeen {
			*lastSeen = c.Seq
		}
		fn(c)
	}
	if caughtUp {
		if err := s.catchUp(ctx, conn, *lastSeen-catchUpSlack, emit); err != nil {
			return err
		}
	}
	var head int64
	err = conn.QueryRow(ctx, `
SELECT GREATEST(
    (SELECT coalesce(max(change_seq), 0) FROM call_state),
    (SELECT coalesce(max(change_seq), 0) FROM sip_extension))`).Scan(&head)
	if err != nil {
		return fmt.Errorf("store: listen: %w", err)
	}
	*lastSeen = max(*lastSeen, head)
	fn(Change{Kind: ChangeListening, Seq: head})
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("store: listen: %w", err)
		}
		if n.Payload == CallsChanged {
			if err := s.catchUp(ctx, conn, *lastSeen-wakeSlack, emit); err != nil {
				return err
			}
			continue
		}
		c, err := parseNotification(n.Payload)
		if err != nil {
			s.log.Warn("ignoring notification", "payload", n.Payload, "err", err)
			continue
		}
		if c.Kind == ChangeExtension {
			s.lampsChanged() // the feed's lamps: compared soon
		}
		emit(c)
	}
}

// catchUp passes to emit the changes after seq, as Changes of the rows
// written since, by change_seq.
func (s *Store) catchUp(ctx context.Context, conn *pgx.Conn, seq int64, emit func(Change)) error {
	rows, _ := conn.Query(ctx, `
(SELECT 'call' AS kind, change_seq, id, '' AS extension FROM call_state WHERE change_seq > $1
 ORDER BY change_seq LIMIT $2)
UNION ALL
(SELECT 'ext', change_seq, 0, extension FROM sip_extension WHERE change_seq > $1
 ORDER BY change_seq LIMIT $2)
ORDER BY change_seq`, max(seq, 0), catchUpMax+1)
	var cs []Change
	var c Change
	_, err := pgx.ForEachRow(rows, []any{&c.Kind, &c.Seq, &c.CallID, &c.Extension}, func() error {
		cs = append(cs, c)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: listen: catch up: %w", err)
	}
	if len(cs) > catchUpMax {
		s.log.Warn("change listener missed too much to catch up; clients start afresh", "changes", len(cs))
		emit(Change{Kind: ChangeListening})
		return nil
	}
	for _, c := range cs {
		emit(c)
	}
	return nil
}

var errBadPayload = errors.New("bad payload")

// parseNotification reads "call <id> <seq>", "ext <seq> <extension>",
// "ready 0 <call id>" or "devices 0 -".
func parseNotification(p string) (Change, error) {
	if rest, ok := strings.CutPrefix(p, ChangeReady+" 0 "); ok && rest != "" {
		return Change{Kind: ChangeReady, Ref: rest}, nil
	}
	if p == ChangeDevices+" 0 -" {
		return Change{Kind: ChangeDevices}, nil
	}
	f := strings.Fields(p)
	if len(f) != 3 {
		return Change{}, errBadPayload
	}
	switch f[0] {
	case ChangeCall:
		id, err1 := strconv.ParseInt(f[1], 10, 64)
		seq, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return Change{}, errBadPayload
		}
		return Change{Kind: ChangeCall, CallID: id, Seq: seq}, nil
	case ChangeExtension:
		seq, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return Change{}, errBadPayload
		}
		return Change{Kind: ChangeExtension, Seq: seq, Extension: f[2]}, nil
	}
	return Change{}, errBadPayload
}

// seqSet remembers the last n sequence numbers added.
type seqSet struct {
	m    map[int64]struct{}
	ring []int64
	next int
}

func newSeqSet(n int) *seqSet {
	return &seqSet{m: make(map[int64]struct{}, n), ring: make([]int64, n)}
}

// add records seq and reports whether it was new.
func (s *seqSet) add(seq int64) bool {
	if _, ok := s.m[seq]; ok {
		return false
	}
	if old := s.ring[s.next]; old != 0 {
		delete(s.m, old)
	}
	s.ring[s.next] = seq
	s.next = (s.next + 1) % len(s.ring)
	s.m[seq] = struct{}{}
	return true
}
