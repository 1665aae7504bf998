package handlers

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-playground/validator/v10"

	"github.com/callstate/callstate"
)

// sipgate's event names, the value of the form field "event".
const (
	eventNewCall = "newCall"
	eventAnswer  = "answer"
	eventHangup  = "hangup"
	eventDTMF    = "dtmf"
)

// sipgateForm is one sipgate.io push request, decoded but not yet trusted.
// Field names are sipgate's; the form tag is the form key.
type sipgateForm struct {
	Event           string   `form:"event" validate:"required,oneof=newCall answer hangup dtmf"`
	CallID          string   `form:"callId" validate:"required,max=255,text,notblank"`
	OrigCallID      string   `form:"origCallId" validate:"omitempty,max=255,text"`
	Direction       string   `form:"direction" validate:"omitempty,oneof=in out"`
	From            string   `form:"from" validate:"omitempty,max=255,text"`
	To              string   `form:"to" validate:"omitempty,max=255,text"`
	XCID            string   `form:"xcid" validate:"omitempty,max=255,text"`
	Diversion       string   `form:"diversion" validate:"omitempty,max=255,text"`
	Users           []string `form:"user[]" validate:"omitempty,max=256,dive,max=255,text"`
	UserIDs         []string `form:"userId[]" validate:"omitempty,max=256,dive,max=255,text"`
	FullUserIDs     []string `form:"fullUserId[]" validate:"omitempty,max=256,dive,max=255,text"`
	User            string   `form:"user" validate:"omitempty,max=255,text"`
	UserID          string   `form:"userId" validate:"omitempty,max=255,text"`
	FullUserID      string   `form:"fullUserId" validate:"omitempty,max=255,text"`
	AnsweringNumber string   `form:"answeringNumber" validate:"omitempty,max=255,text"`
	Cause           string   `form:"cause" validate:"omitempty,max=64,text"`
	DTMF            string   `form:"dtmf" validate:"omitempty,max=64,dtmf"`
}

// errBadForm marks a request body that is not a well-formed sipgate form.
var errBadForm = errors.New("bad form")

// eventLabel is an event's name as a metrics label: one of sipgate's four,
// or "" for anything else, so that made-up names add no series.
func eventLabel(event string) string {
	switch event {
	case eventNewCall, eventAnswer, eventHangup, eventDTMF:
		return event
	}
	return ""
}

// checkFormContentType accepts application/x-www-form-urlencoded with no
// charset or UTF-8.
func checkFormContentType(header string) error {
	if header == "" {
		return errors.New("missing Content-Type: want application/x-www-form-urlencoded")
	}
	mt, params, err := mime.ParseMediaType(header)
	if err != nil {
		return fmt.Errorf("malformed Content-Type %q", header)
	}
	if mt != "application/x-www-form-urlencoded" {
		return fmt.Errorf("Content-Type %s is not supported: want application/x-www-form-urlencoded", mt)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return fmt.Errorf("charset %s is not supported: want UTF-8", cs)
	}
	return nil
}

// parseSipgateForm decodes body into a form. It returns an error wrapping
// errBadForm for malformed encoding, a key given twice where sipgate sends
// one value, or text that is not valid UTF-8; field rules are checked later
// by the validator.
func parseSipgateForm(body []byte) (sipgateForm, error) {
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return sipgateForm{}, fmt.Errorf("%w: %v", errBadForm, err)
	}
	var f sipgateForm
	single := map[string]*string{
		"event": &f.Event, "callId": &f.CallID, "origCallId": &f.OrigCallID,
		"direction": &f.Direction, "from": &f.From, "to": &f.To, "xcid": &f.XCID,
		"diversion": &f.Diversion, "user": &f.User, "userId": &f.UserID,
		"fullUserId": &f.FullUserID, "answeringNumber": &f.AnsweringNumber,
		"cause": &f.Cause, "dtmf": &f.DTMF,
	}
	multi := map[string]*[]string{
		"user[]": &f.Users, "userId[]": &f.UserIDs, "fullUserId[]": &f.FullUserIDs,
	}
	for key, vs := range values {
		if dst, ok := single[key]; ok {
			if len(vs) > 1 {
				return sipgateForm{}, fmt.Errorf("%w: %s given %d times", errBadForm, key, len(vs))
			}
			*dst = vs[0]
		} else if dst, ok := multi[key]; ok {
			for _, v := range vs {
				if v != "" { // sipgate sends user%5B%5D= for "no users"
					*dst = append(*dst, v)
				}
			}
		} // other keys: sipgate may add fields; the journal keeps them.
	}
	return f, nil
}

// registerSipgateRules adds the validator rules that sipgateForm uses, and
// makes errors name fields by their form key.
func registerSipgateRules(v *validator.Validate) {
	v.RegisterTagNameFunc(func(f reflect.StructField) string {
		if name := f.Tag.Get("form"); name != "" {
			return name
		}
		if name := f.Tag.Get("query"); name != "" {
			return name
		}
		return f.Name
	})
	// The domain's words as parameters name them, from their one
	// declaration (callstate's vocab.go).
	v.RegisterAlias("outcome", "oneof="+strings.Join(outcomeNames(), " "))
	v.RegisterAlias("source", "oneof="+string(callstate.SourceSipgate)+" "+string(callstate.SourceSIP))
	_ = v.RegisterValidation("text", func(fl validator.FieldLevel) bool { return isText(fl.Field().String()) })
	_ = v.RegisterValidation("notblank", func(fl validator.FieldLevel) bool { return strings.TrimSpace(fl.Field().String()) != "" })
	_ = v.RegisterValidation("dtmf", func(fl validator.FieldLevel) bool {
		return strings.Trim(fl.Field().String(), "0123456789*#ABCD") == ""
	})
}

// isText reports whether s is valid UTF-8 with no control characters: what
// can go into a text column and a log line as it is, and be shown on a
// board without changing what is around it. Besides C0 and C1 controls
// that rules out the bidirectional controls (a right-to-left override
// turns "Anna" into what reads as another name) and the line and paragraph
// separators; joiners, which emoji need, are fine.
func isText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) ||
			unicode.In(r, unicode.Zl, unicode.Zp)
	}) < 0
}

// event turns a validated form into the domain's event. The dedup key is the
// body's SHA-256: sipgate sends no event id, and the same body twice is the
// same event, but for dtmf, where the receive time is part of the key (see
// callstate.ReplayWindow).
func (f sipgateForm) event(body []byte, at time.Time) callstate.Event {
	sum := sha256.Sum256(body)
	u := callstate.Update{
		Key:        f.CallID,
		CallID:     f.CallID,
		OrigCallID: f.OrigCallID,
		Direction:  callstate.Direction(f.Direction),
		From:       f.From,
		To:         f.To,
		XCID:       f.XCID,
		Diversion:  f.Diversion,
	}
	switch f.Event {
	case eventNewCall:
		u.State = callstate.StateRinging
		u.Users, u.UserIDs, u.FullUserIDs = f.Users, f.UserIDs, f.FullUserIDs
		if len(f.UserIDs) == 1 {
			u.Extension = f.UserIDs[0] // offered to one user: that is whose call it is
		}
	case eventAnswer:
		u.State = callstate.StateAnswered
		u.AnsweredBy = f.User
		u.Answering = f.AnsweringNumber
		u.Extension = cmp.Or(f.UserID, f.FullUserID)
		u.PinExtension = true // who answered beats whom it was offered to
	case eventHangup:
		u.State = callstate.StateEnded
		u.Cause = f.Cause
		u.Answering = f.AnsweringNumber
	case eventDTMF:
		u.DTMF = f.DTMF
		u.DTMFDigest = hex.EncodeToString(sum[:8])
	}
	at = callstate.EventTime(at)
	key := hex.EncodeToString(sum[:])
	if f.Event == eventDTMF {
		// The same digits again may be a caller in the next menu: every
		// dtmf request is journaled, and the call's row tells repeats
		// from new presses by their times (callstate.ReplayWindow).
		key += fmt.Sprintf(":%d", at.UnixMicro())
	}
	return callstate.Event{
		Source:     callstate.SourceSipgate,
		Type:       f.Event,
		DedupKey:   key,
		ReceivedAt: at,
		Payload:    body,
		Update:     u,
	}
}

func outcomeNames() []string {
	out := make([]string, len(callstate.Outcomes))
	for i, o := range callstate.Outcomes {
		out[i] = string(o)
	}
	return out
}
