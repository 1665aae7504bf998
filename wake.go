package callstate

import (
	"crypto/ecdh"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Waking a phone before it rings (docs/wake.md): a person's devices
// (browsers, or a native app's relay) subscribe to Web Push; on an incoming
// call for their user or extension they get a push, and the newCall answer
// waits a moment for one of them to say it is ready.

// Errors of the device API.
var (
	// ErrEnrollment: an enrollment token that is unknown, used or expired.
	ErrEnrollment = errors.New("enrollment token unknown, used or expired")
	// ErrOtherUser: an enrollment token used for a user not its own.
	ErrOtherUser = errors.New("enrollment token is for another user")
	// ErrBadSubscription: a push subscription that cannot be pushed to.
	ErrBadSubscription = errors.New("bad push subscription")
)

// PushSubscription is a browser's PushSubscription as its toJSON gives it.
type PushSubscription struct {
	Endpoint       string   `json:"endpoint"`
	ExpirationTime *float64 `json:"expirationTime,omitempty"`
	Keys           struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// decodeKey reads a subscription key: base64url as browsers give it,
// padded or not (some clients send standard base64).
func decodeKey(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// PushKeys returns the subscription's keys decoded and checked: p256dh a
// P-256 point (65 bytes, uncompressed), auth 16 bytes. The error wraps
// ErrBadSubscription and says which is wrong.
func (s PushSubscription) PushKeys() (p256dh, auth []byte, err error) {
	p256dh, err = decodeKey(s.Keys.P256dh)
	if err != nil || len(p256dh) != 65 {
		return nil, nil, fmt.Errorf("%w: keys.p256dh must be a P-256 public key, 65 bytes in base64url", ErrBadSubscription)
	}
	if _, err := ecdh.P256().NewPublicKey(p256dh); err != nil {
		return nil, nil, fmt.Errorf("%w: keys.p256dh is not a point on P-256", ErrBadSubscription)
	}
	auth, err = decodeKey(s.Keys.Auth)
	if err != nil || len(auth) != 16 {
		return nil, nil, fmt.Errorf("%w: keys.auth must be 16 bytes in base64url", ErrBadSubscription)
	}
	return p256dh, auth, nil
}

// ParseSubscription reads a PushSubscription's JSON and checks its keys
// and that it has an endpoint (whether the endpoint may be pushed to is
// the push adapter's to say). Errors wrap ErrBadSubscription.
func ParseSubscription(data []byte) (PushSubscription, error) {
	var s PushSubscription
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%w: not a PushSubscription's JSON: %v", ErrBadSubscription, err)
	}
	if s.Endpoint == "" {
		return s, fmt.Errorf("%w: endpoint is missing", ErrBadSubscription)
	}
	if _, _, err := s.PushKeys(); err != nil {
		return s, err
	}
	return s, nil
}

// Device is one subscription registered for a sipgate user (UserID, e.g.
// w0) or a PBX extension, never both.
type Device struct {
	ID           string
	UserID       string
	Extension    string
	Name         string
	Subscription PushSubscription
	CreatedAt    time.Time
	LastSeenAt   time.Time
}

// WakeTargets are the users and extensions that have devices, for the
// webhook to tell in memory whether a call is for any of them.
type WakeTargets struct {
	Users      map[string]struct{}
	Extensions map[string]struct{}
}

// HasUser reports whether user id has a device.
func (t *WakeTargets) HasUser(id string) bool {
	if t == nil {
		return false
	}
	_, ok := t.Users[id]
	return ok
}

// HasExtension reports whether a PBX extension has a device.
func (t *WakeTargets) HasExtension(ext string) bool {
	if t == nil {
		return false
	}
	_, ok := t.Extensions[ext]
	return ok
}

// WakeUsers returns those of userIDs (a newCall's userId[]) that have
// devices; none for a nil set.
func (t *WakeTargets) WakeUsers(userIDs []string) []string {
	var out []string
	for _, id := range userIDs {
		if t.HasUser(id) {
			out = append(out, id)
		}
	}
	return out
}

// The kinds of WakeMessage.
const (
	WakeIncoming = "incoming"
	WakeClear    = "clear"
)

// Reasons of a clear.
const (
	ClearAnswered = "answered"
	ClearEnded    = "ended"
)

// WakeMessage is a push's payload (docs/wake.md): an incoming call, or the
// clear that replaces it (same Topic) when the call is answered or ends.
type WakeMessage struct {
	V       int    `json:"v"`
	Kind    string `json:"kind"`
	Call    string `json:"call"`
	Journey string `json:"journey"`
	From    string `json:"from,omitempty"`
	// FromFormatted is From as the board shows it (the phonebook's
	// Format): the service worker has no number formatting of its own.
	FromFormatted string `json:"fromFormatted,omitempty"`
	FromName      string `json:"fromName,omitempty"`
	To            string `json:"to,omitempty"`
	ToName        string `json:"toName,omitempty"`
	User          string `json:"user,omitempty"`
	Extension     string `json:"extension,omitempty"`
	At            string `json:"at,omitempty"`
	Ready         string `json:"ready,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// MaxWakePayload bounds a payload: well under the 4 KB push services take.
const MaxWakePayload = 3072

// Payload returns m as JSON of at most MaxWakePayload bytes: names are
// cut (by runes) when the whole would be longer. Every field but the
// names is bounded by the webhook's validation (255 bytes each).
func (m WakeMessage) Payload() ([]byte, error) {
	m.V = 1
	for {
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("wake payload: %w", err)
		}
		if len(b) <= MaxWakePayload {
			return b, nil
		}
		if m.FromName == "" && m.ToName == "" {
			return nil, fmt.Errorf("wake payload: %d bytes, over %d", len(b), MaxWakePayload)
		}
		m.FromName, m.ToName = cutRunes(m.FromName), cutRunes(m.ToName)
	}
}

// cutRunes halves s, by runes.
func cutRunes(s string) string {
	r := []rune(s)
	return string(r[:len(r)/2])
}

// WakeTopic is the Topic of a journey's pushes (RFC 8030 section 5.4: at
// most 32 base64url characters): the incoming push and its clear share it,
// so the push service replaces one not yet delivered by the other.
func WakeTopic(journeyID string) string {
	sum := sha256.Sum256([]byte(journeyID))
	return base64.RawURLEncoding.EncodeToString(sum[:24])
}

// WakePush is a push the feed asks for: the clear of a journey pushed
// before (answered or ended), or the incoming push of a PBX extension's
// early dialog.
type WakePush struct {
	Message   WakeMessage
	UserIDs   []string // whose devices get it
	Extension string
}

// ClearFor returns the reason a feed event clears its journey's
// notification: answered or ended, or "" when it does not.
func ClearFor(ev FeedEvent) string {
	switch ev.Type {
	case EventAnswered:
		return ClearAnswered
	case EventEnded, EventJourneyEnded:
		return ClearEnded
	}
	return ""
}

// EarlyDialog reports whether a feed event is a PBX extension's incoming
// dialog that has just appeared and still rings: the moment to push to
// the extension's devices (callstate is not in the INVITE's path, so
// nothing is held).
func EarlyDialog(ev FeedEvent) bool {
	c := ev.Call
	return ev.Type == EventRinging && c != nil && c.Source == SourceSIP && c.State == StateRinging &&
		c.Extension != "" && c.Direction != DirectionOut
}
