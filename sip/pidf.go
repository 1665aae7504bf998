package sip

import (
	"slices"
	"strings"

	"github.com/callstate/callstate"
)

// Presence is a parsed application/pidf+xml body (RFC 3863), with the RPID
// activities of RFC 4480.
type Presence struct {
	// Entity is the presentity URI exactly as sent ("sip:…" or "pres:…").
	Entity string
	// Open reports whether any <tuple> has <status><basic>open</basic>.
	Open bool
	// Basic is "open" when any tuple is open, otherwise the lowercased
	// <basic> of the first tuple that has one (normally "closed"), or empty
	// when no tuple carries a <basic>.
	Basic string
	// Activities are the local names of the RPID activities found anywhere
	// in the document, lowercased, without duplicates, in document order:
	// "on-the-phone", "busy", "away", "meeting", "unknown", …. The
	// pre-RFC 4480 form <activities><activity>busy</activity></activities>
	// is read as well.
	Activities []string
	// Note is the first non-empty <note> in document order, whatever its
	// namespace (pidf, data-model or rpid), trimmed.
	Note string
}

// Presence statuses returned by Presence.Status: the lamps' words, as
// sip_extension.presence_status keeps them (callstate.PresenceStatuses).
const (
	StatusIdle        = callstate.LampIdle
	StatusRinging     = callstate.LampRinging
	StatusBusy        = callstate.LampBusy
	StatusUnavailable = callstate.LampUnavailable
)

// ParsePresence parses an application/pidf+xml NOTIFY body.
//
// Elements are matched by local name, so documents with or without the PIDF
// namespace, and with any prefixes, are read alike; unknown elements are
// ignored. UTF-8, US-ASCII and ISO-8859-1 documents are read.
//
// An empty body, or one of only white space, returns ErrEmptyBody and a zero
// Presence. A body that is not XML, or whose root is not <presence>, returns
// an error matching ErrBadBody; one that breaks MaxBodySize, MaxDepth or
// MaxElements also matches ErrLimit.
func ParsePresence(body []byte) (Presence, error) {
	const doc = "pidf"
	root, _, err := decodeTree(doc, body, MaxBodySize, MaxElements)
	if err != nil {
		return Presence{}, err
	}
	if root.name != "presence" {
		return Presence{}, badBody(doc, "root element is <%s>, want <presence>", root.name)
	}
	var p Presence
	p.Entity = strings.TrimSpace(attr(root, "entity"))
	all := func(*node) bool { return true }
	for _, t := range root.children {
		if t.name != "tuple" {
			continue
		}
		st := t.child("status", all)
		if st == nil {
			continue
		}
		b := st.child("basic", all)
		if b == nil {
			continue
		}
		switch v := strings.ToLower(b.textTrim()); {
		case v == "open":
			p.Open, p.Basic = true, v
		case p.Basic == "":
			p.Basic = v
		}
	}
	walk(root, func(n *node) {
		switch n.name {
		case "note":
			if p.Note == "" {
				p.Note = n.textTrim()
			}
		case "activities":
			for _, a := range n.children {
				name := a.name
				if name == "activity" { // rpid-status draft: <activity>busy</activity>
					name = a.textTrim()
				}
				name = strings.ToLower(name)
				if name != "" && !slices.Contains(p.Activities, name) {
					p.Activities = append(p.Activities, name)
				}
			}
		}
	})
	return p, nil
}

// walk calls fn for n and every element under it, in document order.
func walk(n *node, fn func(*node)) {
	fn(n)
	for _, c := range n.children {
		walk(c, fn)
	}
}

// Status maps the presence to one of StatusIdle, StatusRinging, StatusBusy
// and StatusUnavailable. The first rule that applies wins:
//
//  1. no tuple is open and one is "closed", or no tuple has a basic status
//     at all: unavailable;
//  2. the note has a word starting with "ring" ("Ringing", "Ring 201"):
//     ringing. This comes before the activities because Asterisk marks a
//     ringing extension with <rpid:on-the-phone/> (older versions
//     <rpid:busy/>) and the note "Ringing";
//  3. an activity is "on-the-phone" or "busy": busy;
//  4. otherwise (open): idle.
func (p Presence) Status() string {
	if !p.Open {
		return StatusUnavailable
	}
	if noteSaysRinging(p.Note) {
		return StatusRinging
	}
	for _, a := range p.Activities {
		if a == "on-the-phone" || a == "busy" {
			return StatusBusy
		}
	}
	return StatusIdle
}

// noteSaysRinging reports whether a word of note starts with "ring", case
// insensitively, so "Ringing" and "Ring" count but "Offering" does not.
func noteSaysRinging(note string) bool {
	for _, w := range strings.FieldsFunc(note, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	}) {
		if len(w) >= 4 && strings.EqualFold(w[:4], "ring") {
			return true
		}
	}
	return false
}
