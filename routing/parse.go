package routing

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/xmlresponse"
)

// Limits of a rules file.
const (
	MaxFileBytes   = 1 << 20 // the file
	MaxRules       = 10_000  // rules, menus' included
	MaxRuleName    = 100     // characters of a rule's name
	MaxMenuName    = 64      // characters of a menu's name
	DefaultTimeout = 5 * time.Second
)

// ErrInvalid is wrapped by every error of Parse: the file is not a valid
// rules file.
var ErrInvalid = errors.New("invalid routing rules")

// Problem is one thing wrong with a rules file, and where.
type Problem struct {
	Line, Col int
	Msg       string
}

func (p *Problem) Error() string {
	if p.Col > 0 {
		return fmt.Sprintf("line %d:%d: %s", p.Line, p.Col, p.Msg)
	}
	return fmt.Sprintf("line %d: %s", p.Line, p.Msg)
}

// Error is what Parse returns for a file that is not valid: every problem
// found, in the order of the file. It wraps ErrInvalid.
type Error struct {
	Problems []*Problem
}

// Error lists every problem, one a line.
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Parse reads a rules file (see docs/routing.md). Numbers in it are read
// with plan (national numbers are of its region). It returns an *Error
// listing every problem, each with its line, for a file that is not
// valid; nothing of such a file is used.
func Parse(data []byte, plan callstate.NumberPlan) (*Rules, error) {
	if len(data) > MaxFileBytes {
		return nil, &Error{Problems: []*Problem{{Line: 1, Msg: fmt.Sprintf("file larger than %d bytes", MaxFileBytes)}}}
	}
	if !utf8.Valid(data) {
		return nil, &Error{Problems: []*Problem{{Line: 1, Msg: "file is not UTF-8 text"}}}
	}
	root, err := parseYAML(data)
	if err != nil {
		var p *Problem
		if errors.As(err, &p) {
			return nil, &Error{Problems: []*Problem{p}}
		}
		return nil, &Error{Problems: []*Problem{{Line: 1, Msg: err.Error()}}}
	}
	ps := &parser{plan: plan, names: map[string]int{}}
	r := ps.file(root)
	if len(ps.problems) > 0 {
		slices.SortStableFunc(ps.problems, func(a, b *Problem) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Col - b.Col
		})
		return nil, &Error{Problems: ps.problems}
	}
	return r, nil
}

type parser struct {
	plan     callstate.NumberPlan
	problems []*Problem
	names    map[string]int // rule name -> line
	gathers  []gatherRef
	windows  *node // the first inside/outside, which needs a time zone
	count    int
}

type gatherRef struct {
	menu string
	at   *node
}

func (p *parser) errf(n *node, format string, args ...any) {
	p.problems = append(p.problems, &Problem{Line: n.line, Col: n.col, Msg: fmt.Sprintf(format, args...)})
}

// mapping checks that n is a mapping of only the keys allowed; what names
// it in messages.
func (p *parser) mapping(n *node, what string, allowed ...string) bool {
	if n.kind != kindMap {
		p.errf(n, "%s must be a mapping (key: value), not %s", what, n.kind)
		return false
	}
	for _, k := range n.keys {
		if !slices.Contains(allowed, k.text) {
			p.errf(k, "%s: unknown key %q; known: %s", what, k.text, strings.Join(allowed, ", "))
		}
	}
	return true
}

func (p *parser) file(root *node) *Rules {
	r := &Rules{plan: p.plan, Holidays: map[string]bool{}, Menus: map[string][]Rule{}}
	if root.kind == kindNull {
		p.errf(root, "the file is empty: it needs at least rules:")
		return r
	}
	if !p.mapping(root, "the file", "time_zone", "holidays", "rules", "menus") {
		return r
	}
	if tz := root.get("time_zone"); tz != nil {
		if tz.kind != kindScalar || tz.text == "" {
			p.errf(tz, "time_zone must be a time zone name such as Europe/Berlin")
		} else if loc, err := time.LoadLocation(tz.text); err != nil || strings.EqualFold(tz.text, "local") {
			p.errf(tz, "time_zone %q is not a time zone name such as Europe/Berlin or UTC", tz.text)
		} else {
			r.TimeZone = loc
		}
	}
	if hs := root.get("holidays"); hs != nil && hs.kind != kindNull {
		if hs.kind != kindSeq {
			p.errf(hs, "holidays must be a list of dates: [2026-12-24, 2026-12-25] (or 12-25 for every year)")
		}
		for _, h := range hs.list() {
			d, ok := parseHoliday(h.text)
			if h.kind != kindScalar || !ok {
				p.errf(h, "holiday %q is not a date: want 2026-12-24, or 12-24 for every year", h.text)
				continue
			}
			r.Holidays[d] = true
		}
	}
	// Menus first, so that a rule's gather can be checked against them.
	if ms := root.get("menus"); ms != nil && ms.kind != kindNull {
		if ms.kind != kindMap {
			p.errf(ms, "menus must be a mapping of menu names to their rules")
		} else {
			for i, k := range ms.keys {
				if !validMenuName(k.text) {
					p.errf(k, "menu name %q: use 1 to %d letters, digits, '-', '_' or '.'", k.text, MaxMenuName)
				}
				r.Menus[k.text] = p.rules(ms.vals[i], "menu "+k.text, true)
			}
		}
	}
	rules := root.get("rules")
	if rules == nil {
		p.errf(root, "rules: is missing")
	} else {
		r.Rules = p.rules(rules, "rules", false)
	}
	for _, g := range p.gathers {
		if _, ok := r.Menus[g.menu]; !ok {
			p.errf(g.at, "gather: menu %q is not defined under menus:", g.menu)
		}
	}
	if p.windows != nil && r.TimeZone == nil {
		p.errf(p.windows, "inside/outside need time_zone: at the top of the file (e.g. time_zone: Europe/Berlin)")
	}
	if p.count > MaxRules {
		p.errf(root, "%d rules: at most %d", p.count, MaxRules)
	}
	return r
}

var menuNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func validMenuName(s string) bool { return menuNameRE.MatchString(s) }

func parseHoliday(s string) (string, bool) {
	if _, err := time.Parse(time.DateOnly, s); err == nil {
		return s, true
	}
	if _, err := time.Parse("2006-01-02", "2000-"+s); err == nil && len(s) == 5 {
		return s, true // every year; 2000 is a leap year, so 02-29 passes
	}
	return "", false
}

func (p *parser) rules(n *node, where string, menu bool) []Rule {
	if n.kind != kindSeq {
		if n.kind == kindNull {
			p.errf(n, "%s: no rules; give a list of rules (- name: ...)", where)
		} else {
			p.errf(n, "%s must be a list of rules (- name: ...), not %s", where, n.kind)
		}
		return nil
	}
	out := make([]Rule, 0, len(n.items))
	for _, it := range n.items {
		p.count++
		out = append(out, p.rule(it, where, menu))
	}
	return out
}

func (p *parser) rule(n *node, where string, menu bool) Rule {
	r := Rule{Line: n.line, When: Match{Direction: callstate.DirectionIn}}
	if menu {
		r.When.Direction = "" // a menu's call is the one that reached it
	}
	if !p.mapping(n, where+": a rule", "name", "when", "then") {
		return r
	}
	name := n.get("name")
	switch {
	case name == nil:
		p.errf(n, "a rule needs a name: (it is recorded with each call it routes)")
	case name.kind != kindScalar || strings.TrimSpace(name.text) == "":
		p.errf(name, "name must be a text")
	case utf8.RuneCountInString(name.text) > MaxRuleName || !isText(name.text):
		p.errf(name, "name must be up to %d characters of text without control characters", MaxRuleName)
	default:
		r.Name = strings.TrimSpace(name.text)
		if first, dup := p.names[strings.ToLower(r.Name)]; dup {
			p.errf(name, "rule name %q is used twice (first on line %d); names must be unique", r.Name, first)
		} else {
			p.names[strings.ToLower(r.Name)] = name.line
		}
	}
	if w := n.get("when"); w != nil && w.kind != kindNull {
		p.when(w, &r.When, menu)
	}
	then := n.get("then")
	if then == nil {
		p.errf(n, "a rule needs then: (what to do with the call)")
	} else {
		r.Then = p.then(then)
	}
	return r
}

func (p *parser) when(n *node, m *Match, menu bool) {
	keys := []string{"direction", "to", "from", "contact", "group", "user", "inside", "outside", "lamp"}
	if menu {
		keys = append(keys, "digits")
	}
	if !p.mapping(n, "when", keys...) {
		return
	}
	for i, k := range n.keys {
		v := n.vals[i]
		switch k.text {
		case "direction":
			switch v.text {
			case "in":
				m.Direction = callstate.DirectionIn
			case "out":
				m.Direction = callstate.DirectionOut
			case "any":
				m.Direction = ""
			default:
				p.errf(v, "direction must be in, out or any (rules without one are for incoming calls)")
			}
		case "to", "from":
			ps := p.patterns(v, k.text)
			if k.text == "to" {
				m.To = ps
			} else {
				m.From = ps
			}
		case "contact":
			m.Contacts = p.texts(v, "contact", true)
		case "group":
			m.Groups = p.texts(v, "group", true)
		case "user":
			m.Users = p.texts(v, "user", true)
		case "inside", "outside":
			ws := p.windowList(v, k.text)
			if k.text == "inside" {
				m.Inside = ws
			} else {
				m.Outside = ws
			}
			if p.windows == nil {
				p.windows = k
			}
		case "lamp":
			m.Lamps = p.lamps(v)
		case "digits":
			m.HasDigits = true
			for _, d := range p.list(v, "digits") {
				if strings.Trim(d.text, "0123456789*#") != "" || len(d.text) > xmlresponse.MaxGatherDigits {
					p.errf(d, "digits %q: use 0-9, * and # (up to %d), or \"\" for none pressed", d.text, xmlresponse.MaxGatherDigits)
					continue
				}
				m.Digits = append(m.Digits, d.text)
			}
		}
	}
}

// list is n's values, each a scalar; an empty list is reported.
func (p *parser) list(n *node, what string) []*node {
	var out []*node
	if n.kind == kindNull || n.kind == kindMap || (n.kind == kindSeq && len(n.items) == 0) {
		p.errf(n, "%s needs a value or a list of values", what)
		return nil
	}
	for _, it := range n.list() {
		if it.kind != kindScalar {
			p.errf(it, "%s: each entry must be a plain value, not %s", what, it.kind)
			continue
		}
		out = append(out, it)
	}
	return out
}

func (p *parser) texts(n *node, what string, lower bool) []string {
	var out []string
	for _, it := range p.list(n, what) {
		s := strings.TrimSpace(it.text)
		if s == "" || !isText(s) {
			p.errf(it, "%s: %q is not a name", what, it.text)
			continue
		}
		if lower {
			s = strings.ToLower(s)
		}
		out = append(out, s)
	}
	return out
}

func (p *parser) patterns(n *node, what string) []Pattern {
	var out []Pattern
	for _, it := range p.list(n, what) {
		pt, err := p.pattern(it.text)
		if err != nil {
			p.errf(it, "%s: %v", what, err)
			continue
		}
		out = append(out, pt)
	}
	return out
}

// pattern reads one number of a rule: anonymous, a number in E.164 or
// national form, or such a prefix ending in *.
func (p *parser) pattern(s string) (Pattern, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "anonymous") {
		return Pattern{Anonymous: true}, nil
	}
	if prefix, ok := strings.CutSuffix(s, "*"); ok {
		d, err := p.prefixDigits(prefix)
		if err != nil {
			return Pattern{}, fmt.Errorf("%q: %w", s, err)
		}
		return Pattern{Digits: d, Prefix: true}, nil
	}
	d, err := p.plan.Normalize(s)
	if err != nil {
		return Pattern{}, fmt.Errorf("%q is not a number (E.164 such as +4930123456, national such as 030 123456, a prefix ending in *, or anonymous)", s)
	}
	return Pattern{Digits: d}, nil
}

// prefixDigits turns the start of a number as people write it into the
// start of its stored form: +49 30..., 0049 30... and (in the plan's
// region) 030... all give 4930...
func (p *parser) prefixDigits(s string) (string, error) {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
		case r == ' ' || r == '-' || r == '/' || r == '(' || r == ')' || r == '.':
		default:
			return "", fmt.Errorf("a prefix has digits only before its *")
		}
	}
	d := b.String()
	switch {
	case d == "":
		return "", errors.New("a prefix needs digits before its * (for any number leave the condition out)")
	case strings.HasPrefix(s, "+"):
	case strings.HasPrefix(d, "00"):
		d = d[2:]
	case strings.HasPrefix(d, "0"):
		cc := phonenumbers.GetCountryCodeForRegion(p.plan.Region())
		d = strconv.Itoa(cc) + d[1:]
	}
	if d == "" || len(d) > 15 {
		return "", errors.New("not the start of a phone number")
	}
	return d, nil
}

func (p *parser) windowList(n *node, what string) []Window {
	var out []Window
	for _, it := range p.list(n, what) {
		ws, err := ParseWindows(it.text)
		if err != nil {
			p.errf(it, "%s: %v", what, err)
			continue
		}
		out = append(out, ws...)
	}
	return out
}

func (p *parser) lamps(n *node) []LampCondition {
	if n.kind != kindMap || len(n.keys) == 0 {
		p.errf(n, "lamp must be a mapping of extensions or users to states, e.g. lamp: { w0: busy, \"100\": [busy, ringing] }")
		return nil
	}
	var out []LampCondition
	for i, k := range n.keys {
		c := LampCondition{Who: strings.TrimSpace(k.text)}
		if c.Who == "" {
			p.errf(k, "lamp: an extension or user is empty")
		}
		for _, s := range p.list(n.vals[i], "lamp "+k.text) {
			st := strings.ToLower(strings.TrimSpace(s.text))
			if !slices.Contains(lampStates, st) {
				p.errf(s, "lamp %s: %q is not a lamp state (%s)", k.text, s.text, strings.Join(lampStates, ", "))
				continue
			}
			c.States = append(c.States, st)
		}
		out = append(out, c)
	}
	return out
}

func (p *parser) then(n *node) Action {
	var a Action
	actions := []string{"dial", "voicemail", "play", "gather", "reject", "hangup"}
	if n.kind == kindNull {
		p.errf(n, "then: needs one action: %s", strings.Join(actions, ", "))
		return a
	}
	if !p.mapping(n, "then", actions...) {
		return a
	}
	if len(n.keys) > 1 {
		p.errf(n.keys[1], "then: one action per rule; this one has %d (%s)", len(n.keys), keyNames(n))
	}
	if len(n.keys) == 0 {
		p.errf(n, "then: needs one action: %s", strings.Join(actions, ", "))
		return a
	}
	k, v := n.keys[0], n.vals[0]
	switch k.text {
	case "dial":
		a.Dial = p.dial(v)
	case "voicemail":
		if p.flag(v, "voicemail") {
			a.Voicemail = true
		}
	case "hangup":
		if p.flag(v, "hangup") {
			a.Hangup = true
		}
	case "play":
		url := v
		if v.kind == kindMap && p.mapping(v, "play", "url") {
			if url = v.get("url"); url == nil {
				p.errf(v, "play: url: is missing")
				return a
			}
		}
		if pl, ok := p.playURL(url, "play"); ok {
			a.Play = pl
		}
	case "reject":
		reason := xmlresponse.RejectRejected
		switch v.text {
		case "busy":
			reason = xmlresponse.RejectBusy
		case "rejected", "true":
		default:
			p.errf(v, "reject must be busy or rejected")
		}
		a.Reject = &xmlresponse.Reject{Reason: reason}
	case "gather":
		a.Gather = p.gather(v)
	}
	return a
}

func keyNames(n *node) string {
	var ks []string
	for _, k := range n.keys {
		ks = append(ks, k.text)
	}
	return strings.Join(ks, ", ")
}

func (p *parser) flag(v *node, what string) bool {
	if v.kind != kindScalar || v.text != "true" {
		p.errf(v, "%s: write %s: true", what, what)
		return false
	}
	return true
}

func (p *parser) playURL(v *node, what string) (*xmlresponse.Play, bool) {
	if v.kind != kindScalar {
		p.errf(v, "%s: want the URL of a sound file", what)
		return nil, false
	}
	pl := xmlresponse.Play{URL: strings.TrimSpace(v.text)}
	if err := (xmlresponse.Response{Action: pl}).Validate(); err != nil {
		p.errf(v, "%s: %q is not an absolute http or https URL (sipgate fetches the WAV file from it)", what, v.text)
		return nil, false
	}
	return &pl, true
}

func (p *parser) dial(v *node) *xmlresponse.Dial {
	d := &xmlresponse.Dial{}
	numbers := v
	if v.kind == kindMap {
		if !p.mapping(v, "dial", "numbers", "caller_id", "anonymous") {
			return nil
		}
		if numbers = v.get("numbers"); numbers == nil {
			p.errf(v, "dial: numbers: is missing")
			return nil
		}
		if c := v.get("caller_id"); c != nil {
			n, err := p.plan.Normalize(c.text)
			if c.kind != kindScalar || err != nil || (xmlresponse.Response{Action: xmlresponse.Dial{Numbers: []string{n}}}).Validate() != nil {
				p.errf(c, "dial: caller_id %q is not a phone number", c.text)
			} else {
				d.CallerID = n
			}
		}
		if an := v.get("anonymous"); an != nil {
			switch an.text {
			case "true":
				d.Anonymous = true
			case "false":
			default:
				p.errf(an, "dial: anonymous must be true or false")
			}
		}
	}
	items := p.list(numbers, "dial")
	if len(items) > xmlresponse.MaxDialNumbers {
		p.errf(numbers, "dial: %d numbers; sipgate rings at most %d", len(items), xmlresponse.MaxDialNumbers)
	}
	for _, it := range items {
		n, err := p.plan.Normalize(it.text)
		if err != nil || len(n) <= 6 || (xmlresponse.Response{Action: xmlresponse.Dial{Numbers: []string{n}}}).Validate() != nil {
			p.errf(it, "dial: %q is not a phone number sipgate can dial (E.164 such as +4930123456, or national)", it.text)
			continue
		}
		d.Numbers = append(d.Numbers, n)
	}
	return d
}

func (p *parser) gather(v *node) *Gather {
	if !p.mapping(v, "gather", "menu", "play", "max_digits", "timeout") {
		return nil
	}
	g := &Gather{MaxDigits: 1, Timeout: DefaultTimeout}
	if m := v.get("menu"); m == nil {
		p.errf(v, "gather: menu: is missing (the menu whose rules the digits go to)")
	} else if m.kind != kindScalar || !validMenuName(m.text) {
		p.errf(m, "gather: menu must be a menu's name")
	} else {
		g.Menu = m.text
		p.gathers = append(p.gathers, gatherRef{menu: m.text, at: m})
	}
	if pl := v.get("play"); pl != nil {
		g.Play, _ = p.playURL(pl, "gather: play")
	}
	if md := v.get("max_digits"); md != nil {
		n, err := strconv.Atoi(md.text)
		if err != nil || n < 1 || n > xmlresponse.MaxGatherDigits {
			p.errf(md, "gather: max_digits must be 1 to %d", xmlresponse.MaxGatherDigits)
		} else {
			g.MaxDigits = n
		}
	}
	if t := v.get("timeout"); t != nil {
		d, err := time.ParseDuration(t.text)
		if err != nil || d < time.Millisecond || d > xmlresponse.MaxGatherTimeout || d%time.Millisecond != 0 {
			p.errf(t, "gather: timeout must be a duration from 1ms to %s, such as 5s", xmlresponse.MaxGatherTimeout)
		} else {
			g.Timeout = d
		}
	}
	return g
}

// isText reports whether s is UTF-8 text without control characters.
func isText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0x2028 || r == 0x2029 || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return false
		}
	}
	return true
}
