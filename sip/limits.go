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
const (
	// MaxBodySize is the largest body, in bytes, the parsers accept.
	MaxBodySize = 64 << 10
	// MaxDepth is the deepest element nesting accepted; the root is at depth 1.
	MaxDepth = 32
	// MaxElements is the most elements accepted in one document.
	MaxElements = 4096
	// MaxDialogs is the most <dialog> elements accepted in one dialog-info document.
	MaxDialogs = 1024
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

// decodeTree checks the size of body and decodes it into a tree, enforcing
// MaxDepth and MaxElements while it reads. It returns ErrEmptyBody for a body
// of only whitespace. Comments, processing instructions and directives
// (including a DOCTYPE, whose entities are never expanded) are skipped.
func decodeTree(doc string, body []byte) (*node, error) {
	if len(body) > MaxBodySize {
		return nil, limitBody(doc, "body of %d bytes is larger than %d", len(body), MaxBodySize)
	}
	body = bytes.TrimPrefix(body, utf8BOM)
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, ErrEmptyBody
	}

	d := xml.NewDecoder(bytes.NewReader(body))
	d.CharsetReader = charsetReader
	d.Strict = true

	var (
		root     *node
		stack    []*node
		elements int
	)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &bodyError{doc: doc, msg: "not XML", err: err}
		}
		switch t := tok.(type) {
		case xml.StartElement:
			elements++
			if elements > MaxElements {
				return nil, limitBody(doc, "more than %d elements", MaxElements)
			}
			if len(stack) >= MaxDepth {
				return nil, limitBody(doc, "elements nested deeper than %d", MaxDepth)
			}
			if root != nil && len(stack) == 0 {
				return nil, badBody(doc, "not XML: more than one root element")
			}
			n := &node{space: t.Name.Space, name: t.Name.Local, attrs: t.Attr}
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
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, badBody(doc, "not XML: text outside the root element")
				}
				continue
			}
			top := stack[len(stack)-1]
			top.text = append(top.text, t...)
		}
	}
	if root == nil {
		return nil, badBody(doc, "not XML: no root element")
	}
	return root, nil
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
