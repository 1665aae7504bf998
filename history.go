package callstate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// HistoryCall is one call as sipgate's own record keeps it: an entry of
// type CALL of GET /history. Field names and values are sipgate's (see
// docs/reconcile.md); a HistoryCall is what reconciliation compares with
// the calls the webhooks told of.
type HistoryCall struct {
	ID           string        // the history entry's id
	CallID       string        // the callId the push API's events carry; "" cannot be matched
	Source       string        // caller, as sipgate writes it: "+4915799912345", "01579-9912345", "anonymous"
	Target       string        // callee
	SourceAlias  string        // caller's name
	TargetAlias  string        // callee's name
	Direction    string        // INCOMING, OUTGOING, MISSED_INCOMING, MISSED_OUTGOING
	Status       string        // NOPICKUP, BUSY, PICKUP, FORWARD
	CallStatus   string        // SUCCESS, FAILURE, REJECTED, REJECTED_DND, VOICEMAIL_NO_MESSAGE, BUSY_ON_BUSY, BUSY, MISSED; "" when absent
	Created      time.Time     // when the call started
	LastModified time.Time     // when the entry last changed
	Duration     time.Duration // talk time
	Endpoints    []HistoryEndpoint
	Voicemail    bool // a VOICEMAIL entry of the same call says the caller left a message
}

// HistoryEndpoint is one of the places sipgate routed a call to.
type HistoryEndpoint struct {
	Type      string // ROUTED, FORWARDED, …
	Extension string // e.g. w0 (a user), e0 (a phone), v0 (a voicemail)
	Kind      string // the endpoint's own type, e.g. USER, VOICEMAIL
}

// HistoryOutcome is how sipgate's record says a call went.
type HistoryOutcome string

// The outcomes a history entry can tell.
const (
	HistoryAnswered    HistoryOutcome = "answered"
	HistoryMissed      HistoryOutcome = "missed"
	HistoryVoicemailed HistoryOutcome = "voicemail"
	HistoryBusy        HistoryOutcome = "busy"
	HistoryRejected    HistoryOutcome = "rejected"
	HistoryForwarded   HistoryOutcome = "forwarded"
	HistoryFailed      HistoryOutcome = "failed"
)

// Outcome reads the entry's outcome: from callStatus where sipgate gives
// one, else from status, else from the direction (MISSED_*: missed).
func (h HistoryCall) Outcome() HistoryOutcome {
	switch strings.ToUpper(h.CallStatus) {
	case "SUCCESS":
		if h.toVoicemail() {
			return HistoryVoicemailed
		}
		return HistoryAnswered
	case "VOICEMAIL_NO_MESSAGE":
		return HistoryVoicemailed
	case "REJECTED", "REJECTED_DND":
		return HistoryRejected
	case "BUSY", "BUSY_ON_BUSY":
		return HistoryBusy
	case "MISSED":
		return h.missed()
	case "FAILURE":
		return HistoryFailed
	}
	switch strings.ToUpper(h.Status) {
	case "PICKUP":
		if h.toVoicemail() {
			return HistoryVoicemailed
		}
		return HistoryAnswered
	case "BUSY":
		return HistoryBusy
	case "FORWARD":
		return HistoryForwarded
	case "NOPICKUP":
		return h.missed()
	}
	if strings.HasPrefix(strings.ToUpper(h.Direction), "MISSED_") {
		return h.missed()
	}
	if h.Duration > 0 {
		return HistoryAnswered
	}
	return h.missed()
}

// missed is a call no person took: voicemail when a message was left.
func (h HistoryCall) missed() HistoryOutcome {
	if h.Voicemail {
		return HistoryVoicemailed
	}
	return HistoryMissed
}

// toVoicemail reports whether the call was taken by a voicemail: a
// message was left, or the only endpoint it reached is a voicemail.
func (h HistoryCall) toVoicemail() bool {
	if h.Voicemail {
		return true
	}
	reached := false
	for _, e := range h.Endpoints {
		if e.voicemail() {
			reached = true
		} else if e.Extension != "" {
			return false
		}
	}
	return reached
}

func (e HistoryEndpoint) voicemail() bool {
	return strings.EqualFold(e.Kind, "VOICEMAIL") || (len(e.Extension) > 1 && e.Extension[0] == 'v')
}

// Outgoing reports whether we placed the call.
func (h HistoryCall) Outgoing() bool {
	return strings.HasSuffix(strings.ToUpper(h.Direction), "OUTGOING")
}

// maxRing bounds the end of an unanswered call learned from the history:
// sipgate keeps no ring time, and the entry's lastModified is used for it
// only when it is within this of the start (a later change of the entry,
// read or archived, is not the call's end).
const maxRing = 10 * time.Minute

// ErrUnmatchable is returned by HistoryCall.Reconcile for an entry that
// cannot be matched to a call.
var ErrUnmatchable = fmt.Errorf("%w: history entry cannot be matched to a call", ErrInvalidEvent)

// Fill is what a history entry adds to a call, and whether it disagrees
// with what the call's events stated.
type Fill struct {
	Update   Update // the learned update; zero Key when there is nothing to fill
	Create   bool   // the call was unknown: the update creates it
	Disagree string // what the history says against the events' account, "" when nothing
}

// Reconcile compares the entry with the call its webhooks made (known
// false when there is none) and returns what to fill. Numbers are written
// as the webhooks write them (plan). It returns an error wrapping
// ErrUnmatchable for an entry without a callId or without a start time.
//
// What is filled follows Call.Apply's rule: the end (time and cause) of a
// call no event ended or that callstate ended by a timeout; the answer when
// the history has one and no event stated the end; for an unknown call,
// everything the entry tells, marked Learned.
func (h HistoryCall) Reconcile(c Call, known bool, plan NumberPlan) (Fill, error) {
	if h.CallID == "" || h.Created.IsZero() {
		return Fill{}, fmt.Errorf("%w: entry %q has no callId or no created time", ErrUnmatchable, h.ID)
	}
	out := h.Outcome()
	answered := out == HistoryAnswered || out == HistoryVoicemailed
	var f Fill
	historyPerson, webhookPerson := out == HistoryAnswered, known && c.AnsweredByPerson()
	if known && historyPerson != webhookPerson && out != HistoryVoicemailed && !c.VoicemailLeg() &&
		(webhookPerson || c.AnsweredAt.IsZero()) && (c.EndRank == RankStated || c.AnswerRank == RankStated) {
		f.Disagree = fmt.Sprintf("history says %s, the webhooks %s", out, webhookOutcome(c))
	}
	if known && c.EndRank == RankStated {
		return f, nil // the events' account stands
	}
	start := EventTime(h.Created)
	if known && !c.StartedAt.IsZero() {
		start = c.StartedAt
	}
	u := Update{Key: h.CallID, Learned: true, State: StateEnded, Cause: h.cause(out)}
	var end time.Time
	switch {
	case answered && known && !c.AnswerAt.IsZero():
		end = c.AnswerAt.Add(h.Duration)
	case answered:
		end = h.plausibleEnd(start, h.Duration)
		u.AnsweredAt = end.Add(-h.Duration)
	default:
		end = h.plausibleEnd(start, 0)
	}
	u.EndedAt = EventTime(end)
	if !u.AnsweredAt.IsZero() {
		u.AnsweredAt = EventTime(u.AnsweredAt)
		if out == HistoryAnswered && !h.Outgoing() {
			// An incoming answer that names no one counts as the voicemail
			// (see AnsweredByPerson): sipgate's record says a person took it.
			u.Answering = historyNumber(plan, h.Target)
		}
	}
	if !known {
		f.Create = true
		u.StartedAt = start
		u.CallID = h.CallID
		u.From, u.To = historyNumber(plan, h.Source), historyNumber(plan, h.Target)
		u.Direction = DirectionIn
		if h.Outgoing() {
			u.Direction = DirectionOut
		}
		for _, e := range h.Endpoints {
			if len(e.Extension) > 1 && e.Extension[0] == 'w' && !slices.Contains(u.UserIDs, e.Extension) {
				u.UserIDs = append(u.UserIDs, e.Extension)
			}
		}
		slices.Sort(u.UserIDs)
		if len(u.UserIDs) == 1 {
			u.Extension = u.UserIDs[0]
		}
		if out == HistoryVoicemailed {
			u.Users, u.Answering = []string{"voicemail"}, ""
		}
	}
	if !f.Create && !h.fills(c, u) {
		return Fill{Disagree: f.Disagree}, nil
	}
	f.Update = u
	return f, nil
}

// fills reports whether u would change what c says of its end or answer.
func (h HistoryCall) fills(c Call, u Update) bool {
	return c.EndRank < RankLearned || (c.AnswerRank < RankLearned && !u.AnsweredAt.IsZero())
}

// plausibleEnd is the end of a call that started at start and was talked
// for talk: the entry's lastModified when it is at least that and within
// maxRing of it, else start plus talk.
func (h HistoryCall) plausibleEnd(start time.Time, talk time.Duration) time.Time {
	end := start.Add(talk)
	if lm := EventTime(h.LastModified); !lm.Before(end) && lm.Sub(end) <= maxRing {
		return lm
	}
	return end
}

func (h HistoryCall) cause(o HistoryOutcome) string {
	switch o {
	case HistoryAnswered, HistoryVoicemailed:
		return CauseNormalClearing
	case HistoryBusy:
		return CauseBusy
	case HistoryRejected:
		return CauseRejected
	case HistoryForwarded:
		return CauseForwarded
	case HistoryFailed:
		return CauseCongestion
	}
	return CauseNoAnswer
}

func webhookOutcome(c Call) string {
	switch {
	case c.AnsweredByPerson():
		return "answered"
	case !c.AnsweredAt.IsZero():
		return "voicemail"
	}
	return "not answered (" + c.Cause + ")"
}

// historyNumber writes a number of the history as the webhooks do
// (4915799912345); what is no number ("anonymous") stays as it is.
func historyNumber(plan NumberPlan, raw string) string {
	if n, err := plan.Normalize(raw); err == nil {
		return n
	}
	return raw
}

// NumberDigest is the digest by which a forgotten number is remembered
// without keeping it: SHA-256, hex, of the number as the webhooks write
// it.
func NumberDigest(number string) string {
	sum := sha256.Sum256([]byte(number))
	return hex.EncodeToString(sum[:])
}

// Numbers returns the entry's numbers as the webhooks write them.
func (h HistoryCall) Numbers(plan NumberPlan) []string {
	return []string{historyNumber(plan, h.Source), historyNumber(plan, h.Target)}
}

// DedupKey is the journal's key of the fill u of entry h: the same
// entry telling the same again is the same event, on any instance.
func (h HistoryCall) DedupKey(u Update) string {
	b, err := json.Marshal(u)
	if err != nil {
		panic(fmt.Sprintf("callstate: encode update: %v", err)) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return "reconciled:" + h.CallID + ":" + hex.EncodeToString(sum[:8])
}

// HistoryVoicemail is a message left on a voicemail: an entry of type
// VOICEMAIL of GET /history. It carries no callId; MatchVoicemails finds
// its call.
type HistoryVoicemail struct {
	ID             string
	Source, Target string
	Created        time.Time
}

// voicemailSlack is how long after a call's start its voicemail entry may
// be created: the ringing before, and the message.
const voicemailSlack = 15 * time.Minute

// MatchVoicemails marks the calls in which a message was left (Voicemail):
// for each message, the latest call from the same source to the same
// target that started at most voicemailSlack before it. It returns the
// messages it found no call for.
func MatchVoicemails(calls []HistoryCall, vms []HistoryVoicemail) (unmatched []HistoryVoicemail) {
	for _, v := range vms {
		best := -1
		for i, c := range calls {
			if c.Source != v.Source || c.Target != v.Target || c.Created.After(v.Created) || v.Created.Sub(c.Created) > voicemailSlack {
				continue
			}
			if best < 0 || c.Created.After(calls[best].Created) {
				best = i
			}
		}
		if best < 0 {
			unmatched = append(unmatched, v)
			continue
		}
		calls[best].Voicemail = true
	}
	return unmatched
}
