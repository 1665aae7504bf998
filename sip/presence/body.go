package presence

import (
	"bytes"
	"encoding/xml"
	"strconv"

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

// xmlEscape returns s escaped for an XML attribute or text.
func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

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
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="`)
	b.WriteString(strconv.FormatUint(uint64(version), 10))
	b.WriteString(`" state="full" entity="`)
	b.WriteString(xmlEscape(entity))
	b.WriteString("\">\n")
	ds := v.shownDialogs()
	for _, d := range ended {
		writeDialog(&b, entity, d, sip.DialogTerminated)
	}
	for _, d := range ds {
		writeDialog(&b, entity, d, d.state)
	}
	if len(ds) == 0 && len(ended) == 0 {
		writeDialog(&b, entity, agentDialog{id: v.id()}, sip.DialogTerminated)
	}
	b.WriteString("</dialog-info>\n")
	return b.Bytes()
}

func writeDialog(b *bytes.Buffer, entity string, d agentDialog, state string) {
	b.WriteString(`  <dialog id="` + xmlEscape(d.id) + `"`)
	if d.callID != "" {
		b.WriteString(` call-id="` + xmlEscape(d.callID) + `"`)
	}
	if d.direction != "" {
		b.WriteString(` direction="` + d.direction + `"`)
	}
	b.WriteString(">\n    <state>" + state + "</state>\n")
	if state == sip.DialogTerminated {
		b.WriteString("  </dialog>\n")
		return
	}
	// Polycom and Snom show the other party from remote/identity; Yealink
	// and Grandstream read local/target for pickup. The rendering note
	// says held (Polycom, Snom: slow blink).
	b.WriteString(`    <local><identity>` + xmlEscape(entity) + `</identity><target uri="` + xmlEscape(entity) + `"`)
	if d.held {
		b.WriteString(`><param pname="+sip.rendering" pval="no"/></target></local>` + "\n")
	} else {
		b.WriteString("/></local>\n")
	}
	if d.remote != "" {
		b.WriteString(`    <remote><identity`)
		if d.remoteName != "" {
			b.WriteString(` display="` + xmlEscape(d.remoteName) + `"`)
		}
		b.WriteString(`>` + xmlEscape(d.remote) + `</identity><target uri="` + xmlEscape(d.remote) + "\"/></remote>\n")
	}
	b.WriteString("  </dialog>\n")
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
	case "ringing":
		note, activity = "Ringing", "on-the-phone"
	case "busy":
		note, activity = "On the phone", "on-the-phone"
	case "hold":
		note, activity = "On hold", "on-the-phone"
	case "unavailable":
		basic, note, activity = "closed", "Unavailable", "away"
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="`)
	b.WriteString(xmlEscape(entity) + "\">\n")
	b.WriteString(`  <tuple id="` + xmlEscape(v.id()) + "\">\n    <status><basic>" + basic + "</basic></status>\n")
	b.WriteString("    <contact>" + xmlEscape(entity) + "</contact>\n    <note>" + note + "</note>\n  </tuple>\n")
	b.WriteString(`  <dm:person id="p-` + xmlEscape(v.id()) + "\">\n")
	if activity != "" {
		b.WriteString("    <rpid:activities><rpid:" + activity + "/></rpid:activities>\n")
	}
	b.WriteString("    <dm:note>" + note + "</dm:note>\n  </dm:person>\n</presence>\n")
	return b.Bytes()
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
	var list bytes.Buffer
	list.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	list.WriteString(`<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="` + xmlEscape(listURI) + `" version="` +
		strconv.FormatUint(uint64(version), 10) + `" fullState="` + strconv.FormatBool(full) + "\">\n")
	cids := make([]string, len(parts))
	for i, p := range parts {
		cids[i] = "r" + hashID(p.uri) + "@callstate"
		list.WriteString(`  <resource uri="` + xmlEscape(p.uri) + "\">\n")
		if p.name != "" {
			list.WriteString("    <name>" + xmlEscape(p.name) + "</name>\n")
		}
		list.WriteString(`    <instance id="` + hashID(p.uri) + `" state="active" cid="` + cids[i] + "\"/>\n  </resource>\n")
	}
	list.WriteString("</list>\n")
	part("rlmi@callstate", `application/rlmi+xml;charset="UTF-8"`, list.Bytes())
	for i, p := range parts {
		part(cids[i], p.ct, p.body)
	}
	b.WriteString("--" + rlmiBoundary + "--\r\n")
	return b.Bytes()
}
