package xmlresponse

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"time"
)

// ContentType is the media type sipgate expects on the reply to a push
// request. sipgate documents application/xml and no charset parameter; the
// XML declaration written by Marshal states UTF-8.
const ContentType = "application/xml"

// header is the XML declaration Marshal writes before the Response element.
// It matches sipgate's documented examples.
const header = `<?xml version="1.0" encoding="UTF-8"?>`

// Limits enforced by Validate. MaxDialNumbers is documented by sipgate; the
// other two are callstate's own sanity bounds, because sipgate documents only
// a lower bound for them.
const (
	// MaxDialNumbers is the most targets a Dial may name. sipgate documents
	// that incoming calls can be redirected to up to 5 targets.
	MaxDialNumbers = 5

	// MaxGatherDigits is the largest Gather.MaxDigits Validate accepts.
	MaxGatherDigits = 32

	// MaxGatherTimeout is the longest Gather.Timeout Validate accepts. The
	// call waits for the whole timeout, so a long one delays the caller.
	MaxGatherTimeout = time.Minute
)

// Response is the document that answers a sipgate.io newCall or dtmf push.
//
// The zero value is valid and marshals to an empty Response element, which
// lets the call proceed as it would have without sipgate.io.
type Response struct {
	// OnAnswer, if set, is the absolute http or https URL sipgate posts the
	// answer event to when the call is answered. sipgate discards the reply
	// to that request.
	OnAnswer string

	// OnHangup, if set, is the absolute http or https URL sipgate posts the
	// hangup event to when the call ends for whatever reason. sipgate
	// discards the reply to that request.
	OnHangup string

	// Action, if set, tells sipgate what to do with the call. A Response
	// carries at most one action; sipgate's documentation and its client
	// library only ever send one. It is one of Dial, Play, Gather, Reject
	// and Hangup, as a value or a non-nil pointer.
	Action Action
}

// Action is one of the actions a Response can carry: Dial, Play, Gather,
// Reject or Hangup. The interface is sealed; other packages cannot implement
// it.
type Action interface {
	// validate reports the first problem with the action; field is the
	// path of the action in the Response, used in FieldError.Field.
	validate(field string) error
	// fill sets the action's element on x.
	fill(x *xmlResponse)
}

// Dial redirects the call to up to MaxDialNumbers external numbers, which
// ring in parallel, or to the voicemail of the called user. Call charges
// apply to external numbers.
//
// Exactly one of Numbers and Voicemail must be set. Validate returns
// ErrDialWithoutTarget when neither is, ErrDialTargetConflict when both are,
// ErrTooManyNumbers above MaxDialNumbers and ErrInvalidNumber for a number
// that is not in E.164 format.
type Dial struct {
	// Numbers are the targets in E.164 format, for example "4915799912345"
	// or "+4915799912345": 3 to 15 digits, the first not 0, optionally
	// after a "+". sipgate documents up to 5 targets for incoming calls;
	// the answer event names the one that answered in answeringNumber.
	Numbers []string

	// Voicemail sends the call to the voicemail instead of Numbers. The
	// voicemail feature has to be booked in the sipgate account.
	Voicemail bool

	// CallerID, if set, replaces the number shown to the called party. It
	// must be in E.164 format like Numbers and applies to Numbers only.
	// Without it sipgate uses the account settings.
	CallerID string

	// Anonymous suppresses the caller's number when true; it applies to
	// Numbers only. When false the attribute is left out and sipgate uses
	// the account or phone settings.
	Anonymous bool
}

// Play plays a sound file to the caller. Afterwards the call is delivered as
// it would have been without the sound file.
//
// Validate returns ErrInvalidURL when URL is not an absolute http or https
// URL.
type Play struct {
	// URL is the absolute http or https URL of the sound file. sipgate
	// requires a WAV file with 16-bit PCM samples, mono, at a sampling rate
	// of 8 kHz; other files are not played. Validate cannot check the file.
	URL string
}

// Gather collects the digits a caller enters with the telephone keypad
// (DTMF) and posts them to OnData as a dtmf event, whose reply may carry the
// next action. The call is not put through while sipgate waits for digits.
//
// Validate returns ErrGatherWithoutOnData when OnData is empty,
// ErrInvalidURL when OnData or Play.URL is not an absolute http or https
// URL, ErrInvalidMaxDigits when MaxDigits is outside 1..MaxGatherDigits and
// ErrInvalidTimeout when Timeout is negative, not a whole number of
// milliseconds or longer than MaxGatherTimeout.
type Gather struct {
	// OnData is the absolute http or https URL the dtmf event is posted
	// to. sipgate requires it.
	OnData string

	// MaxDigits is the number of digits after which sipgate stops
	// collecting, at least 1. sipgate's own default is 1, but this package
	// always writes the attribute, so it must be set.
	MaxDigits int

	// Timeout is how long sipgate waits for input, sent in milliseconds.
	// It starts after Play has finished. Zero leaves the attribute out and
	// sipgate waits its default of 2000 ms.
	Timeout time.Duration

	// Play, if set, is played while waiting; the first digit entered stops
	// it. sipgate allows only Play inside Gather.
	Play *Play
}

// RejectReason is how a rejected call is signalled to the caller.
type RejectReason string

// Reject reasons documented by sipgate.
const (
	// RejectRejected blocks the call; it is sipgate's default.
	RejectRejected RejectReason = "rejected"
	// RejectBusy pretends to be busy.
	RejectBusy RejectReason = "busy"
)

// Reject refuses the call before it is answered.
//
// Validate returns ErrInvalidRejectReason when Reason is neither empty nor
// one of RejectRejected and RejectBusy.
type Reject struct {
	// Reason is RejectRejected or RejectBusy. Empty leaves the attribute
	// out, and sipgate uses "rejected".
	Reason RejectReason
}

// Hangup hangs up the call. It has no fields and is always valid.
type Hangup struct{}

// The structs below are the wire format. Tags carry sipgate's spelling.

type xmlResponse struct {
	XMLName  xml.Name   `xml:"Response"`
	OnAnswer string     `xml:"onAnswer,attr,omitempty"`
	OnHangup string     `xml:"onHangup,attr,omitempty"`
	Dial     *xmlDial   `xml:"Dial"`
	Play     *xmlPlay   `xml:"Play"`
	Gather   *xmlGather `xml:"Gather"`
	Reject   *xmlReject `xml:"Reject"`
	Hangup   *xmlEmpty  `xml:"Hangup"`
}

type xmlDial struct {
	CallerID  string    `xml:"callerId,attr,omitempty"`
	Anonymous string    `xml:"anonymous,attr,omitempty"`
	Numbers   []string  `xml:"Number"`
	Voicemail *xmlEmpty `xml:"Voicemail"`
}

type xmlPlay struct {
	URL string `xml:"Url"`
}

type xmlGather struct {
	OnData    string   `xml:"onData,attr"`
	MaxDigits int      `xml:"maxDigits,attr"`
	Timeout   int64    `xml:"timeout,attr,omitempty"`
	Play      *xmlPlay `xml:"Play"`
}

type xmlReject struct {
	Reason RejectReason `xml:"reason,attr,omitempty"`
}

type xmlEmpty struct{}

func (d Dial) fill(x *xmlResponse) {
	xd := &xmlDial{CallerID: d.CallerID, Numbers: d.Numbers}
	if d.Anonymous {
		xd.Anonymous = "true"
	}
	if d.Voicemail {
		xd.Voicemail = &xmlEmpty{}
	}
	x.Dial = xd
}

func (p Play) fill(x *xmlResponse) { x.Play = &xmlPlay{URL: p.URL} }

func (g Gather) fill(x *xmlResponse) {
	xg := &xmlGather{
		OnData:    g.OnData,
		MaxDigits: g.MaxDigits,
		Timeout:   g.Timeout.Milliseconds(),
	}
	if g.Play != nil {
		xg.Play = &xmlPlay{URL: g.Play.URL}
	}
	x.Gather = xg
}

func (r Reject) fill(x *xmlResponse) { x.Reject = &xmlReject{Reason: r.Reason} }

func (Hangup) fill(x *xmlResponse) { x.Hangup = &xmlEmpty{} }

// wire validates r and returns its wire form.
func (r Response) wire() (*xmlResponse, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	x := &xmlResponse{OnAnswer: r.OnAnswer, OnHangup: r.OnHangup}
	if a := deref(r.Action); a != nil {
		a.fill(x)
	}
	return x, nil
}

// Marshal validates r and returns the XML document sipgate expects: the XML
// declaration followed by the Response element, without indentation or a
// trailing newline. Serve it with ContentType.
//
// Marshal returns the error of Validate, which wraps ErrInvalid, when r is
// invalid; any other error comes from encoding/xml and does not wrap
// ErrInvalid.
func (r Response) Marshal() ([]byte, error) {
	x, err := r.wire()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(512)
	buf.WriteString(header)
	if err := xml.NewEncoder(&buf).Encode(x); err != nil {
		return nil, fmt.Errorf("xmlresponse: encode: %w", err)
	}
	return buf.Bytes(), nil
}

// MarshalXML implements xml.Marshaler so that a Response embedded in another
// document, or passed to xml.Marshal, is written in sipgate's format rather
// than with Go field names. The element is always named Response; the name
// in start is ignored. It returns the error of Validate when r is invalid.
func (r Response) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	x, err := r.wire()
	if err != nil {
		return err
	}
	return e.Encode(x)
}
