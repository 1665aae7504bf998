package routing

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Window is a weekly time window: some days of the week, from one time of
// day to another, in the rules' time zone.
type Window struct {
	Days     [7]bool // by time.Weekday: Days[time.Monday]
	From, To int     // minutes after midnight; To > From; To may be 24*60
	// Overnight windows (22:00-06:00) are kept as two: the evening on the
	// days given, the morning on the days after.
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// ParseWindows reads windows as a rules file writes them: days (Mon-Fri,
// Sat,Sun, Mon) and times (08:00-18:00), several windows separated by
// commas: "Mon-Fri 08:00-18:00, Sat 09:00-13:00". Days without a time
// mean the whole day; a time without days means every day; a time right
// after another one keeps its days ("Mon-Fri 08:00-12:00, 13:00-17:00").
// A window whose end is not after its start runs over midnight into the
// next day (22:00-06:00). It returns an error saying what it did not
// understand.
func ParseWindows(s string) ([]Window, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(fields) == 0 {
		return nil, errors.New("no days or times")
	}
	var (
		out      []Window
		days     [7]bool
		haveDays bool // days given and not yet used by a time
		lastDays [7]bool
		haveLast bool
	)
	all := [7]bool{true, true, true, true, true, true, true}
	for _, f := range fields {
		if strings.ContainsRune(f, ':') {
			from, to, err := parseTimes(f)
			if err != nil {
				return nil, err
			}
			d := all
			switch {
			case haveDays:
				d = days
			case haveLast:
				d = lastDays
			}
			out = append(out, windowsOf(d, from, to)...)
			lastDays, haveLast = d, true
			days, haveDays = [7]bool{}, false
			continue
		}
		ds, err := parseDays(f)
		if err != nil {
			return nil, err
		}
		if !haveDays {
			haveLast = false
		}
		for i, on := range ds {
			days[i] = days[i] || on
		}
		haveDays = true
	}
	if haveDays {
		out = append(out, Window{Days: days, From: 0, To: 24 * 60})
	}
	return out, nil
}

// windowsOf is one window, or two for one over midnight.
func windowsOf(days [7]bool, from, to int) []Window {
	if to > from {
		return []Window{{Days: days, From: from, To: to}}
	}
	var next [7]bool
	for i, on := range days {
		next[(i+1)%7] = on
	}
	out := []Window{{Days: days, From: from, To: 24 * 60}}
	if to > 0 {
		out = append(out, Window{Days: next, From: 0, To: to})
	}
	return out
}

func parseDays(f string) ([7]bool, error) {
	var d [7]bool
	a, b, ranged := strings.Cut(strings.ToLower(f), "-")
	first, ok := dayNames[a]
	if !ok {
		return d, fmt.Errorf("%q is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun) nor a time (08:00-18:00)", f)
	}
	last := first
	if ranged {
		if last, ok = dayNames[b]; !ok {
			return d, fmt.Errorf("%q: %q is not a day (Mon ... Sun)", f, b)
		}
	}
	for w := first; ; w = (w + 1) % 7 {
		d[w] = true
		if w == last {
			break
		}
	}
	return d, nil
}

func parseTimes(f string) (from, to int, err error) {
	a, b, ok := strings.Cut(f, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%q: want a time range such as 08:00-18:00", f)
	}
	if from, err = parseClock(a, false); err != nil {
		return 0, 0, fmt.Errorf("%q: %w", f, err)
	}
	if to, err = parseClock(b, true); err != nil {
		return 0, 0, fmt.Errorf("%q: %w", f, err)
	}
	if from == to {
		return 0, 0, fmt.Errorf("%q: starts and ends at the same time", f)
	}
	return from, to, nil
}

// parseClock reads HH:MM (or H:MM) into minutes after midnight; 24:00 only
// as an end.
func parseClock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(m) != 2 || len(h) < 1 || len(h) > 2 {
		return 0, fmt.Errorf("%q is not a time of day (HH:MM)", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !end)) {
		return 0, fmt.Errorf("%q is not a time of day (00:00 to 23:59, or 24:00 as an end)", s)
	}
	return hh*60 + mm, nil
}

// contains reports whether the local time t falls in w.
func (w Window) contains(t time.Time) bool {
	if !w.Days[t.Weekday()] {
		return false
	}
	m := t.Hour()*60 + t.Minute()
	return m >= w.From && m < w.To
}

// String writes w back as ParseWindows reads it.
func (w Window) String() string {
	var days []string
	names := [...]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	for i, on := range w.Days {
		if on {
			days = append(days, names[i])
		}
	}
	return fmt.Sprintf("%s %02d:%02d-%02d:%02d", strings.Join(days, ","), w.From/60, w.From%60, w.To/60, w.To%60)
}
