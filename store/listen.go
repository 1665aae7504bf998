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
	ChangeCall      = "call"      // calls were written: the feed may have grown
	ChangeExtension = "ext"       // a sip_extension row was written or deleted: Extension
	ChangeListening = "listening" // Listen is (again) listening: what was announced meanwhile is lost
)

// Change is one announcement. None says more than what to read again:
// each reader reads the feed on from its own cursor, so a lost or merged
// announcement costs only latency, never an event.
type Change struct {
	Kind      string
	Extension string // ChangeExtension
	Ref       string // ChangeReady: the call id
}

// Listen calls fn, in order and from one goroutine, for every announcement
// on NotifyChannel, until ctx is done; then it returns nil. It keeps one
// connection of its own, outside the pool, and reconnects with backoff when
// it breaks. After each (re)connect it calls fn with a ChangeListening: a
// reader then reads what it may have missed.
//
// It reads nothing but the announcements: every reader reads the feed from
// its own cursor, so re-reading what changed here would be a query per
// announcement, before any reader is woken, for nothing. (It was one: under
// a burst it held the live stream back hundreds of milliseconds,
// docs/benchmarks.md "Reading the feed".)
func (s *Store) Listen(ctx context.Context, fn func(Change)) error {
	backoff := 100 * time.Millisecond
	for {
		err := s.listenOnce(ctx, fn, func() { backoff = 100 * time.Millisecond })
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

func (s *Store) listenOnce(ctx context.Context, fn func(Change), up func()) error {
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
	fn(Change{Kind: ChangeListening})
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("store: listen: %w", err)
		}
		c, err := parseNotification(n.Payload)
		if err != nil {
			s.log.Warn("ignoring notification", "payload", n.Payload, "err", err)
			continue
		}
		if c.Kind == ChangeExtension {
			s.lampsChanged() // the feed's lamps: compared soon
		}
		fn(c)
	}
}

var errBadPayload = errors.New("bad payload")

// parseNotification reads CallsChanged, "ext <seq> <extension>",
// "ready 0 <call id>" or "devices 0 -".
func parseNotification(p string) (Change, error) {
	if p == CallsChanged {
		return Change{Kind: ChangeCall}, nil
	}
	if rest, ok := strings.CutPrefix(p, ChangeReady+" 0 "); ok && rest != "" {
		return Change{Kind: ChangeReady, Ref: rest}, nil
	}
	if p == ChangeDevices+" 0 -" {
		return Change{Kind: ChangeDevices}, nil
	}
	f := strings.Fields(p)
	if len(f) != 3 || f[0] != ChangeExtension {
		return Change{}, errBadPayload
	}
	if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
		return Change{}, errBadPayload
	}
	return Change{Kind: ChangeExtension, Extension: f[2]}, nil
}
