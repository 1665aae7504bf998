package sip

import (
	"bytes"
	"encoding/xml"
	"strconv"
	"unicode/utf8"
)

// fastTree decodes the common shape of a NOTIFY body into the tree that
// decodeTree's encoding/xml decoder builds, several times faster and with
// few allocations: a busy extension's dialog document is tens of kilobytes
// and comes several times a second. It reads a UTF-8 document of elements,
// attributes, text and the five predefined and numeric character
// references, with an XML declaration at most. At anything else (a
// DOCTYPE, a comment, CDATA, a processing instruction, another encoding, a
// carriage return, a name that is not plain ASCII) and at anything
// malformed or over a limit, it gives up (ok false), and decodeTree's
// encoding/xml path decides, with its errors. FuzzFastTree holds the two
// paths to the same tree.
//
// body is the document without a BOM; base is added to every offset.
func fastTree(body []byte, base int64, maxElements int) (root *node, ok bool) {
	p := fastParser{b: body, base: base, s: string(body)}
	p.nodes = make([]node, 0, bytes.Count(body, []byte("</"))+1)
	p.skipSpace()
	if bytes.HasPrefix(p.b[p.i:], []byte("<?xml")) {
		if p.i != 0 || !p.decl() {
			return nil, false
		}
	}
	var (
		stack    []*node
		raw      [][]byte // the qualified names of the open elements, as written
		elements int
	)
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c != '<' {
			if len(stack) == 0 {
				if !p.skipSpace() || p.i < len(p.b) && p.b[p.i] != '<' {
					return nil, false // text outside the root element
				}
				continue
			}
			top := stack[len(stack)-1]
			text, ok := p.text()
			if !ok {
				return nil, false
			}
			top.text = append(top.text, text...)
			continue
		}
		if p.i+1 >= len(p.b) {
			return nil, false
		}
		switch p.b[p.i+1] {
		case '!', '?':
			return nil, false // comment, CDATA, DOCTYPE, processing instruction
		case '/':
			if len(stack) == 0 {
				return nil, false
			}
			p.i += 2
			name := p.name()
			if name == nil || !bytes.Equal(name, raw[len(raw)-1]) {
				return nil, false
			}
			p.skipSpace()
			if p.i >= len(p.b) || p.b[p.i] != '>' {
				return nil, false
			}
			p.i++
			n := stack[len(stack)-1]
			n.end = p.base + int64(p.i)
			stack, raw = stack[:len(stack)-1], raw[:len(raw)-1]
			p.pop()
			if len(stack) == 0 {
				// Only white space may follow the root.
				if !p.skipSpace() || p.i != len(p.b) {
					return nil, false
				}
				return root, true
			}
			continue
		}
		if root != nil && len(stack) == 0 {
			return nil, false
		}
		elements++
		if elements > maxElements || len(stack) >= MaxDepth {
			return nil, false
		}
		start := p.i
		p.i++
		qname := p.name()
		if qname == nil {
			return nil, false
		}
		n := p.node()
		n.start = p.base + int64(start)
		selfClosing, ok := p.attrs(n)
		if !ok {
			return nil, false
		}
		// Namespaces: this element's declarations are in scope for its
		// own name and attributes, as encoding/xml has them.
		p.push(n.attrs)
		prefix, local, ok := splitName(qname)
		if !ok {
			return nil, false
		}
		n.name = intern(local)
		if len(prefix) > 0 || n.name != "xmlns" {
			n.space = p.resolve(prefix, true)
		}
		for i := range n.attrs {
			a := &n.attrs[i]
			if a.Name.Space != "" && a.Name.Space != "xmlns" {
				a.Name.Space = p.resolve([]byte(a.Name.Space), false)
			}
		}
		if root == nil {
			root = n
		} else {
			parent := stack[len(stack)-1]
			parent.children = append(parent.children, n)
		}
		if selfClosing {
			n.end = p.base + int64(p.i)
			p.pop()
			if len(stack) == 0 {
				if !p.skipSpace() || p.i != len(p.b) {
					return nil, false
				}
				return root, true
			}
			continue
		}
		stack, raw = append(stack, n), append(raw, qname)
	}
	return nil, false // ended inside an element, or had none
}

// fastParser is fastTree's position in the body and its namespace scopes.
// Nodes and attributes come from slabs, and values without references are
// substrings of one copy of the body, so that a document costs a few
// allocations rather than several per element.
type fastParser struct {
	b    []byte
	s    string // b as a string: attribute values are its substrings
	i    int
	base int64
	ns   []nsBinding // declarations in scope, innermost last
	mark []int       // len(ns) when each open element was pushed

	nodes   []node     // slab of nodes
	attrBuf []xml.Attr // slab of attributes
	scratch []xml.Attr // the attributes of the start tag being read
}

// node returns a zero node from the slab.
func (p *fastParser) node() *node {
	if len(p.nodes) == cap(p.nodes) {
		p.nodes = make([]node, 0, 64)
	}
	p.nodes = p.nodes[:len(p.nodes)+1]
	return &p.nodes[len(p.nodes)-1]
}

// keepAttrs moves the scratch attributes into the slab and returns them.
func (p *fastParser) keepAttrs() []xml.Attr {
	m := len(p.scratch)
	if m == 0 {
		return nil
	}
	if cap(p.attrBuf)-len(p.attrBuf) < m {
		p.attrBuf = make([]xml.Attr, 0, max(256, m))
	}
	k := len(p.attrBuf)
	p.attrBuf = append(p.attrBuf, p.scratch...)
	return p.attrBuf[k : k+m : k+m]
}

type nsBinding struct{ prefix, url string }

// push opens an element's namespace scope with its xmlns attributes.
func (p *fastParser) push(attrs []xml.Attr) {
	p.mark = append(p.mark, len(p.ns))
	for _, a := range attrs {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			p.ns = append(p.ns, nsBinding{"", a.Value})
		case a.Name.Space == "xmlns":
			p.ns = append(p.ns, nsBinding{a.Name.Local, a.Value})
		}
	}
}

func (p *fastParser) pop() {
	p.ns = p.ns[:p.mark[len(p.mark)-1]]
	p.mark = p.mark[:len(p.mark)-1]
}

// resolve turns a prefix into its namespace as encoding/xml does: the
// innermost declaration; for an element without prefix the default
// namespace; an undeclared prefix stays as it is.
func (p *fastParser) resolve(prefix []byte, element bool) string {
	if len(prefix) == 0 && !element {
		return ""
	}
	if string(prefix) == "xml" {
		return "http://www.w3.org/XML/1998/namespace"
	}
	for i := len(p.ns) - 1; i >= 0; i-- {
		if p.ns[i].prefix == string(prefix) {
			return p.ns[i].url
		}
	}
	return intern(prefix)
}

// skipSpace skips spaces, tabs and line feeds, and reports false at a
// carriage return (left to encoding/xml, which folds line ends).
func (p *fastParser) skipSpace() bool {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n':
			p.i++
		case '\r':
			return false
		default:
			return true
		}
	}
	return true
}

// decl reads an XML declaration at the start: version 1.0 if given,
// encoding UTF-8 if given, and nothing it does not know.
func (p *fastParser) decl() bool {
	end := bytes.Index(p.b, []byte("?>"))
	if end < 0 {
		return false
	}
	rest := p.b[len("<?xml"):end]
	if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t' && rest[0] != '\n') {
		return false
	}
	q := fastParser{b: rest}
	for {
		q.skipSpace()
		if q.i == len(q.b) {
			break
		}
		name := q.name()
		if name == nil || !q.skipSpace() || q.i >= len(q.b) || q.b[q.i] != '=' {
			return false
		}
		q.i++
		q.skipSpace()
		v, ok := q.value()
		if !ok {
			return false
		}
		switch string(name) {
		case "version":
			if v != "1.0" {
				return false
			}
		case "encoding":
			if !bytes.EqualFold([]byte(v), []byte("utf-8")) {
				return false
			}
		case "standalone":
		default:
			return false
		}
		if q.i < len(q.b) && q.b[q.i] != ' ' && q.b[q.i] != '\t' && q.b[q.i] != '\n' {
			return false
		}
	}
	p.i = end + 2
	return true
}

// name reads a name of ASCII letters, digits and ._:- that starts with a
// letter, _ or :, or returns nil.
func (p *fastParser) name() []byte {
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == ':' ||
			p.i > start && ('0' <= c && c <= '9' || c == '.' || c == '-') {
			p.i++
			continue
		}
		break
	}
	if p.i == start || p.i < len(p.b) && p.b[p.i] >= utf8.RuneSelf {
		return nil
	}
	return p.b[start:p.i]
}

// splitName splits a qualified name at its colon; a name with more than
// one, or with nothing on either side, is not ours.
func splitName(q []byte) (prefix, local []byte, ok bool) {
	i := bytes.IndexByte(q, ':')
	if i < 0 {
		return nil, q, true
	}
	if i == 0 || i == len(q)-1 || bytes.IndexByte(q[i+1:], ':') >= 0 {
		return nil, nil, false
	}
	return q[:i], q[i+1:], true
}

// attrs reads a start tag's attributes up to and including its > or />.
func (p *fastParser) attrs(n *node) (selfClosing, ok bool) {
	p.scratch = p.scratch[:0]
	defer func() { n.attrs = p.keepAttrs() }()
	for {
		hadSpace := p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n')
		if !p.skipSpace() || p.i >= len(p.b) {
			return false, false
		}
		switch p.b[p.i] {
		case '>':
			p.i++
			return false, true
		case '/':
			if p.i+1 >= len(p.b) || p.b[p.i+1] != '>' {
				return false, false
			}
			p.i += 2
			return true, true
		}
		if !hadSpace {
			return false, false
		}
		qname := p.name()
		if qname == nil {
			return false, false
		}
		prefix, local, ok := splitName(qname)
		if !ok {
			return false, false
		}
		if !p.skipSpace() || p.i >= len(p.b) || p.b[p.i] != '=' {
			return false, false
		}
		p.i++
		if !p.skipSpace() {
			return false, false
		}
		v, ok := p.value()
		if !ok {
			return false, false
		}
		a := xml.Attr{Name: xml.Name{Local: intern(local)}, Value: v}
		if len(prefix) > 0 {
			a.Name.Space = intern(prefix)
		}
		for _, b := range p.scratch {
			if b.Name == a.Name {
				return false, false // a repeated attribute: encoding/xml decides
			}
		}
		p.scratch = append(p.scratch, a)
	}
}

// value reads a quoted attribute value, references resolved.
func (p *fastParser) value() (string, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' && p.b[p.i] != '\'' {
		return "", false
	}
	quote := p.b[p.i]
	p.i++
	end := bytes.IndexByte(p.b[p.i:], quote)
	if end < 0 {
		return "", false
	}
	from := p.i
	raw := p.b[p.i : p.i+end]
	p.i += end + 1
	if bytes.IndexByte(raw, '<') >= 0 {
		return "", false
	}
	v, ok := unescape(raw)
	switch {
	case !ok:
		return "", false
	case len(v) > 0 && len(raw) > 0 && &v[0] == &raw[0] && len(v) == len(raw) && p.s != "":
		return p.s[from : from+len(raw)], true // no references: a substring, no copy
	}
	return string(v), true
}

// text reads character data up to the next <, references resolved. The
// result shares the body's memory when it has no references; its capacity
// ends with it, so that appending to it copies.
func (p *fastParser) text() ([]byte, bool) {
	end := bytes.IndexByte(p.b[p.i:], '<')
	if end < 0 {
		return nil, false
	}
	raw := p.b[p.i : p.i+end : p.i+end]
	p.i += end
	if bytes.Contains(raw, []byte("]]>")) {
		return nil, false
	}
	return unescape(raw)
}

// unescape checks s's characters and resolves its references. Without
// references, s itself is returned.
func unescape(s []byte) ([]byte, bool) {
	amp := -1
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '&':
			if amp < 0 {
				amp = i
			}
			i++
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 || !inCharRange(r) {
				return nil, false
			}
			i += size
		case c < 0x20 && c != '\t' && c != '\n':
			return nil, false // control characters, and \r, which encoding/xml folds
		default:
			i++
		}
	}
	if amp < 0 {
		return s, true
	}
	out := make([]byte, 0, len(s))
	out = append(out, s[:amp]...)
	for i := amp; i < len(s); {
		if s[i] != '&' {
			out = append(out, s[i])
			i++
			continue
		}
		semi := bytes.IndexByte(s[i:], ';')
		if semi < 0 {
			return nil, false
		}
		ref := s[i+1 : i+semi]
		i += semi + 1
		switch string(ref) {
		case "lt":
			out = append(out, '<')
		case "gt":
			out = append(out, '>')
		case "amp":
			out = append(out, '&')
		case "apos":
			out = append(out, '\'')
		case "quot":
			out = append(out, '"')
		default:
			if len(ref) < 2 || ref[0] != '#' {
				return nil, false
			}
			var n uint64
			var err error
			if ref[1] == 'x' {
				n, err = strconv.ParseUint(string(ref[2:]), 16, 32)
			} else {
				n, err = strconv.ParseUint(string(ref[1:]), 10, 32)
			}
			if err != nil || len(ref) > 10 || !inCharRange(rune(n)) || ref[1] == '+' || ref[1] == 'x' && (len(ref) < 3 || ref[2] == '+') {
				return nil, false
			}
			out = utf8.AppendRune(out, rune(n))
		}
	}
	return out, true
}

// inCharRange reports whether r may appear in an XML document (the Char
// production of XML 1.0, as encoding/xml checks it).
func inCharRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// intern returns the names dialog-info and PIDF documents use as constant
// strings, without allocating; others are copied.
func intern(b []byte) string {
	switch string(b) {
	case "dialog-info":
		return "dialog-info"
	case "dialog":
		return "dialog"
	case "state":
		return "state"
	case "duration":
		return "duration"
	case "local":
		return "local"
	case "remote":
		return "remote"
	case "identity":
		return "identity"
	case "target":
		return "target"
	case "param":
		return "param"
	case "id":
		return "id"
	case "call-id":
		return "call-id"
	case "local-tag":
		return "local-tag"
	case "remote-tag":
		return "remote-tag"
	case "direction":
		return "direction"
	case "entity":
		return "entity"
	case "version":
		return "version"
	case "uri":
		return "uri"
	case "display":
		return "display"
	case "pname":
		return "pname"
	case "pvalue":
		return "pvalue"
	case "event":
		return "event"
	case "code":
		return "code"
	case "xmlns":
		return "xmlns"
	case "presence":
		return "presence"
	case "tuple":
		return "tuple"
	case "status":
		return "status"
	case "basic":
		return "basic"
	case "note":
		return "note"
	case "person":
		return "person"
	case "activities":
		return "activities"
	case "contact":
		return "contact"
	case "":
		return ""
	}
	return string(b)
}
