package presence

import (
	"context"
	"hash/fnv"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sip"
)

// LampSource is what the presence agent reads the lamps from: the store, in
// callstate's wiring.
type LampSource interface {
	// LampsAndCalls returns every lamp (each watched PBX extension, source
	// sip, and each sipgate user, source sipgate) and every call of either
	// source that is ringing or answered, both as of one moment.
	LampsAndCalls(ctx context.Context) ([]callstate.LampStatus, []callstate.Call, error)
	// FeedWindow returns the ids the durable feed keeps: its head is read
	// just before LampsAndCalls, as the position its events are applied
	// from (see Agent.Snapshot).
	FeedWindow(ctx context.Context) (callstate.FeedWindow, error)
	// AgentAccounts returns the digest accounts subscribers may use, by
	// user name: the hex MD5 of "user:realm:password" (HA1) for realm.
	AgentAccounts(ctx context.Context, realm string) (map[string]string, error)
	// AgentAliases returns further names of lamps: alias (a number, a
	// short name) to the lamp it names.
	AgentAliases(ctx context.Context) (map[string]LampRef, error)
}

// LampRef names one lamp: a PBX extension (source sip) or a sipgate user id
// (source sipgate).
type LampRef struct {
	Source    callstate.Source
	Extension string
}

// String writes r as "sip/100" or "sipgate/w0", as ParseLampRef reads it.
func (r LampRef) String() string { return string(r.Source) + "/" + r.Extension }

// ParseLampRef reads "sip/100" or "sipgate/w0", as LampRef.String writes
// it. ok is false for anything else.
func ParseLampRef(s string) (LampRef, bool) {
	src, ext, ok := strings.Cut(s, "/")
	r := LampRef{Source: callstate.Source(src), Extension: ext}
	return r, ok && r.Source.Valid() && ext != ""
}

// agentDialog is one call of a lamp as a dialog-info <dialog>.
type agentDialog struct {
	id         string // stable for the call's life
	callID     string
	state      string // early or confirmed (sip.DialogEarly, sip.DialogConfirmed)
	direction  string // initiator, recipient or empty
	remote     string // the other party's URI, if known
	remoteName string
	held       bool
}

// lampView is what the agent knows of one lamp: its state and its calls.
type lampView struct {
	ref     LampRef
	name    string
	lamp    string        // idle, ringing, busy, hold or unavailable
	dialogs []agentDialog // by id
	// callsAhead says that the lamp's calls changed after the feed last
	// told its colour: the colour may be behind them until the lamp event
	// that follows, so it lights no synthetic dialog (see shownDialogs).
	callsAhead bool
}

// id is an XML-safe id for the lamp's synthetic dialog and tuple.
func (v *lampView) id() string { return "lamp-" + hashID(v.ref.String()) }

func hashID(s string) string {
	h := fnv.New64a()
	h.Write([]byte(s))
	return strconv.FormatUint(h.Sum64(), 36)
}

// shownDialogs returns the dialogs v's dialog-info document lists: its
// calls, or, for a ringing, busy or held lamp whose calls are not known
// (presence from the PBX), one synthetic dialog, so that the key still
// lights.
func (v *lampView) shownDialogs() []agentDialog {
	if len(v.dialogs) > 0 || v.callsAhead {
		return v.dialogs
	}
	switch v.lamp {
	case callstate.LampRinging:
		return []agentDialog{{id: v.id(), state: sip.DialogEarly, direction: string(sip.DirectionRecipient)}}
	case callstate.LampBusy, callstate.LampHold:
		return []agentDialog{{id: v.id(), state: sip.DialogConfirmed, held: v.lamp == callstate.LampHold}}
	}
	return nil
}

// sameDialogs reports whether v and w give the same dialog-info document
// (but for the dialogs ended between them).
func (v *lampView) sameDialogs(w *lampView) bool {
	return w != nil && slices.Equal(v.shownDialogs(), w.shownDialogs())
}

// buildViews groups calls under the lamps they light, by the rules of the
// lamp view (store migrations sip_lamp and user_lamp): a PBX call lights
// its extension; a sipgate call lights its user, and, while it rings, every
// user it is offered to. domain makes party numbers into URIs.
func buildViews(lamps []callstate.LampStatus, calls []callstate.Call, domain string) map[LampRef]*lampView {
	vs := make(map[LampRef]*lampView, len(lamps))
	for _, l := range lamps {
		r := LampRef{Source: l.Source, Extension: l.Extension}
		vs[r] = &lampView{ref: r, name: l.Name, lamp: l.Lamp}
	}
	add := func(r LampRef, c *callstate.Call) {
		v := vs[r]
		if v == nil {
			return
		}
		for _, d := range v.dialogs {
			if d.id == "c"+hashID(string(c.Source)+"/"+c.Key) {
				return
			}
		}
		v.dialogs = append(v.dialogs, callDialog(c, r, domain))
	}
	for i := range calls {
		c := &calls[i]
		for _, r := range callRefs(c) {
			add(r, c)
		}
	}
	for _, v := range vs {
		slices.SortFunc(v.dialogs, func(a, b agentDialog) int { return strings.Compare(a.id, b.id) })
	}
	return vs
}

// live reports whether c lights lamps: it rings or is answered.
func live(c *callstate.Call) bool {
	return c.State == callstate.StateRinging || c.State == callstate.StateAnswered
}

// callRefs returns the lamps a live call lights, none for another.
func callRefs(c *callstate.Call) []LampRef {
	if !live(c) {
		return nil
	}
	var rs []LampRef
	if c.Extension != "" {
		rs = append(rs, LampRef{Source: c.Source, Extension: c.Extension})
	}
	if c.Source == callstate.SourceSipgate && c.State == callstate.StateRinging {
		for _, u := range c.UserIDs {
			if u != "" && u != c.Extension {
				rs = append(rs, LampRef{Source: c.Source, Extension: u})
			}
		}
	}
	return rs
}

func callDialog(c *callstate.Call, r LampRef, domain string) agentDialog {
	d := agentDialog{id: "c" + hashID(string(c.Source)+"/"+c.Key), callID: c.CallID, state: sip.DialogEarly}
	if c.State == callstate.StateAnswered {
		d.state = sip.DialogConfirmed
		d.held = c.OnHold
	}
	remote := c.From
	switch {
	case c.Direction == callstate.DirectionOut && (r.Source == callstate.SourceSIP || c.Extension == r.Extension):
		d.direction = string(sip.DirectionInitiator)
		remote = c.To
	case c.Direction == callstate.DirectionIn || c.State == callstate.StateRinging:
		d.direction = string(sip.DirectionRecipient)
	}
	d.remote = partyURI(remote, domain)
	return d
}

// partyURI makes a party as the sources report it (a number, an extension,
// a SIP URI, "anonymous") into a URI for an identity element.
func partyURI(p, domain string) string {
	p = strings.TrimSpace(p)
	switch {
	case p == "":
		return ""
	case strings.HasPrefix(p, "sip:") || strings.HasPrefix(p, "sips:") || strings.HasPrefix(p, "tel:"):
		return p
	case strings.EqualFold(p, "anonymous"):
		return "sip:anonymous@anonymous.invalid"
	}
	return "sip:" + url.PathEscape(p) + "@" + domain
}

// resolver maps the user part of a SUBSCRIBE's Request-URI to a lamp. See
// resolve for the order.
type resolver struct {
	aliases map[string]LampRef   // configured and stored aliases, normalised
	exact   map[string]LampRef   // PBX extensions and sipgate user ids
	names   map[string][]LampRef // sipgate users by normalised name
}

func newResolver(views map[LampRef]*lampView, aliases map[string]LampRef) *resolver {
	r := &resolver{aliases: map[string]LampRef{}, exact: map[string]LampRef{}, names: map[string][]LampRef{}}
	for a, ref := range aliases {
		r.aliases[normalizeAlias(a)] = ref
	}
	// A PBX extension wins over a sipgate user id of the same spelling.
	for ref := range views {
		if ref.Source == callstate.SourceSipgate {
			r.exact[ref.Extension] = ref
		}
	}
	for ref, v := range views {
		if ref.Source == callstate.SourceSIP {
			r.exact[ref.Extension] = ref
		}
		if n := normalizeName(v.name); n != "" {
			r.names[n] = append(r.names[n], ref)
		}
	}
	return r
}

// resolve returns the lamp user names, the user part of a Request-URI
// (percent-escapes allowed): an alias (SIP_AGENT_ALIASES, the
// presence_alias table; numbers compared by their digits, so that
// +49 211 ... and 0049211... are one), then a PBX extension or sipgate user
// id as written, then a sipgate user's name compared without case, spaces
// or punctuation ("alice.doe" is Alice Doe). A name two users share names
// neither.
func (r *resolver) resolve(user string) (LampRef, bool) {
	if u, err := url.PathUnescape(user); err == nil {
		user = u
	}
	if ref, ok := r.aliases[normalizeAlias(user)]; ok {
		return ref, true
	}
	if ref, ok := r.exact[user]; ok {
		return ref, true
	}
	if refs := r.names[normalizeName(user)]; len(refs) == 1 {
		return refs[0], true
	}
	return LampRef{}, false
}

// normalizeAlias keeps a number's digits (a leading + or 00 dropped), and
// lower-cases anything else.
func normalizeAlias(a string) string {
	a = strings.TrimSpace(a)
	digits := strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9':
			return r
		case r == ' ' || r == '-' || r == '/' || r == '(' || r == ')' || r == '.':
			return -1
		}
		return 'x'
	}, strings.TrimPrefix(a, "+"))
	if digits != "" && !strings.ContainsRune(digits, 'x') {
		return "#" + strings.TrimPrefix(digits, "00")
	}
	return strings.ToLower(a)
}

// normalizeName keeps a name's letters and digits, lower-cased.
func normalizeName(n string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return unicode.ToLower(r)
		}
		return -1
	}, n)
}
