package sip

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Limits applied to every NOTIFY body before and while it is decoded. A body
// that breaks one is rejected with an error matching both ErrBadBody and
// ErrLimit.
//
// Dialog-info documents have limits of their own: a PBX lists every dialog
// of an extension in a full document, so a queue or hunt-group extension
// with dozens of calls at once sends documents of tens of kilobytes
// (Kamailio about 1 KB a dialog). Such documents need a stream transport
// (TCP or TLS): a UDP datagram carries at most 64 KB.
const (
	// MaxBodySize is the largest PIDF body, in bytes, the parsers accept.
	MaxBodySize = 64 << 10
	// MaxDialogBodySize is the largest dialog-info body, in bytes.
	MaxDialogBodySize = 1 << 20
	// MaxDepth is the deepest element nesting accepted; the root is at depth 1.
	MaxDepth = 32
	// MaxElements is the most elements accepted in one PIDF document.
	MaxElements = 4096
	// MaxDialogElements is the most elements accepted in one dialog-info
	// document.
	MaxDialogElements = 64 << 10
	// MaxDialogs is the most <dialog> elements accepted in one dialog-info document.
	MaxDialogs = 4096
)

var (
	// ErrBadBody is matched (errors.Is) by every error the body parsers return
	// for a body they cannot use: not XML, the wrong root element, a missing or
	// malformed required value, or a broken limit.
	ErrBadBody = errors.New("bad body")

	// ErrLimit is matched, together with ErrBadBody, when a body breaks one of
	// MaxBodySize, MaxDepth, MaxElements or MaxDialogs.
	ErrLimit = errors.New("limit exceeded")

	// ErrEmptyBody is returned for a body that is empty or holds only
	// whitespace. It does not match ErrBadBody: PBXs send an empty NOTIFY to
	// mean "no information yet", typically on the first NOTIFY of a
	// subscription.
	ErrEmptyBody = errors.New("empty body")
)

// bodyError is the error the parsers return for a body they reject. It
// matches ErrBadBody, and ErrLimit when limit is set, and unwraps to the
// decoder error, if any, so errors.As finds an *xml.SyntaxError.
type bodyError struct {
	doc   string // "dialog-info" or "pidf"
	msg   string
	limit bool
	err   error
}

func (e *bodyError) Error() string {
	s := "sip: " + e.doc + ": " + e.msg
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *bodyError) Is(target error) bool {
	return target == ErrBadBody || (e.limit && target == ErrLimit)
}

func (e *bodyError) Unwrap() error { return e.err }

func badBody(doc, format string, args ...any) error {
	return &bodyError{doc: doc, msg: fmt.Sprintf(format, args...)}
}

func limitBody(doc, format string, args ...any) error {
	return &bodyError{doc: doc, msg: fmt.Sprintf(format, args...), limit: true}
}

// node is one element of the small tree the parsers decode a body into.
// name is the local name; space is the namespace the document declared for it
// (or its raw prefix when the document never declared that prefix).
type node struct {
	space, name string
	attrs       []xml.Attr
	text        []byte // character data directly inside the element, concatenated
	children    []*node
	start, end  int64 // the element's bytes in the body, when raw (see decodeTree)
}

// attr returns the value of the attribute with the given local name, whatever
// its namespace, and whether it was present.
func (n *node) attr(name string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// textTrim returns the element's own text with surrounding white space removed.
func (n *node) textTrim() string {
	return string(bytes.TrimSpace(n.text))
}

// child returns the first child with the given local name accepted by ok.
func (n *node) child(name string, ok func(*node) bool) *node {
	for _, c := range n.children {
		if c.name == name && ok(c) {
			return c
		}
	}
	return nil
}

// utf8BOM is stripped from the start of a body; encoding/xml rejects it.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// decodeTree checks the size of body (at most maxSize) and decodes it into a
// tree, enforcing MaxDepth and maxElements while it reads. It returns ErrEmptyBody for a body
// of only whitespace. Comments, processing instructions and directives
// (including a DOCTYPE, whose entities are never expanded) are skipped.
//
// When the document is UTF-8 (it declares no other encoding), every
// element's start and end are its bytes' offsets in body, BOM included, so
// that a caller can keep an element as received without copying it; raw
// reports whether they are.
func decodeTree(doc string, body []byte, maxSize, maxElements int) (root *node, raw bool, err error) {
	if len(body) > maxSize {
		return nil, false, limitBody(doc, "body of %d bytes is larger than %d", len(body), maxSize)
	}
	base := int64(0)
	if bytes.HasPrefix(body, utf8BOM) {
		body, base = body[len(utf8BOM):], int64(len(utf8BOM))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, false, ErrEmptyBody
	}
	if root, ok := fastTree(body, base, maxElements); ok {
		return root, true, nil
	}
	return slowTree(doc, body, base, maxElements)
}

// slowTree is decodeTree's encoding/xml path: any document, and every
// error.
func slowTree(doc string, body []byte, base int64, maxElements int) (root *node, raw bool, err error) {

	d := xml.NewDecoder(bytes.NewReader(body))
	converted := false
	d.CharsetReader = func(charset string, input io.Reader) (io.Reader, error) {
		r, err := charsetReader(charset, input)
		if r != input {
			converted = true // offsets are the converted text's from now on
		}
		return r, err
	}
	d.Strict = true

	var (
		stack    []*node
		elements int
	)
	for {
		at := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, &bodyError{doc: doc, msg: "not XML", err: err}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			elements++
			if elements > maxElements {
				return nil, false, limitBody(doc, "more than %d elements", maxElements)
			}
			if len(stack) >= MaxDepth {
				return nil, false, limitBody(doc, "elements nested deeper than %d", MaxDepth)
			}
			if root != nil && len(stack) == 0 {
				return nil, false, badBody(doc, "not XML: more than one root element")
			}
			n := &node{space: t.Name.Space, name: t.Name.Local, attrs: t.Attr, start: base + at}
			if len(stack) == 0 {
				root = n
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			// The decoder, in strict mode, has already checked that this
			// matches the open element.
			stack[len(stack)-1].end = base + d.InputOffset()
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, false, badBody(doc, "not XML: text outside the root element")
				}
				continue
			}
			top := stack[len(stack)-1]
			top.text = append(top.text, t...)
		}
	}
	if root == nil {
		return nil, false, badBody(doc, "not XML: no root element")
	}
	return root, !converted, nil
}

// charsetReader lets the decoder read documents declared as US-ASCII or
// ISO-8859-1 (and its common aliases) as well as UTF-8, which encoding/xml
// handles itself. Any other encoding is refused.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(charset)) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1":
		return &latin1Reader{r: input}, nil
	}
	return nil, fmt.Errorf("unsupported encoding %q", charset)
}

// latin1Reader converts ISO-8859-1 bytes to UTF-8.
type latin1Reader struct {
	r   io.Reader
	buf []byte
	out []byte
}

func (l *latin1Reader) Read(p []byte) (int, error) {
	if len(l.out) == 0 {
		if cap(l.buf) == 0 {
			l.buf = make([]byte, 512)
		}
		n, err := l.r.Read(l.buf[:cap(l.buf)])
		if n == 0 {
			return 0, err
		}
		l.out = l.out[:0]
		for _, b := range l.buf[:n] {
			l.out = utf8.AppendRune(l.out, rune(b))
		}
	}
	n := copy(p, l.out)
	l.out = l.out[n:]
	return n, nil
}
