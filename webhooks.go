package callstate

import (
	"errors"
	"time"
)

// The formats a webhook endpoint can receive the feed's events in.
const (
	FormatStandard = "standard" // Standard Webhooks: JSON {type, timestamp, data}
	FormatZammad   = "zammad"   // Zammad's generic CTI: newCall, answer, hangup as form fields
	FormatChat     = "chat"     // an incoming-webhook chat message ({"text"}) for missed calls and voicemail
)

// ValidFormat reports whether f is one of the formats.
func ValidFormat(f string) bool {
	return f == FormatStandard || f == FormatZammad || f == FormatChat
}

// EventWebhookTest is the type of the test message an endpoint can be sent.
const EventWebhookTest = "webhook.test"

// WebhookEndpoint is an HTTP endpoint that receives the feed's events.
type WebhookEndpoint struct {
	ID             int64
	URL            string
	Description    string
	Secrets        []string  // whsec_ secrets: the current one first, then one being rotated out
	PreviousUntil  time.Time // until when the rotated-out secret still signs
	Types          []string  // event types it receives; empty: every transition type (FeedTypes)
	Format         string    // FormatStandard, FormatZammad or FormatChat
	Enabled        bool
	DisabledReason string // why it was disabled (410, failing for days), "" when enabled
	FromConfig     bool   // the endpoint of EVENTS_WEBHOOK_URL
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Wants reports whether the endpoint receives events of type t.
func (e WebhookEndpoint) Wants(t string) bool {
	if len(e.Types) == 0 {
		for _, f := range FeedTypes {
			if f == t {
				return true
			}
		}
		return false
	}
	for _, x := range e.Types {
		if x == t {
			return true
		}
	}
	return false
}

// The statuses of a delivery.
const (
	DeliveryPending   = "pending"   // waiting for its next try (or being tried)
	DeliveryDelivered = "delivered" // answered 2xx
	DeliveryFailed    = "failed"    // every try of the schedule failed; replay sends it again
)

// WebhookDelivery is one message to one endpoint: one id (webhook-id) and
// one body whatever the number of tries.
type WebhookDelivery struct {
	ID          int64
	EndpointID  int64
	FeedID      int64  // the feed event it tells (0 for a test message)
	MsgID       string // webhook-id
	JourneyID   string // its call's journey: one journey's messages go out in order
	OrderKey    string // messages of one key reach an endpoint in order
	Type        string
	Body        []byte
	ContentType string
	Status      string
	Attempts    int
	NextAt      time.Time
	LastStatus  int    // HTTP status of the last try; 0 if none answered
	LastError   string // why the last try failed
	DeliveredAt time.Time
	CreatedAt   time.Time
}

// WebhookAttempt is one try of a delivery.
type WebhookAttempt struct {
	DeliveryID int64
	At         time.Time
	Status     int // HTTP status, 0 when none came
	Error      string
	Duration   time.Duration
}

// WebhookResult is what became of one try, for the store to record.
type WebhookResult struct {
	Attempt   WebhookAttempt
	Delivered bool
	NextAt    time.Time // when not delivered: the next try; zero: no more tries (failed)
	Disable   string    // not empty: disable the endpoint for this reason
}

// ErrWebhookDisabled is returned for work on an endpoint that is disabled.
var ErrWebhookDisabled = errors.New("webhook endpoint disabled")

// ClaimedDelivery is a delivery taken to be sent, with its endpoint.
type ClaimedDelivery struct {
	Delivery WebhookDelivery
	Endpoint WebhookEndpoint
}
