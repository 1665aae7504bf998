package callstate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ReplayWindow tells a repeated request from a caller pressing the same
// key again. sipgate sends no event id: a dtmf event says only which call
// and which digits, so a request delivered twice (a retry by a proxy or a
// tunnel, a client that timed out and sent it again) is the same bytes as
// a caller who presses 5 in one menu and 5 again in the next. Copies of
// one request arrive within moments of each other; two menus are at least
// a prompt apart (sipgate's Gather plays or waits before it reports the
// digits). So a dtmf event whose bytes equal those of an earlier dtmf
// event of the call received less than ReplayWindow before it is a
// repeat, and its digits are not counted again; the journal keeps every
// copy.
const ReplayWindow = 2 * time.Second

// Press is one dtmf event as a call keeps it.
type Press struct {
	At     time.Time // when the accepting instance received it (EventTime)
	Digest string    // digest of the event's bytes: copies of one request share it
	Digits string    // the digits it reported
}

// Key is the press's identity and sort key, as the store keeps it: the
// receive time in microseconds (17 digits, so that keys sort by time),
// the digest and the digits, separated by colons. Neither digest nor
// digits contain a colon (Event.Validate).
func (p Press) Key() string {
	return fmt.Sprintf("%017d:%s:%s", p.At.UnixMicro(), p.Digest, p.Digits)
}

// ParsePress reads a key that Press.Key wrote.
func ParsePress(key string) (Press, error) {
	t, rest, ok1 := strings.Cut(key, ":")
	digest, digits, ok2 := strings.Cut(rest, ":")
	us, err := strconv.ParseInt(t, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return Press{}, fmt.Errorf("callstate: bad DTMF press %q", key)
	}
	return Press{At: time.UnixMicro(us).UTC(), Digest: digest, Digits: digits}, nil
}

// AddPress returns presses with p added in key order; a press already
// there (same key) is not added twice.
func AddPress(presses []Press, p Press) []Press {
	k := p.Key()
	i, found := slices.BinarySearchFunc(presses, k, func(e Press, k string) int { return strings.Compare(e.Key(), k) })
	if found {
		return presses
	}
	return slices.Insert(slices.Clip(presses), i, p)
}

// Digits returns the digits of presses, which are in key order, leaving
// out repeats: a press whose digest equals that of the previous press with
// that digest, less than ReplayWindow before it, is a repeat.
func Digits(presses []Press) string {
	var b strings.Builder
	last := make(map[string]time.Time)
	for _, p := range presses {
		prev, seen := last[p.Digest]
		last[p.Digest] = p.At
		if seen && p.Digest != "" && p.At.Sub(prev) < ReplayWindow {
			continue
		}
		b.WriteString(p.Digits)
	}
	return b.String()
}
