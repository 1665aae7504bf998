package callstate

import (
	"regexp"
)

// This file is callstate's vocabulary: the words the domain, the adapters
// and the database share. Each is declared here once; the store's tests
// (store/vocab_test.go) hold them against the schema's CHECK constraints
// and enums, and the conformance suite against what the SQL rules write.

// Hangup causes sipgate's webhooks report (the hangup event's cause) and
// callstate writes for a sipgate call learned from its history.
const (
	CauseNormalClearing = "normalClearing" // hung up
	CauseBusy           = "busy"
	CauseCancel         = "cancel" // the caller hung up while it rang
	CauseNoAnswer       = "noAnswer"
	CauseCongestion     = "congestion" // a network failure
	CauseNotFound       = "notFound"   // no such number
	CauseForwarded      = "forwarded"  // forwarded to where callstate sees no leg
)

// Hangup causes of a SIP dialog: the event attribute of a terminated
// dialog-info <state> (RFC 4235 section 4.1.3). CauseRejected is also
// written for a sipgate call its history says was rejected.
const (
	CauseCancelled = "cancelled" // the caller cancelled while it rang
	CauseRejected  = "rejected"
	CauseReplaced  = "replaced" // transferred
	CauseLocalBye  = "local-bye"
	CauseRemoteBye = "remote-bye"
	CauseError     = "error"
)

// Hangup causes of calls callstate ends itself.
const (
	// CauseTimeout is the hangup cause of a sipgate call that callstate
	// ended itself because its end never came: a guess (Update.Guessed).
	// It is also RFC 4235's event for a SIP dialog that timed out.
	CauseTimeout = "timeout"
	// CauseVanished ends a SIP dialog a full dialog-info document (or the
	// reuse of the dialog's id for another call) no longer lists.
	CauseVanished = "vanished"
	// CausePBXRestart ends a SIP dialog the first document after the PBX
	// restarted, or was unreachable, no longer lists.
	CausePBXRestart = "pbx-restart"
)

// Lamps: what a busy-lamp field shows for a PBX extension (the sip_lamp
// view) or a sipgate user (the user_lamp view). sipgate tells neither hold
// nor registration, so a sipgate user's lamp is idle, ringing or busy.
const (
	LampIdle        = "idle"
	LampRinging     = "ringing"
	LampBusy        = "busy"        // a call is answered
	LampHold        = "hold"        // SIP: every answered call is on hold
	LampUnavailable = "unavailable" // SIP: not watched, or the extension says so
)

// Lamps lists every lamp, as the lamp view can show it.
var Lamps = []string{LampIdle, LampRinging, LampBusy, LampHold, LampUnavailable}

// PresenceStatuses are what a PBX's presence document (PIDF) can say of an
// extension, in the lamps' words, as sip_extension.presence_status's
// CHECK allows them; "" when it said nothing.
var PresenceStatuses = []string{"", LampIdle, LampRinging, LampBusy, LampUnavailable}

// The typed events of a call's life, as the feed, the live stream, the
// event history and the webhooks out name them.
const (
	EventRinging   = "call.ringing"   // a leg was offered
	EventAnswered  = "call.answered"  // a leg was answered
	EventEnded     = "call.ended"     // a leg ended
	EventMissed    = "call.missed"    // a journey ended missed
	EventVoicemail = "call.voicemail" // a journey ended at the voicemail
	EventHeld      = "call.held"      // SIP: a leg was put on hold or taken off it
	EventDTMF      = "call.dtmf"      // digits were pressed
	EventOther     = "call.updated"   // anything else about a call
)

// The feed's event types besides a call's (EventRinging … EventOther).
const (
	EventJourneyEnded = "journey.ended" // a journey stopped being active, whatever its outcome
	EventLampChanged  = "lamp.changed"  // a lamp changed (idle, ringing, busy, hold, unavailable, removed)
	EventLampUpdated  = "lamp.updated"  // only a lamp's count of calls or its name changed
)

// FeedEventTypes lists every type of the feed, as call_feed.type's CHECK
// allows them: FeedTypes and the two that tell no transition.
var FeedEventTypes = append([]string{EventOther, EventLampUpdated}, FeedTypes...)

// ExtensionSyntax is the syntax of a PBX extension's name (and of a
// presence list's), as the sip_extension table's CHECK holds it: 1 to 64
// of A-Z, a-z, 0-9 and ._~*#+-. Such a name goes into a SIP URI's user
// part, a dialog-info entity and a Kamailio script unescaped: every one of
// those characters is "unreserved" or a telephone-subscriber's in
// RFC 3261, and none needs escaping in XML.
const ExtensionSyntax = `^[A-Za-z0-9._~*#+-]{1,64}$`

// SIPUserSyntax is the syntax of a digest account's user name (the
// presence agent's accounts, the subscriber's SIP_USERNAME), as the
// presence_account table's CHECK holds it: ExtensionSyntax widened by the
// rest of RFC 3261's user-unreserved characters (!$&'()=,;?/), which a
// user name may hold and an extension never needs.
const SIPUserSyntax = `^[A-Za-z0-9._~*#+!$&'()=,;?/-]{1,64}$`

var (
	extensionRE = regexp.MustCompile(ExtensionSyntax)
	sipUserRE   = regexp.MustCompile(SIPUserSyntax)
)

// ValidExtension reports whether name is a PBX extension's name by
// ExtensionSyntax.
func ValidExtension(name string) bool { return extensionRE.MatchString(name) }

// ValidSIPUser reports whether name is a digest account's user name by
// SIPUserSyntax.
func ValidSIPUser(name string) bool { return sipUserRE.MatchString(name) }

// Subscription states of a watched PBX extension (sip_extension.subscription).
const (
	SubscriptionPending    = "pending"
	SubscriptionActive     = "active"
	SubscriptionRetrying   = "retrying"
	SubscriptionRefused    = "refused"
	SubscriptionTerminated = "terminated"
)

// Subscriptions lists every subscription state, as sip_extension's CHECK
// allows them.
var Subscriptions = []string{SubscriptionPending, SubscriptionActive, SubscriptionRetrying, SubscriptionRefused, SubscriptionTerminated}
