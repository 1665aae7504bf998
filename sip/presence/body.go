package presence

import (
	"bytes"
	"encoding/xml"
	"strconv"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sip"
)

// The bodies the presence agent sends. Each is modelled on what the phones
// that show BLF keys parse; sip/presence/testdata/agent/README.md says which
// document each golden file follows.

// Content types of the agent's NOTIFY bodies.
const (
	ctDialogInfo = "application/dialog-info+xml"
	ctPIDF       = "application/pidf+xml"
)

// xmlDoc builds an XML document element by element. Element and
// attribute names are the caller's constants; every attribute value and
// every text goes through escaping (and characters XML cannot carry
// become U+FFFD), so that nothing a call brings (a party's name, a
// Call-ID, a URI) can change the document's shape. Line breaks and
// indentation are the caller's, to keep the documents as the phones we
// tried them with got them (see testdata/agent). FuzzAgentBodies reads
// what it builds back with the parsers.
type xmlDoc struct{ b bytes.Buffer }

// newXMLDoc starts a document with its XML declaration.
func newXMLDoc() *xmlDoc {
	d := &xmlDoc{}
	d.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	return d
}

// in indents the next element by depth levels.
func (d *xmlDoc) in(depth int) *xmlDoc {
	for range depth {
		d.b.WriteString("  ")
	}
	return d
}

// nl ends a line.
func (d *xmlDoc) nl() *xmlDoc {
	d.b.WriteByte('\n')
	return d
}

// open writes a start tag; attrs are name, value pairs.
func (d *xmlDoc) open(name string, attrs ...string) *xmlDoc {
	d.tag(name, attrs)
	d.b.WriteByte('>')
	return d
}

// empty writes an element with no content.
func (d *xmlDoc) empty(name string, attrs ...string) *xmlDoc {
	d.tag(name, attrs)
	d.b.WriteString("/>")
	return d
}

// text writes an element holding text.
func (d *xmlDoc) text(name, text string, attrs ...string) *xmlDoc {
	d.open(name, attrs...)
	d.escape(text)
	return d.close(name)
}

// close writes an end tag.
func (d *xmlDoc) close(name string) *xmlDoc {
	d.b.WriteString("</" + name + ">")
	return d
}

func (d *xmlDoc) tag(name string, attrs []string) {
	d.b.WriteString("<" + name)
	for i := 0; i+1 < len(attrs); i += 2 {
		d.b.WriteString(" " + attrs[i] + `="`)
		d.escape(attrs[i+1])
		d.b.WriteByte('"')
	}
}

func (d *xmlDoc) escape(s string) {
	_ = xml.EscapeText(&d.b, []byte(s))
}

// bytes returns the document.
func (d *xmlDoc) bytes() []byte { return d.b.Bytes() }

// dialogInfoBody renders the RFC 4235 document of one lamp for one
// subscription: always state="full" (every dialog of the entity is listed,
// as Asterisk and FreeSWITCH send it, and as every phone parses it), with
// version the subscription's counter. A lamp with no call gets one dialog in
// state terminated, as Yealink's documentation shows the idle state (an
// empty document is idle too, for the phones that read it so); a busy or
// ringing lamp whose calls are not known (presence from the PBX) gets one
// synthetic dialog, so that the key still lights. ended lists dialogs that
// ended since the previous document: they are sent once as terminated.
func dialogInfoBody(entity string, version uint32, v *lampView, ended []agentDialog) []byte {
	d := newXMLDoc().open("dialog-info", "xmlns", sip.NSDialogInfo, "version", strconv.FormatUint(uint64(version), 10),
		"state", "full", "entity", entity).nl()
	ds := v.shownDialogs()
	for _, dl := range ended {
		writeDialog(d, entity, dl, sip.DialogTerminated)
	}
	for _, dl := range ds {
		writeDialog(d, entity, dl, dl.state)
	}
	if len(ds) == 0 && len(ended) == 0 {
		writeDialog(d, entity, agentDialog{id: v.id()}, sip.DialogTerminated)
	}
	return d.close("dialog-info").nl().bytes()
}

func writeDialog(d *xmlDoc, entity string, dl agentDialog, state string) {
	attrs := []string{"id", dl.id}
	if dl.callID != "" {
		attrs = append(attrs, "call-id", dl.callID)
	}
	if dl.direction != "" {
		attrs = append(attrs, "direction", dl.direction)
	}
	d.in(1).open("dialog", attrs...).nl()
	d.in(2).text("state", state).nl()
	if state != sip.DialogTerminated {
		// Polycom and Snom show the other party from remote/identity;
		// Yealink and Grandstream read local/target for pickup. The
		// rendering note says held (Polycom, Snom: slow blink).
		d.in(2).open("local").text("identity", entity)
		if dl.held {
			d.open("target", "uri", entity).empty("param", "pname", "+sip.rendering", "pval", "no").close("target")
		} else {
			d.empty("target", "uri", entity)
		}
		d.close("local").nl()
		if dl.remote != "" {
			var display []string
			if dl.remoteName != "" {
				display = []string{"display", dl.remoteName}
			}
			d.in(2).open("remote").text("identity", dl.remote, display...).empty("target", "uri", dl.remote).close("remote").nl()
		}
	}
	d.in(1).close("dialog").nl()
}

// pidfBody renders the RFC 3863 presence document of one lamp, with the
// RPID (RFC 4480) activity that phones and soft clients show: on-the-phone
// while a call rings or is talked on (with "Ringing" or "On the phone" as
// the note, which baresip and Linphone display), basic closed for a lamp
// that is unavailable. It follows the document Asterisk's res_pjsip_pidf
// sends with the rpid and dm namespaces.
func pidfBody(entity string, v *lampView) []byte {
	basic, note, activity := "open", "Ready", ""
	switch v.lamp {
	case callstate.LampRinging:
		note, activity = "Ringing", "on-the-phone"
	case callstate.LampBusy:
		note, activity = "On the phone", "on-the-phone"
	case callstate.LampHold:
		note, activity = "On hold", "on-the-phone"
	case callstate.LampUnavailable:
		basic, note, activity = "closed", "Unavailable", "away"
	}
	d := newXMLDoc().open("presence", "xmlns", sip.NSPIDF, "xmlns:dm", sip.NSDataModel, "xmlns:rpid", sip.NSRPID,
		"entity", entity).nl()
	d.in(1).open("tuple", "id", v.id()).nl()
	d.in(2).open("status").text("basic", basic).close("status").nl()
	d.in(2).text("contact", entity).nl()
	d.in(2).text("note", note).nl()
	d.in(1).close("tuple").nl()
	d.in(1).open("dm:person", "id", "p-"+v.id()).nl()
	if activity != "" {
		d.in(2).open("rpid:activities").empty("rpid:" + activity).close("rpid:activities").nl()
	}
	d.in(2).text("dm:note", note).nl()
	d.in(1).close("dm:person").nl()
	return d.close("presence").nl().bytes()
}

// rlmiPart is one resource of a resource-list NOTIFY: its URI, its name,
// and its own document (dialog-info or PIDF).
type rlmiPart struct {
	uri, name string
	ct        string
	body      []byte
}

// rlmiBoundary separates the parts of a resource-list NOTIFY.
const rlmiBoundary = "callstate-rlmi-boundary"

// ctRLMI is the Content-Type of a resource-list NOTIFY (RFC 4662 section
// 5): multipart/related, the RLMI document first.
const ctRLMI = `multipart/related;type="application/rlmi+xml";start="<rlmi@callstate>";boundary="` + rlmiBoundary + `"`

// rlmiBody renders an RFC 4662 resource-list NOTIFY body: the RLMI document
// (version, fullState) listing parts, each with an active instance whose
// cid names the part that follows. A full NOTIFY lists every resource of
// the list; a partial one only those that changed. It follows the
// examples of RFC 4662 section 5 and the BroadWorks documents Yealink's
// administrator guide shows for "BLF List".
func rlmiBody(listURI string, version uint32, full bool, parts []rlmiPart) []byte {
	var b bytes.Buffer
	part := func(cid, ct string, body []byte) {
		b.WriteString("--" + rlmiBoundary + "\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <" + cid + ">\r\nContent-Type: " + ct + "\r\n\r\n")
		b.Write(body)
		b.WriteString("\r\n")
	}
	list := newXMLDoc().open("list", "xmlns", sip.NSRLMI, "uri", listURI, "version", strconv.FormatUint(uint64(version), 10),
		"fullState", strconv.FormatBool(full)).nl()
	cids := make([]string, len(parts))
	for i, p := range parts {
		cids[i] = "r" + hashID(p.uri) + "@callstate"
		list.in(1).open("resource", "uri", p.uri).nl()
		if p.name != "" {
			list.in(2).text("name", p.name).nl()
		}
		list.in(2).empty("instance", "id", hashID(p.uri), "state", "active", "cid", cids[i]).nl()
		list.in(1).close("resource").nl()
	}
	list.close("list").nl()
	part("rlmi@callstate", `application/rlmi+xml;charset="UTF-8"`, list.bytes())
	for i, p := range parts {
		part(cids[i], p.ct, p.body)
	}
	b.WriteString("--" + rlmiBoundary + "--\r\n")
	return b.Bytes()
}
