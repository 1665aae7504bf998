package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
)

// The kinds of Change the wake-up of devices uses (see migration 025).
const (
	ChangeReady   = "ready"   // a device reported ready for a call: Ref is the call id
	ChangeDevices = "devices" // devices were added or removed
)

// WakeVAPIDKey returns the VAPID private key every instance signs with,
// making it with newKey if the database has none yet. Instances starting
// at once agree: the first insert wins, the others read it.
func (s *Store) WakeVAPIDKey(ctx context.Context, newKey func() ([]byte, error)) ([]byte, error) {
	var key []byte
	err := s.pool.QueryRow(ctx, `SELECT private_key FROM wake_vapid`).Scan(&key)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("store: vapid key: %w", readErr(err))
	}
	fresh, err := newKey()
	if err != nil {
		return nil, err
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO wake_vapid (private_key) VALUES ($1) ON CONFLICT DO NOTHING`, fresh); err != nil {
		return nil, fmt.Errorf("store: vapid key: %w", readErr(err))
	}
	if err := s.pool.QueryRow(ctx, `SELECT private_key FROM wake_vapid`).Scan(&key); err != nil {
		return nil, fmt.Errorf("store: vapid key: %w", readErr(err))
	}
	return key, nil
}

const deviceColumns = `id, user_id, extension, name, endpoint, p256dh, auth, created_at, last_seen_at`

type deviceRow struct {
	ID         string    `db:"id"`
	UserID     string    `db:"user_id"`
	Extension  string    `db:"extension"`
	Name       string    `db:"name"`
	Endpoint   string    `db:"endpoint"`
	P256dh     string    `db:"p256dh"`
	Auth       string    `db:"auth"`
	CreatedAt  time.Time `db:"created_at"`
	LastSeenAt time.Time `db:"last_seen_at"`
}

func (r deviceRow) device() callstate.Device {
	d := callstate.Device{ID: r.ID, UserID: r.UserID, Extension: r.Extension, Name: r.Name,
		CreatedAt: r.CreatedAt.UTC(), LastSeenAt: r.LastSeenAt.UTC()}
	d.Subscription.Endpoint = r.Endpoint
	d.Subscription.Keys.P256dh, d.Subscription.Keys.Auth = r.P256dh, r.Auth
	return d
}

// AddDevice registers d with the hash of its credential. With enrollHash
// set, the enrollment token of that hash is used up in the same
// transaction: it must be known and unexpired (else callstate.ErrEnrollment)
// and for d's user (else callstate.ErrOtherUser, and the token stays). A
// subscription registered again (same endpoint) replaces the device it
// had, with the new id and credential.
func (s *Store) AddDevice(ctx context.Context, d callstate.Device, secretHash, enrollHash []byte) (callstate.Device, error) {
	var out callstate.Device
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if enrollHash != nil {
			var user string
			err := tx.QueryRow(ctx, `SELECT user_id FROM wake_enrollment WHERE token_hash = $1 AND expires_at > now() FOR UPDATE`,
				enrollHash).Scan(&user)
			if errors.Is(err, pgx.ErrNoRows) {
				return callstate.ErrEnrollment
			}
			if err != nil {
				return err
			}
			if d.Extension != "" || user != d.UserID {
				return callstate.ErrOtherUser
			}
			if _, err := tx.Exec(ctx, `DELETE FROM wake_enrollment WHERE token_hash = $1`, enrollHash); err != nil {
				return err
			}
		}
		rows, _ := tx.Query(ctx, `
INSERT INTO wake_device (id, user_id, extension, name, endpoint, p256dh, auth, secret_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (endpoint) DO UPDATE SET
    id = excluded.id, user_id = excluded.user_id, extension = excluded.extension, name = excluded.name,
    p256dh = excluded.p256dh, auth = excluded.auth, secret_hash = excluded.secret_hash,
    created_at = now(), last_seen_at = now()
RETURNING `+deviceColumns,
			d.ID, d.UserID, d.Extension, d.Name, d.Subscription.Endpoint, d.Subscription.Keys.P256dh,
			d.Subscription.Keys.Auth, secretHash)
		r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[deviceRow])
		if err != nil {
			return err
		}
		out = r.device()
		return nil
	})
	if errors.Is(err, callstate.ErrEnrollment) || errors.Is(err, callstate.ErrOtherUser) {
		return out, err
	}
	if err != nil {
		return out, fmt.Errorf("store: add device: %w", readErr(err))
	}
	return out, nil
}

// DeleteDevice removes a device; callstate.ErrNotFound if there is none.
func (s *Store) DeleteDevice(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM wake_device WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("store: delete device %s: %w", id, readErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: delete device %s: %w", id, callstate.ErrNotFound)
	}
	return nil
}

// DeviceSecretHash returns the hash of a device's credential, or
// callstate.ErrNotFound.
func (s *Store) DeviceSecretHash(ctx context.Context, id string) ([]byte, error) {
	var h []byte
	err := s.pool.QueryRow(ctx, `SELECT secret_hash FROM wake_device WHERE id = $1`, id).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("store: device %s: %w", id, callstate.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: device %s: %w", id, readErr(err))
	}
	return h, nil
}

// Devices returns every device, by user, extension and creation.
func (s *Store) Devices(ctx context.Context) ([]callstate.Device, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+deviceColumns+` FROM wake_device ORDER BY user_id, extension, created_at, id`)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[deviceRow])
	if err != nil {
		return nil, fmt.Errorf("store: devices: %w", readErr(err))
	}
	out := make([]callstate.Device, len(rs))
	for i, r := range rs {
		out[i] = r.device()
	}
	return out, nil
}

// DevicesFor returns the devices of the users userIDs and of extension.
func (s *Store) DevicesFor(ctx context.Context, userIDs []string, extension string) ([]callstate.Device, error) {
	if userIDs == nil {
		userIDs = []string{}
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+deviceColumns+` FROM wake_device
WHERE (user_id <> '' AND user_id = ANY($1)) OR (extension <> '' AND extension = $2) ORDER BY id`, userIDs, extension)
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[deviceRow])
	if err != nil {
		return nil, fmt.Errorf("store: devices for %v %q: %w", userIDs, extension, readErr(err))
	}
	out := make([]callstate.Device, len(rs))
	for i, r := range rs {
		out[i] = r.device()
	}
	return out, nil
}

// WakeTargets returns the users and extensions that have devices.
func (s *Store) WakeTargets(ctx context.Context) (*callstate.WakeTargets, error) {
	t := &callstate.WakeTargets{Users: map[string]struct{}{}, Extensions: map[string]struct{}{}}
	rows, _ := s.pool.Query(ctx, `SELECT DISTINCT user_id, extension FROM wake_device`)
	var user, ext string
	_, err := pgx.ForEachRow(rows, []any{&user, &ext}, func() error {
		if user != "" {
			t.Users[user] = struct{}{}
		}
		if ext != "" {
			t.Extensions[ext] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: wake targets: %w", readErr(err))
	}
	return t, nil
}

// AddEnrollment keeps the hash of a one-time enrollment token for user,
// valid until expires.
func (s *Store) AddEnrollment(ctx context.Context, tokenHash []byte, user string, expires time.Time) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO wake_enrollment (token_hash, user_id, expires_at) VALUES ($1, $2, $3)`,
		tokenHash, user, expires); err != nil {
		return fmt.Errorf("store: add enrollment: %w", readErr(err))
	}
	return nil
}

// ClaimWakePush records that journeyID's call callID is pushed to the
// devices of userIDs and extension, and reports whether this was the
// first claim: only then is anything pushed (one push per journey,
// whichever instance and leg asks first).
func (s *Store) ClaimWakePush(ctx context.Context, journeyID, callID string, userIDs []string, extension string) (bool, error) {
	if userIDs == nil {
		userIDs = []string{}
	}
	tag, err := s.pool.Exec(ctx, `
INSERT INTO wake_push (journey_id, call_id, user_ids, extension) VALUES ($1, $2, $3, $4)
ON CONFLICT (journey_id) DO NOTHING`, journeyID, callID, userIDs, extension)
	if err != nil {
		return false, fmt.Errorf("store: claim wake push %s: %w", journeyID, readErr(err))
	}
	return tag.RowsAffected() == 1, nil
}

// WakeReady records that device id is ready for call callID and tells
// every instance (ChangeReady), so that the one holding the call's answer
// lets it go. The call must have been pushed to the device's user or
// extension, else callstate.ErrNotFound. It also marks the device seen.
func (s *Store) WakeReady(ctx context.Context, id, callID string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
INSERT INTO wake_ready (call_id, device_id)
SELECT p.call_id, d.id FROM wake_push p JOIN wake_device d
  ON (d.user_id <> '' AND d.user_id = ANY(p.user_ids)) OR (d.extension <> '' AND d.extension = p.extension)
WHERE p.call_id = $2 AND d.id = $1
LIMIT 1
ON CONFLICT DO NOTHING`, id, callID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			var known bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM wake_ready WHERE call_id = $2 AND device_id = $1)`,
				id, callID).Scan(&known); err != nil {
				return err
			}
			if !known {
				return callstate.ErrNotFound
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE wake_device SET last_seen_at = now() WHERE id = $1`, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify('callstate', 'ready 0 ' || $1::text)`, callID)
		return err
	})
	if errors.Is(err, callstate.ErrNotFound) {
		return fmt.Errorf("store: ready of device %s for call %q: %w", id, callID, err)
	}
	if err != nil {
		return fmt.Errorf("store: ready of device %s for call %q: %w", id, callID, readErr(err))
	}
	return nil
}

// ReadyCalls returns those of callIDs a device reported ready for.
func (s *Store) ReadyCalls(ctx context.Context, callIDs []string) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `SELECT DISTINCT call_id FROM wake_ready WHERE call_id = ANY($1)`, callIDs)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: ready calls: %w", readErr(err))
	}
	return ids, nil
}

// wakeFeedBatch bounds the feed events one WakeFeed reads.
const wakeFeedBatch = 1000

// WakeFeed reads the feed after the wake cursor, one instance at a time
// (another reading meanwhile: it returns none), and returns the pushes
// its events make, having recorded them and moved the cursor in one
// transaction: a clear for each pushed journey that was answered or ended
// (once: callstate.ClearFor), and the push of each PBX extension's early
// dialog whose extension t says has devices (one per journey). more is
// true when there may be more to read at once.
//
// Of the feed it reads only what can make a push: the events of journeys
// pushed and not cleared yet and, when some PBX extension has devices,
// the PBX's (SIP) events. With no device on an extension and no push
// waiting for its clear, it reads no event at all and only moves the
// cursor to the head (one statement, no row lock held): a clear is only ever for a journey whose push is recorded
// (wake_push) before its leg is answered, so no event up to the head can
// clear a push recorded later.
func (s *Store) WakeFeed(ctx context.Context, t *callstate.WakeTargets) (pushes []callstate.WakePush, more bool, err error) {
	sip := t != nil && len(t.Extensions) > 0
	var (
		cursor, head int64
		waiting      bool
	)
	err = s.pool.QueryRow(ctx, `
SELECT c.cursor, h.head, EXISTS (SELECT 1 FROM wake_push WHERE cleared_at IS NULL)
FROM wake_cursor c, call_feed_head h`).Scan(&cursor, &head, &waiting)
	switch {
	case err != nil:
		return nil, false, fmt.Errorf("store: wake feed: %w", readErr(err))
	case head <= cursor:
		return nil, false, nil
	case !waiting && !sip:
		if _, err := s.pool.Exec(ctx, `UPDATE wake_cursor SET cursor = $1 WHERE cursor < $1`, head); err != nil {
			return nil, false, fmt.Errorf("store: wake feed: move the cursor: %w", readErr(err))
		}
		return nil, false, nil
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT cursor FROM wake_cursor FOR UPDATE SKIP LOCKED`).Scan(&cursor)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // another instance reads it
		}
		if err != nil || head <= cursor {
			return err
		}
		evs, err := s.wakeEvents(ctx, tx, cursor, head, sip)
		if err != nil {
			return err
		}
		next := head
		if len(evs) == wakeFeedBatch {
			more, next = true, evs[len(evs)-1].ID
		}
		if pushes, err = wakePushes(ctx, tx, evs, t); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE wake_cursor SET cursor = $1`, next)
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("store: wake feed: %w", readErr(err))
	}
	return pushes, more, nil
}

// wakeEvents returns up to wakeFeedBatch events with ids after after and up
// to upto, by id, that can make a push: those of journeys pushed and not
// cleared and, with sip, every SIP event (an early dialog, then its clears
// in the same read).
func (s *Store) wakeEvents(ctx context.Context, q querier, after, upto int64, sip bool) ([]callstate.FeedEvent, error) {
	return s.feedEvents(ctx, q, after, `
FROM call_feed_id i JOIN call_feed f ON f.seq = i.seq
WHERE i.id > $1 AND i.id <= $2 AND f.journey_id <> ''
  AND (($3 AND f.source = 'sip')
       OR EXISTS (SELECT 1 FROM wake_push w WHERE w.journey_id = f.journey_id AND w.cleared_at IS NULL))
ORDER BY i.id LIMIT $4`, after, upto, sip, wakeFeedBatch)
}

// wakePushes records and returns the pushes evs make: see WakeFeed.
func wakePushes(ctx context.Context, tx pgx.Tx, evs []callstate.FeedEvent, t *callstate.WakeTargets) ([]callstate.WakePush, error) {
	var pushes []callstate.WakePush
	for _, ev := range evs {
		if ev.JourneyID == "" {
			continue
		}
		if reason := callstate.ClearFor(ev); reason != "" {
			var p callstate.WakePush
			err := tx.QueryRow(ctx, `
UPDATE wake_push SET cleared_at = now(), clear_reason = $2
WHERE journey_id = $1 AND cleared_at IS NULL
RETURNING call_id, user_ids, extension`, ev.JourneyID, reason).Scan(&p.Message.Call, &p.UserIDs, &p.Extension)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return nil, err
			}
			p.Message.Kind, p.Message.Journey, p.Message.Reason = callstate.WakeClear, ev.JourneyID, reason
			pushes = append(pushes, p)
			continue
		}
		if callstate.EarlyDialog(ev) && t.HasExtension(ev.Call.Extension) {
			c := ev.Call
			tag, err := tx.Exec(ctx, `
INSERT INTO wake_push (journey_id, call_id, extension) VALUES ($1, $2, $3) ON CONFLICT (journey_id) DO NOTHING`,
				ev.JourneyID, c.CallID, c.Extension)
			if err != nil {
				return nil, err
			}
			if tag.RowsAffected() == 0 {
				continue
			}
			pushes = append(pushes, callstate.WakePush{Extension: c.Extension, Message: callstate.WakeMessage{
				Kind: callstate.WakeIncoming, Call: c.CallID, Journey: ev.JourneyID, From: c.From, To: c.To,
				Extension: c.Extension, At: ev.At.UTC().Format(time.RFC3339)}})
		}
	}
	return pushes, nil
}

// ForgetWake deletes the pushes, ready answers, enrollment tokens (by
// expiry) and push services' waits (by end) before cutoff, and returns how
// many rows went.
func (s *Store) ForgetWake(ctx context.Context, cutoff time.Time) (int64, error) {
	var n int64
	for _, q := range []string{
		`DELETE FROM wake_push WHERE pushed_at < $1`,
		`DELETE FROM wake_ready WHERE at < $1`,
		`DELETE FROM wake_enrollment WHERE expires_at < $1`,
		`DELETE FROM wake_throttle WHERE until < $1`,
	} {
		tag, err := s.pool.Exec(ctx, q, cutoff)
		if err != nil {
			return n, fmt.Errorf("store: forget wake: %w", readErr(err))
		}
		n += tag.RowsAffected()
	}
	return n, nil
}

// PushesHeldUntil returns the time before which nothing is sent to the push
// service at origin (zero: none); it implements webpush.Throttle for every
// instance at once.
func (s *Store) PushesHeldUntil(ctx context.Context, origin string) (time.Time, error) {
	var until time.Time
	err := s.pool.QueryRow(ctx, `SELECT until FROM wake_throttle WHERE origin = $1`, origin).Scan(&until)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("store: push throttle of %s: %w", origin, readErr(err))
	}
	return until, nil
}

// HoldPushes records that the push service at origin asked for no pushes
// before until; a later wait already recorded stays.
func (s *Store) HoldPushes(ctx context.Context, origin string, until time.Time) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO wake_throttle (origin, until) VALUES ($1, $2)
ON CONFLICT (origin) DO UPDATE SET until = GREATEST(wake_throttle.until, EXCLUDED.until)`, origin, until)
	if err != nil {
		return fmt.Errorf("store: hold pushes to %s: %w", origin, readErr(err))
	}
	return nil
}

// ClearSent marks the clear of journey sent (tried: a push service's
// refusal is not retried), so that it is not sent again.
func (s *Store) ClearSent(ctx context.Context, journey string) error {
	_, err := s.pool.Exec(ctx, `
UPDATE wake_push SET clear_sent_at = now() WHERE journey_id = $1 AND cleared_at IS NOT NULL AND clear_sent_at IS NULL`, journey)
	if err != nil {
		return fmt.Errorf("store: clear of %s sent: %w", journey, readErr(err))
	}
	return nil
}

// UnsentClears takes up to limit clears recorded before before and never
// marked sent (their instance died before sending them), marks them sent,
// and returns them to be sent again. Each is taken by one instance; one
// that dies again before sending loses it.
func (s *Store) UnsentClears(ctx context.Context, before time.Time, limit int) ([]callstate.WakePush, error) {
	rows, _ := s.pool.Query(ctx, `
UPDATE wake_push SET clear_sent_at = now()
WHERE journey_id IN (
    SELECT journey_id FROM wake_push
    WHERE cleared_at IS NOT NULL AND clear_sent_at IS NULL AND cleared_at < $1
    ORDER BY cleared_at LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING journey_id, call_id, user_ids, extension, clear_reason`, before, limit)
	var pushes []callstate.WakePush
	var p callstate.WakePush
	_, err := pgx.ForEachRow(rows, []any{&p.Message.Journey, &p.Message.Call, &p.UserIDs, &p.Extension, &p.Message.Reason}, func() error {
		p.Message.Kind = callstate.WakeClear
		pushes = append(pushes, p)
		p = callstate.WakePush{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: unsent clears: %w", readErr(err))
	}
	return pushes, nil
}
