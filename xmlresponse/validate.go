package xmlresponse

import (
	"errors"
	"net/url"
	"strconv"
	"time"
)

// ErrInvalid is wrapped by every error Validate returns, so that a caller can
// tell an invalid Response from a failure to write it:
// errors.Is(err, ErrInvalid). The sentinels below say what is wrong; the
// FieldError carrying them says where.
var ErrInvalid = errors.New("invalid sipgate response")

// Sentinels for the problems Validate finds. Each comes wrapped in a
// *FieldError together with ErrInvalid.
var (
	// ErrInvalidURL means a URL is not an absolute http or https URL with a
	// host, or contains characters outside printable ASCII.
	ErrInvalidURL = errors.New("not an absolute http or https URL")

	// ErrInvalidAction means Response.Action is a nil pointer.
	ErrInvalidAction = errors.New("nil action")

	// ErrDialWithoutTarget means a Dial has neither Numbers nor Voicemail.
	ErrDialWithoutTarget = errors.New("neither Numbers nor Voicemail set")

	// ErrDialTargetConflict means a Dial sets Voicemail together with
	// Numbers, or together with CallerID or Anonymous, which apply to
	// Numbers only.
	ErrDialTargetConflict = errors.New("cannot be combined with Voicemail")

	// ErrTooManyNumbers means a Dial names more than MaxDialNumbers
	// numbers.
	ErrTooManyNumbers = errors.New("more than " + strconv.Itoa(MaxDialNumbers) + " numbers")

	// ErrInvalidNumber means a number or caller ID is not in E.164 format:
	// 3 to 15 digits, the first not 0, optionally after a "+".
	ErrInvalidNumber = errors.New("not an E.164 number (3 to 15 digits, first not 0, optional leading +)")

	// ErrGatherWithoutOnData means a Gather has no OnData URL.
	ErrGatherWithoutOnData = errors.New("missing; sipgate requires it")

	// ErrInvalidMaxDigits means Gather.MaxDigits is outside
	// 1..MaxGatherDigits.
	ErrInvalidMaxDigits = errors.New("must be between 1 and " + strconv.Itoa(MaxGatherDigits))

	// ErrInvalidTimeout means Gather.Timeout is negative, not a whole
	// number of milliseconds, or longer than MaxGatherTimeout.
	ErrInvalidTimeout = errors.New("must be 0 or a whole number of milliseconds from 1ms to " + MaxGatherTimeout.String())

	// ErrInvalidRejectReason means Reject.Reason is neither empty nor one
	// of RejectRejected and RejectBusy.
	ErrInvalidRejectReason = errors.New(`must be empty, "rejected" or "busy"`)
)

// FieldError reports which field of a Response is invalid and why. Values
// are never included, because URLs may carry credentials.
type FieldError struct {
	// Field is the path of the field in the Response, for example
	// "OnAnswer", "Dial.Numbers[2]" or "Gather.Play.URL".
	Field string
	// Err is one of the sentinels of this package, such as
	// ErrInvalidNumber.
	Err error
}

// Error returns "xmlresponse: " followed by the field and the reason.
func (e *FieldError) Error() string {
	return "xmlresponse: " + e.Field + ": " + e.Err.Error()
}

// Unwrap returns Err and ErrInvalid, so that errors.Is matches both.
func (e *FieldError) Unwrap() []error { return []error{e.Err, ErrInvalid} }

func fieldErr(field string, err error) error { return &FieldError{Field: field, Err: err} }

// Validate reports the first problem with r, checking every field sipgate
// constrains. The error is a *FieldError naming the field; it wraps
// ErrInvalid and the sentinel for the problem (ErrInvalidURL,
// ErrInvalidAction, ErrDialWithoutTarget, ErrDialTargetConflict,
// ErrTooManyNumbers, ErrInvalidNumber, ErrGatherWithoutOnData,
// ErrInvalidMaxDigits, ErrInvalidTimeout or ErrInvalidRejectReason).
// Validate returns nil for a valid Response.
func (r Response) Validate() error {
	if r.OnAnswer != "" {
		if err := checkURL("OnAnswer", r.OnAnswer); err != nil {
			return err
		}
	}
	if r.OnHangup != "" {
		if err := checkURL("OnHangup", r.OnHangup); err != nil {
			return err
		}
	}
	if r.Action == nil {
		return nil
	}
	a := deref(r.Action)
	if a == nil {
		return fieldErr("Action", ErrInvalidAction)
	}
	return a.validate(actionName(a))
}

// deref returns the action a pointer action points to, nil for a nil
// pointer, and any other action unchanged.
func deref(a Action) Action {
	switch p := a.(type) {
	case *Dial:
		if p != nil {
			return *p
		}
	case *Play:
		if p != nil {
			return *p
		}
	case *Gather:
		if p != nil {
			return *p
		}
	case *Reject:
		if p != nil {
			return *p
		}
	case *Hangup:
		if p != nil {
			return *p
		}
	default:
		return a
	}
	return nil
}

// actionName returns the name of a dereferenced action, the root of its
// field paths.
func actionName(a Action) string {
	switch a.(type) {
	case Dial:
		return "Dial"
	case Play:
		return "Play"
	case Gather:
		return "Gather"
	case Reject:
		return "Reject"
	default:
		return "Hangup"
	}
}

func (d Dial) validate(field string) error {
	switch {
	case len(d.Numbers) == 0 && !d.Voicemail:
		return fieldErr(field, ErrDialWithoutTarget)
	case len(d.Numbers) > 0 && d.Voicemail:
		return fieldErr(field+".Numbers", ErrDialTargetConflict)
	case d.Voicemail && d.CallerID != "":
		return fieldErr(field+".CallerID", ErrDialTargetConflict)
	case d.Voicemail && d.Anonymous:
		return fieldErr(field+".Anonymous", ErrDialTargetConflict)
	case len(d.Numbers) > MaxDialNumbers:
		return fieldErr(field+".Numbers", ErrTooManyNumbers)
	}
	for i, n := range d.Numbers {
		if !isE164(n) {
			return fieldErr(field+".Numbers["+strconv.Itoa(i)+"]", ErrInvalidNumber)
		}
	}
	if d.CallerID != "" && !isE164(d.CallerID) {
		return fieldErr(field+".CallerID", ErrInvalidNumber)
	}
	return nil
}

func (p Play) validate(field string) error { return checkURL(field+".URL", p.URL) }

func (g Gather) validate(field string) error {
	if g.OnData == "" {
		return fieldErr(field+".OnData", ErrGatherWithoutOnData)
	}
	if err := checkURL(field+".OnData", g.OnData); err != nil {
		return err
	}
	if g.MaxDigits < 1 || g.MaxDigits > MaxGatherDigits {
		return fieldErr(field+".MaxDigits", ErrInvalidMaxDigits)
	}
	if g.Timeout < 0 || g.Timeout%time.Millisecond != 0 || g.Timeout > MaxGatherTimeout {
		return fieldErr(field+".Timeout", ErrInvalidTimeout)
	}
	if g.Play != nil {
		return g.Play.validate(field + ".Play")
	}
	return nil
}

func (r Reject) validate(field string) error {
	switch r.Reason {
	case "", RejectRejected, RejectBusy:
		return nil
	}
	return fieldErr(field+".Reason", ErrInvalidRejectReason)
}

func (Hangup) validate(string) error { return nil }

// checkURL reports whether s is an absolute http or https URL with a host.
// Only printable ASCII without spaces is accepted: anything else has to be
// percent-encoded, which also keeps control characters such as CR and LF
// out of the document.
func checkURL(field, s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return fieldErr(field, ErrInvalidURL)
		}
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return fieldErr(field, ErrInvalidURL)
	}
	return nil
}

// isE164 reports whether s is an E.164 number as sipgate documents it:
// digits only, optionally after a "+", 3 to 15 digits, the first not 0
// (no country code starts with 0).
func isE164(s string) bool {
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	if len(s) < 3 || len(s) > 15 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
