package sip

import (
	"strconv"
	"strings"
)

// The namespaces of the documents SIP presence speaks.
const (
	NSDialogInfo = "urn:ietf:params:xml:ns:dialog-info"     // RFC 4235 dialog-info
	NSPIDF       = "urn:ietf:params:xml:ns:pidf"            // RFC 3863 PIDF
	NSDataModel  = "urn:ietf:params:xml:ns:pidf:data-model" // RFC 4479, the dm: of PIDF
	NSRPID       = "urn:ietf:params:xml:ns:pidf:rpid"       // RFC 4480 rich presence
	NSRLMI       = "urn:ietf:params:xml:ns:rlmi"            // RFC 4662 resource lists
)

// DocState says whether a dialog-info document lists every dialog of the
// entity or only those that changed (RFC 4235 section 4.1).
type DocState string

// Document states.
const (
	// DocFull is a document that lists every current dialog; a dialog not in
	// it is over.
	DocFull DocState = "full"
	// DocPartial is a document that lists only the dialogs that changed since
	// the previous version.
	DocPartial DocState = "partial"
)

// DialogInfo is a parsed application/dialog-info+xml body (RFC 4235).
type DialogInfo struct {
	// Entity is the monitored URI exactly as sent, e.g. "sip:100@pbx" or
	// "sip:100@10.0.0.1:5060"; it is not normalised.
	Entity string
	// Version is the document version; it is meaningful only when
	// HasVersion is true.
	Version uint64
	// HasVersion reports whether the document carried a version attribute.
	HasVersion bool
	// State is DocFull or DocPartial, or empty when the document carried no
	// state attribute (RFC 4235 requires one; treat empty as full).
	State DocState
	// Dialogs are the <dialog> elements in document order. A full document
	// with no dialogs means the entity is idle.
	Dialogs []Dialog
}

// Direction says which side of a dialog sent the INVITE.
type Direction string

// Dialog directions, as seen from the monitored entity.
const (
	// DirectionInitiator means the entity placed the call.
	DirectionInitiator Direction = "initiator"
	// DirectionRecipient means the entity received the call.
	DirectionRecipient Direction = "recipient"
)

// Dialog states of RFC 4235 section 3.7.1, as found in Dialog.State.
const (
	DialogTrying     = "trying"
	DialogProceeding = "proceeding"
	DialogEarly      = "early"
	DialogConfirmed  = "confirmed"
	DialogTerminated = "terminated"
)

// Dialog is one <dialog> element of a dialog-info document.
type Dialog struct {
	// ID is the dialog id attribute, the only identifier every PBX sends:
	// Asterisk uses the extension, FreeSWITCH a channel UUID.
	ID string
	// CallID, LocalTag and RemoteTag are the SIP dialog identifiers, empty
	// when the notifier leaves them out (Asterisk and FreeSWITCH do).
	CallID, LocalTag, RemoteTag string
	// Direction is DirectionInitiator, DirectionRecipient, or empty when the
	// attribute is absent or holds another value.
	Direction Direction
	// State is one of DialogTrying, DialogProceeding, DialogEarly,
	// DialogConfirmed and DialogTerminated, lowercased and trimmed. It is
	// empty when the dialog had no <state> element, which RFC 4235 forbids
	// but some PBXs send.
	State string
	// Event is the state element's event attribute, lowercased and trimmed:
	// cancelled, rejected, replaced, local-bye, remote-bye, error or timeout.
	Event string
	// Code is the state element's code attribute (a SIP response code), or 0
	// when it is absent or not a number.
	Code int
	// Duration is the <duration> element in seconds, or -1 when it is absent
	// or not a non-negative number.
	Duration int
	// LocalIdentity and LocalDisplay are the text and display attribute of
	// <local><identity>; LocalTarget is the uri of <local><target>.
	LocalIdentity, LocalDisplay, LocalTarget string
	// RemoteIdentity, RemoteDisplay and RemoteTarget are the same for
	// <remote>.
	RemoteIdentity, RemoteDisplay, RemoteTarget string
	// LocalHeld and RemoteHeld report that that side's <target> carried
	// <param pname="+sip.rendering" pvalue="no"/> (RFC 3840 rendering=no:
	// that side is not rendering media, i.e. the call is on hold there). The
	// RFC 4235 spelling pval is accepted as well as pvalue.
	LocalHeld, RemoteHeld bool
}

// ParseDialogInfo parses an application/dialog-info+xml NOTIFY body.
//
// It accepts documents with or without the RFC 4235 namespace, ignores
// elements it does not know (such as Broadsoft or Polycom extensions in other
// namespaces), and reads UTF-8, US-ASCII and ISO-8859-1 documents.
//
// An empty body, or one of only white space, returns ErrEmptyBody and a zero
// DialogInfo: notifiers send one to mean "no information yet". Every other
// failure returns an error matching ErrBadBody: a body that is not XML, a
// root other than <dialog-info>, a state attribute other than full or partial,
// a version that is not a number, a dialog with no id, or a dialog state
// other than the five of RFC 4235. A body that breaks MaxDialogBodySize,
// MaxDepth, MaxDialogElements or MaxDialogs also matches ErrLimit.
func ParseDialogInfo(body []byte) (DialogInfo, error) {
	info, _, err := ParseDialogInfoRaw(body)
	return info, err
}

// ParseDialogInfoRaw is ParseDialogInfo that also returns each dialog's
// element as the body has it (raw[i] for info.Dialogs[i], sharing body's
// memory), or nil raw for a document in another encoding than UTF-8: a
// watcher compares a dialog's bytes with the last it saw before parsing
// it further.
func ParseDialogInfoRaw(body []byte) (info DialogInfo, raw [][]byte, err error) {
	const doc = "dialog-info"
	root, isRaw, err := decodeTree(doc, body, MaxDialogBodySize, MaxDialogElements)
	if err != nil {
		return DialogInfo{}, nil, err
	}
	if root.name != "dialog-info" {
		return DialogInfo{}, nil, badBody(doc, "root element is <%s>, want <dialog-info>", root.name)
	}
	ours := sameSpace(root.space)

	info.Entity = strings.TrimSpace(attr(root, "entity"))
	if v, ok := root.attr("version"); ok {
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return DialogInfo{}, nil, badBody(doc, "version %q is not a number", Clip(v))
		}
		info.Version, info.HasVersion = n, true
	}
	if v, ok := root.attr("state"); ok {
		switch s := DocState(strings.ToLower(strings.TrimSpace(v))); s {
		case DocFull, DocPartial:
			info.State = s
		default:
			return DialogInfo{}, nil, badBody(doc, "state %q is neither full nor partial", Clip(v))
		}
	}

	for _, c := range root.children {
		if c.name != "dialog" || !ours(c) {
			continue
		}
		if len(info.Dialogs) == MaxDialogs {
			return DialogInfo{}, nil, limitBody(doc, "more than %d dialogs", MaxDialogs)
		}
		d, err := parseDialog(c, len(info.Dialogs)+1, ours)
		if err != nil {
			return DialogInfo{}, nil, err
		}
		info.Dialogs = append(info.Dialogs, d)
		if isRaw {
			raw = append(raw, body[c.start:c.end:c.end])
		}
	}
	return info, raw, nil
}

// parseDialog reads the index-th (from 1) <dialog> element.
func parseDialog(n *node, index int, ours func(*node) bool) (Dialog, error) {
	const doc = "dialog-info"
	d := Dialog{Duration: -1}
	d.ID = strings.TrimSpace(attr(n, "id"))
	if d.ID == "" {
		return Dialog{}, badBody(doc, "dialog %d has no id", index)
	}
	d.CallID = strings.TrimSpace(attr(n, "call-id"))
	d.LocalTag = strings.TrimSpace(attr(n, "local-tag"))
	d.RemoteTag = strings.TrimSpace(attr(n, "remote-tag"))
	switch dir := Direction(strings.ToLower(strings.TrimSpace(attr(n, "direction")))); dir {
	case DirectionInitiator, DirectionRecipient:
		d.Direction = dir
	}

	if st := n.child("state", ours); st != nil {
		d.State = strings.ToLower(st.textTrim())
		switch d.State {
		case DialogTrying, DialogProceeding, DialogEarly, DialogConfirmed, DialogTerminated:
		default:
			return Dialog{}, badBody(doc, "dialog %q has unknown state %q", Clip(d.ID), Clip(d.State))
		}
		d.Event = strings.ToLower(strings.TrimSpace(attr(st, "event")))
		if v, ok := st.attr("code"); ok {
			if code, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
				d.Code = code
			}
		}
	}
	if du := n.child("duration", ours); du != nil {
		if secs, err := strconv.Atoi(du.textTrim()); err == nil && secs >= 0 {
			d.Duration = secs
		}
	}
	if l := n.child("local", ours); l != nil {
		d.LocalIdentity, d.LocalDisplay, d.LocalTarget, d.LocalHeld = parseParticipant(l, ours)
	}
	if r := n.child("remote", ours); r != nil {
		d.RemoteIdentity, d.RemoteDisplay, d.RemoteTarget, d.RemoteHeld = parseParticipant(r, ours)
	}
	return d, nil
}

// parseParticipant reads a <local> or <remote> element.
func parseParticipant(n *node, ours func(*node) bool) (identity, display, target string, held bool) {
	if id := n.child("identity", ours); id != nil {
		identity = id.textTrim()
		display = strings.TrimSpace(attr(id, "display"))
	}
	if t := n.child("target", ours); t != nil {
		target = strings.TrimSpace(attr(t, "uri"))
		for _, p := range t.children {
			if p.name != "param" || !ours(p) {
				continue
			}
			if !strings.EqualFold(strings.TrimSpace(attr(p, "pname")), "+sip.rendering") {
				continue
			}
			v, ok := p.attr("pvalue")
			if !ok {
				v = attr(p, "pval")
			}
			held = strings.EqualFold(strings.TrimSpace(v), "no")
		}
	}
	return identity, display, target, held
}

// sameSpace returns a test for elements of the document's own vocabulary:
// those in the root's namespace, in the RFC 4235 namespace, or in none.
// Extension elements in other namespaces fail it and are ignored.
func sameSpace(rootSpace string) func(*node) bool {
	return func(n *node) bool {
		return n.space == rootSpace || n.space == "" || n.space == NSDialogInfo
	}
}

// attr returns the attribute with the given local name, or "".
func attr(n *node, name string) string {
	v, _ := n.attr(name)
	return v
}
