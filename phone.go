package callstate

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/nyaruka/phonenumbers"
)

// Numbers are kept as sipgate sends them: E.164 digits without the "+"
// (4916012345678), or a short internal number (an extension) as it is. A
// NumberPlan turns what people write into that form, and that form into
// what people read (+49 160 12345678), knowing the region whose national
// numbers (0160 12345678) are meant when no country is given.
type NumberPlan struct {
	region string
}

// DefaultRegion is the region a NumberPlan assumes when none is given.
const DefaultRegion = "DE"

// Errors returned by NewNumberPlan and NumberPlan.Normalize.
var (
	ErrUnknownRegion = errors.New("unknown region")
	ErrBadNumber     = errors.New("not a phone number")
)

// maxExtensionDigits is the longest number taken for an internal
// extension rather than a phone number.
const maxExtensionDigits = 6

// NewNumberPlan returns the plan for region, an ISO 3166 code such as DE
// (any case; empty means DefaultRegion). It returns an error wrapping
// ErrUnknownRegion for a region without a numbering plan.
func NewNumberPlan(region string) (NumberPlan, error) {
	region = strings.ToUpper(strings.TrimSpace(region))
	if region == "" {
		region = DefaultRegion
	}
	if !phonenumbers.GetSupportedRegions()[region] {
		return NumberPlan{}, fmt.Errorf("%w %q: want a two-letter country code such as DE, AT, CH, GB", ErrUnknownRegion, region)
	}
	return NumberPlan{region: region}, nil
}

// Region returns the plan's region.
func (p NumberPlan) Region() string {
	if p.region == "" {
		return DefaultRegion
	}
	return p.region
}

// Normalize returns the stored form of a number as a person writes it:
// "+49 160 1234567", "0049 (160) 123-4567", "0160 1234567" (national, in
// the plan's region), "tel:+49..." all give 491601234567; a short internal
// number (up to six digits, such as 21) stays as it is. It returns an
// error wrapping ErrBadNumber for anything else.
func (p NumberPlan) Normalize(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "tel:"), "TEL:")
	var b strings.Builder
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && b.Len() == 0 && i == strings.IndexRune(s, '+'):
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '/' || r == '(' || r == ')' || r == '.' || r == '\u00a0':
		default:
			return "", fmt.Errorf("%w: %q has %q in it", ErrBadNumber, raw, r)
		}
	}
	d := b.String()
	digits := strings.TrimPrefix(d, "+")
	switch {
	case digits == "":
		return "", fmt.Errorf("%w: %q has no digits", ErrBadNumber, raw)
	case d[0] != '+' && d[0] != '0' && len(digits) <= maxExtensionDigits:
		return digits, nil
	}
	n, err := phonenumbers.Parse(d, p.Region())
	if err != nil || !phonenumbers.IsPossibleNumber(n) {
		return "", fmt.Errorf("%w: %q is no phone number in %s or abroad", ErrBadNumber, raw, p.Region())
	}
	return strings.TrimPrefix(phonenumbers.Format(n, phonenumbers.E164), "+"), nil
}

// Key returns the stored form of a number as a call carries it, for
// looking it up in the phonebook: sipgate's E.164 digits as they are; a
// SIP peer's +49..., 0049... or national 030... turned into them. What is
// not a number (anonymous, a SIP URI's user name) gives "".
func (p NumberPlan) Key(number string) string {
	if number == "" || strings.IndexFunc(number, func(r rune) bool { return !unicode.IsDigit(r) && r != '+' }) >= 0 {
		return ""
	}
	if number[0] != '+' && number[0] != '0' {
		return number // sipgate's form already, or an extension
	}
	k, err := p.Normalize(number)
	if err != nil {
		return ""
	}
	return k
}

// Format returns number for reading: +49 160 12345678 for a phone number
// in any of the forms Key takes, "withheld" for an anonymous caller, and
// anything else (an extension, a name) as it is.
func (p NumberPlan) Format(number string) string {
	if strings.EqualFold(number, "anonymous") {
		return "withheld"
	}
	k := p.Key(number)
	if k == "" || len(k) <= maxExtensionDigits {
		return number
	}
	n, err := phonenumbers.Parse("+"+k, p.Region())
	if err != nil {
		return number
	}
	return phonenumbers.Format(n, phonenumbers.INTERNATIONAL)
}

// regionZones names the time zone of regions that share their country
// code with others (+44, +39), whose zone the code alone does not tell.
var regionZones = map[string]string{
	"GB": "Europe/London", "GG": "Europe/Guernsey", "JE": "Europe/Jersey", "IM": "Europe/Isle_of_Man",
	"IE": "Europe/Dublin", "IT": "Europe/Rome", "VA": "Europe/Vatican",
}

// RegionTimeZone returns the IANA time zone of region (ISO 3166, such as
// DE) when the region has a single one: DE gives Europe/Berlin. ok is
// false for a region of several zones (US, ES with the Canaries, RU) or
// one it does not know. It reads libphonenumber's time zone data, never
// the host's.
func RegionTimeZone(region string) (tz string, ok bool) {
	region = strings.ToUpper(strings.TrimSpace(region))
	if tz, ok := regionZones[region]; ok {
		return tz, true
	}
	cc := phonenumbers.GetCountryCodeForRegion(region)
	if cc == 0 || len(phonenumbers.GetRegionCodesForCountryCode(cc)) != 1 {
		return "", false
	}
	zones, err := phonenumbers.GetTimezonesForPrefix(strconv.Itoa(cc))
	if err != nil || len(zones) != 1 || zones[0] == phonenumbers.UNKNOWN_TIMEZONE {
		return "", false
	}
	return zones[0], true
}
