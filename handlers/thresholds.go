package handlers

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BoardOptions configure the board's colours and sound.
type BoardOptions struct {
	// Thresholds turn the board's numbers amber and red; nil:
	// DefaultThresholds.
	Thresholds Thresholds
	// Sound lets a wall board (/?wall) play a tone when a number turns
	// red, once someone has clicked on the page (browsers ask for that).
	Sound bool
	// RingingStale: a ringing sipgate call with no news this long is
	// shown as "no news since hh:mm", greyed, and not counted as waiting
	// (callstate.Call.NoNews); 0: never.
	RingingStale time.Duration
}

// Threshold is where a number of the board turns amber (Warn) and red
// (Bad). For a number where more is better (service_level), Warn is above
// Bad and the number turns amber below Warn.
type Threshold struct {
	Warn float64 `json:"warn"`
	Bad  float64 `json:"bad"`
}

// Thresholds are the board's thresholds by name: waiting (callers waiting
// now), longest_wait (seconds), service_level (0 to 1, lower is worse),
// abandoned (today's abandons) and to_call_back (calls to return, open).
type Thresholds map[string]Threshold

// thresholdNames are the numbers Thresholds may name, and whether more is
// better.
var thresholdNames = map[string]bool{
	"waiting": false, "longest_wait": false, "service_level": true, "abandoned": false, "to_call_back": false,
}

// DefaultThresholds is BOARD_THRESHOLDS's default.
const DefaultThresholds = "waiting=3:6,longest_wait=60s:120s,service_level=0.9:0.8"

// ErrBadThresholds is wrapped by ParseThresholds' errors.
var ErrBadThresholds = errors.New("bad board thresholds")

// ParseThresholds reads thresholds written as name=warn:bad, separated by
// commas: "waiting=3:6,longest_wait=60s:120s,service_level=0.9:0.8".
// longest_wait takes durations (60s, 2m) or seconds; service_level
// fractions from 0 to 1, warn above bad; the others counts, warn below
// bad. An empty string is no thresholds. It returns an error wrapping
// ErrBadThresholds that names what is wrong.
func ParseThresholds(s string) (Thresholds, error) {
	out := Thresholds{}
	s = strings.TrimSpace(s)
	if s == "" {
		return out, nil
	}
	for part := range strings.SplitSeq(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		name = strings.TrimSpace(name)
		moreIsBetter, known := thresholdNames[name]
		if !ok || !known {
			names := make([]string, 0, len(thresholdNames))
			for n := range thresholdNames {
				names = append(names, n)
			}
			slices.Sort(names)
			return nil, fmt.Errorf("%w: %q: want name=warn:bad with name one of %s", ErrBadThresholds, part, strings.Join(names, ", "))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%w: %s given twice", ErrBadThresholds, name)
		}
		ws, bs, ok := strings.Cut(val, ":")
		if !ok {
			return nil, fmt.Errorf("%w: %s=%q: want warn:bad", ErrBadThresholds, name, val)
		}
		w, err := thresholdValue(name, ws)
		if err != nil {
			return nil, err
		}
		b, err := thresholdValue(name, bs)
		if err != nil {
			return nil, err
		}
		switch {
		case moreIsBetter && w < b:
			return nil, fmt.Errorf("%w: %s=%s: amber (%g) must not be below red (%g), lower is worse", ErrBadThresholds, name, val, w, b)
		case !moreIsBetter && w > b:
			return nil, fmt.Errorf("%w: %s=%s: amber (%g) must not be above red (%g)", ErrBadThresholds, name, val, w, b)
		}
		out[name] = Threshold{Warn: w, Bad: b}
	}
	return out, nil
}

func thresholdValue(name, s string) (float64, error) {
	s = strings.TrimSpace(s)
	var v float64
	var err error
	switch name {
	case "longest_wait":
		var d time.Duration
		if d, err = time.ParseDuration(s); err == nil {
			v = d.Seconds()
		} else if n, err2 := strconv.ParseUint(s, 10, 32); err2 == nil {
			v, err = float64(n), nil
		}
	case "service_level":
		v, err = strconv.ParseFloat(s, 64)
		if err == nil && !(v >= 0 && v <= 1) { // NaN too
			err = errors.New("out of range")
		}
	default:
		var n uint64
		n, err = strconv.ParseUint(s, 10, 32)
		v = float64(n)
	}
	if err != nil || v < 0 {
		want := map[string]string{"longest_wait": "a duration such as 60s or 2m", "service_level": "a fraction from 0 to 1"}[name]
		if want == "" {
			want = "a whole number"
		}
		return 0, fmt.Errorf("%w: %s: %q is not %s", ErrBadThresholds, name, s, want)
	}
	return v, nil
}

// thresholdsJSON is how /api/today hands the board its thresholds and
// sound setting.
type thresholdsJSON struct {
	Levels map[string]Threshold `json:"levels"`
	Sound  bool                 `json:"sound"`
}

func (o BoardOptions) thresholdsJSON() thresholdsJSON {
	t := o.Thresholds
	if t == nil {
		t, _ = ParseThresholds(DefaultThresholds)
	}
	return thresholdsJSON{Levels: t, Sound: o.Sound}
}
