// Package routing decides, per call, how callstate answers sipgate.io's
// newCall push: by rules from a YAML file, tried top to bottom, the first
// that matches choosing one action (dial, voicemail, play, a menu,
// reject, hang up). Menus (Gather) choose the next rules by the digits the
// caller presses.
//
// The package does no I/O: Parse reads a file's bytes, Rules.Evaluate
// decides from a Call and what the caller gives it (lamps, the phonebook),
// all in memory. The HTTP adapter loads the file, keeps the lamps and the
// phonebook, and writes the answer.
package routing

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/xmlresponse"
)

// Rules are a parsed rules file. The zero value has no rules and routes
// nothing. Rules are immutable once parsed, and safe for concurrent use.
type Rules struct {
	TimeZone *time.Location
	Holidays map[string]bool // dates, 2026-12-24, in TimeZone
	Rules    []Rule
	Menus    map[string][]Rule // by name; their rules may match digits

	plan callstate.NumberPlan
}

// Rule is one rule: its name, what a call must be like, and what to do.
type Rule struct {
	Name string
	Line int // where the rule starts in the file
	When Match
	Then Action
}

// Match is a rule's conditions; every one that is set must hold. A rule
// without conditions matches every call (of its direction).
type Match struct {
	Direction callstate.Direction // in (the default) or out; "" for both
	To        []Pattern           // our number called: any of them
	From      []Pattern           // the caller: any of them
	Contacts  []string            // the caller's phonebook contact, lower case; "*" any contact
	Groups    []string            // a group of the caller's contact, lower case: any of them
	Users     []string            // called users, by id (w0) or name, lower case: any of them
	Inside    []Window            // the call comes inside one of these (holidays are outside all)
	Outside   []Window            // the call comes outside all of these (or on a holiday)
	Lamps     []LampCondition     // all of them hold
	Digits    []string            // menus only: the digits pressed, any of them; "" for none
	HasDigits bool                // Digits is a condition (a menu rule may match no digits)
}

// Pattern is one number of a rule: E.164 digits without "+" (as sipgate
// sends them), a prefix of such, or anonymous.
type Pattern struct {
	Digits    string
	Prefix    bool
	Anonymous bool
}

// LampCondition holds when the lamp of Who is one of States.
type LampCondition struct {
	Who    string   // a PBX extension, a sipgate user id, or a user's name, as given
	States []string // idle, ringing, busy, hold, unavailable
}

// lampStates are the lamps a condition may name (callstate.Lamps).
var lampStates = callstate.Lamps

// Action is what a rule does: exactly one of its fields is set.
type Action struct {
	Dial      *xmlresponse.Dial // numbers, or the voicemail
	Play      *xmlresponse.Play
	Gather    *Gather
	Reject    *xmlresponse.Reject
	Hangup    bool
	Voicemail bool // Dial{Voicemail: true}, kept apart for the dry run's words
}

// Gather is a menu: a sound file played while sipgate collects digits,
// then the named menu's rules decide with them.
type Gather struct {
	Menu      string
	MaxDigits int
	Timeout   time.Duration
	Play      *xmlresponse.Play
}

// Call is what routing knows of a call when its newCall (or a menu's dtmf)
// comes: as sipgate sends it.
type Call struct {
	Direction callstate.Direction
	From, To  string   // as sipgate sends them: 4930..., anonymous
	UserIDs   []string // userId[]: w0, ...
	Users     []string // user[]: names
	At        time.Time
	Digits    string // a menu's dtmf; "" otherwise
}

// Env is what a decision may look at besides the call. Both may be nil.
type Env struct {
	// Lamps maps a PBX extension, a sipgate user id and a user's lower
	// case name (and "sip/100", "sipgate/w0") to its lamp.
	Lamps map[string]string
	// Contact returns the name and groups of the phonebook contact of a
	// number as a call carries it; ok false for none.
	Contact func(number string) (name string, groups []string, ok bool)
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Matched bool   // a rule matched; false: no rule did, the default applies
	Rule    string // the rule's name
	Line    int    // where it is in the file
	Action  Action
}

// Evaluate tries the rules top to bottom and returns the first that
// matches c. It does no I/O.
func (r *Rules) Evaluate(c Call, env Env) Decision {
	if r == nil {
		return Decision{}
	}
	return r.evaluate(r.Rules, c, env)
}

// EvaluateMenu is Evaluate for the rules of menu, with c.Digits the
// digits pressed. ok is false for a menu the rules do not have (any more).
func (r *Rules) EvaluateMenu(menu string, c Call, env Env) (d Decision, ok bool) {
	if r == nil {
		return Decision{}, false
	}
	rules, ok := r.Menus[menu]
	if !ok {
		return Decision{}, false
	}
	return r.evaluate(rules, c, env), true
}

func (r *Rules) evaluate(rules []Rule, c Call, env Env) Decision {
	local := c.At.In(r.location())
	e := evalCtx{r: r, c: c, env: env, local: local, holiday: r.Holidays[local.Format(time.DateOnly)] || r.Holidays[local.Format("01-02")]}
	for i := range rules {
		if e.matches(&rules[i].When) {
			return Decision{Matched: true, Rule: rules[i].Name, Line: rules[i].Line, Action: rules[i].Then}
		}
	}
	return Decision{}
}

func (r *Rules) location() *time.Location {
	if r.TimeZone == nil {
		return time.UTC
	}
	return r.TimeZone
}

// evalCtx caches what several rules ask of one call.
type evalCtx struct {
	r       *Rules
	c       Call
	env     Env
	local   time.Time
	holiday bool

	fromKey, toKey     string
	keysDone           bool
	contact            string
	groups             []string
	isContact          bool
	contactDone        bool
	userIDs, userNames []string
	usersDone          bool
}

func (e *evalCtx) keys() {
	if !e.keysDone {
		e.fromKey, e.toKey = e.r.plan.Key(e.c.From), e.r.plan.Key(e.c.To)
		e.keysDone = true
	}
}

func (e *evalCtx) lookupContact() {
	if e.contactDone {
		return
	}
	e.contactDone = true
	if e.env.Contact == nil || e.c.From == "" {
		return
	}
	name, groups, ok := e.env.Contact(e.c.From)
	if !ok {
		return
	}
	e.isContact, e.contact = true, strings.ToLower(name)
	e.groups = make([]string, len(groups))
	for i, g := range groups {
		e.groups[i] = strings.ToLower(g)
	}
}

func (e *evalCtx) matches(m *Match) bool {
	if m.Direction != "" && m.Direction != e.c.Direction {
		return false
	}
	if m.HasDigits && !slices.Contains(m.Digits, e.c.Digits) {
		return false
	}
	if len(m.To) > 0 || len(m.From) > 0 {
		e.keys()
	}
	if len(m.To) > 0 && !matchNumber(m.To, e.c.To, e.toKey) {
		return false
	}
	if len(m.From) > 0 && !matchNumber(m.From, e.c.From, e.fromKey) {
		return false
	}
	if len(m.Inside) > 0 && (e.holiday || !inAny(m.Inside, e.local)) {
		return false
	}
	if len(m.Outside) > 0 && !e.holiday && inAny(m.Outside, e.local) {
		return false
	}
	if len(m.Contacts) > 0 || len(m.Groups) > 0 {
		e.lookupContact()
		if !e.isContact {
			return false
		}
		if len(m.Contacts) > 0 && !slices.Contains(m.Contacts, "*") && !slices.Contains(m.Contacts, e.contact) {
			return false
		}
		if len(m.Groups) > 0 && !slices.ContainsFunc(m.Groups, func(g string) bool { return slices.Contains(e.groups, g) }) {
			return false
		}
	}
	if len(m.Users) > 0 {
		if !e.usersDone {
			e.usersDone = true
			for _, u := range e.c.UserIDs {
				e.userIDs = append(e.userIDs, strings.ToLower(u))
			}
			for _, u := range e.c.Users {
				e.userNames = append(e.userNames, strings.ToLower(u))
			}
		}
		if !slices.ContainsFunc(m.Users, func(u string) bool {
			return slices.Contains(e.userIDs, u) || slices.Contains(e.userNames, u)
		}) {
			return false
		}
	}
	for _, l := range m.Lamps {
		if !slices.Contains(l.States, lampOf(e.env.Lamps, l.Who)) {
			return false
		}
	}
	return true
}

// lampOf is who's lamp in lamps: by the key as written, else by its lower
// case form (names); unknown is callstate.LampUnavailable.
func lampOf(lamps map[string]string, who string) string {
	if s, ok := lamps[who]; ok {
		return s
	}
	if s, ok := lamps[strings.ToLower(who)]; ok {
		return s
	}
	return callstate.LampUnavailable
}

func matchNumber(ps []Pattern, raw, key string) bool {
	for _, p := range ps {
		switch {
		case p.Anonymous:
			if raw == "" || strings.EqualFold(raw, "anonymous") {
				return true
			}
		case key == "":
		case p.Prefix:
			if strings.HasPrefix(key, p.Digits) {
				return true
			}
		case key == p.Digits:
			return true
		}
	}
	return false
}

func inAny(ws []Window, t time.Time) bool {
	for _, w := range ws {
		if w.contains(t) {
			return true
		}
	}
	return false
}

// Response returns a's answer for sipgate: the action as xmlresponse
// writes it. onData is the URL a menu's digits go to (see MenuURL); it is
// used by a Gather only.
func (a Action) Response(onData string) xmlresponse.Action {
	switch {
	case a.Dial != nil:
		return *a.Dial
	case a.Voicemail:
		return xmlresponse.Dial{Voicemail: true}
	case a.Play != nil:
		return *a.Play
	case a.Gather != nil:
		return xmlresponse.Gather{OnData: onData, MaxDigits: a.Gather.MaxDigits, Timeout: a.Gather.Timeout, Play: a.Gather.Play}
	case a.Reject != nil:
		return *a.Reject
	case a.Hangup:
		return xmlresponse.Hangup{}
	}
	return nil
}

// Kind names the action: dial, voicemail, play, gather, reject, hangup.
func (a Action) Kind() string {
	switch {
	case a.Dial != nil:
		return "dial"
	case a.Voicemail:
		return "voicemail"
	case a.Play != nil:
		return "play"
	case a.Gather != nil:
		return "gather"
	case a.Reject != nil:
		return "reject"
	case a.Hangup:
		return "hangup"
	}
	return ""
}

// Len returns the number of rules, menus' included.
func (r *Rules) Len() int {
	if r == nil {
		return 0
	}
	n := len(r.Rules)
	for _, m := range r.Menus {
		n += len(m)
	}
	return n
}

// Names returns the name of every rule, menus' included, each once.
func (r *Rules) Names() []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, x := range r.Rules {
		out = append(out, x.Name)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Menus)) {
		for _, x := range r.Menus[k] {
			out = append(out, x.Name)
		}
	}
	return out
}
