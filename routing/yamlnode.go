package routing

import (
	"errors"
	"fmt"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	yamlparser "github.com/goccy/go-yaml/parser"
)

// node is a YAML value with where it stands in the file: the parser's tree
// reduced to what the rules need (scalars as written, mappings in order,
// sequences), so that every error can name its line.
type node struct {
	kind      nodeKind
	text      string // a scalar as written (unquoted)
	line, col int
	keys      []*node // mapping: the keys, scalars
	vals      []*node // mapping: the values, by key
	items     []*node // sequence
}

type nodeKind uint8

const (
	kindNull nodeKind = iota
	kindScalar
	kindMap
	kindSeq
)

func (k nodeKind) String() string {
	return [...]string{"nothing", "a value", "a mapping", "a list"}[k]
}

// maxDepth bounds how deep a rules file nests: rules nest menus by name,
// not by depth, so a real file stays far below it.
const maxDepth = 32

// parseYAML reads data into a tree of nodes. A syntax error comes back as
// one *Problem with its line.
func parseYAML(data []byte) (*node, error) {
	f, err := yamlparser.ParseBytes(data, 0)
	if err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) && ye.GetToken() != nil {
			p := ye.GetToken().Position
			return nil, &Problem{Line: p.Line, Col: p.Column, Msg: "YAML: " + ye.GetMessage()}
		}
		return nil, &Problem{Line: 1, Msg: "YAML: " + err.Error()}
	}
	if len(f.Docs) == 0 || f.Docs[0].Body == nil {
		return &node{kind: kindNull, line: 1, col: 1}, nil
	}
	if len(f.Docs) > 1 {
		p := pos(f.Docs[1].Body)
		return nil, &Problem{Line: p.line, Col: p.col, Msg: "one YAML document only; this file has more (---)"}
	}
	return convert(f.Docs[0].Body, 0)
}

type at struct{ line, col int }

func pos(n ast.Node) at {
	if n == nil || n.GetToken() == nil {
		return at{1, 1}
	}
	p := n.GetToken().Position
	return at{p.Line, p.Column}
}

// convert turns a parser node into a node. Anchors are read through;
// aliases and merge keys are refused, so that a small file cannot expand
// into a large one.
func convert(n ast.Node, depth int) (*node, error) {
	p := pos(n)
	if depth > maxDepth {
		return nil, &Problem{Line: p.line, Col: p.col, Msg: fmt.Sprintf("nested deeper than %d levels", maxDepth)}
	}
	out := &node{line: p.line, col: p.col}
	switch n := n.(type) {
	case nil, *ast.NullNode:
		out.kind = kindNull
	case *ast.StringNode:
		out.kind, out.text = kindScalar, n.Value
	case *ast.LiteralNode:
		out.kind, out.text = kindScalar, n.Value.Value
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		out.kind, out.text = kindScalar, n.GetToken().Value
	case *ast.TagNode:
		return convert(n.Value, depth+1)
	case *ast.AnchorNode:
		return convert(n.Value, depth+1)
	case *ast.AliasNode:
		return nil, &Problem{Line: p.line, Col: p.col, Msg: "aliases (*name) are not supported; write the value out"}
	case *ast.MappingValueNode:
		out.kind = kindMap
		if err := addPair(out, n, depth); err != nil {
			return nil, err
		}
	case *ast.MappingNode:
		out.kind = kindMap
		for _, v := range n.Values {
			if err := addPair(out, v, depth); err != nil {
				return nil, err
			}
		}
	case *ast.SequenceNode:
		out.kind = kindSeq
		for _, v := range n.Values {
			c, err := convert(v, depth+1)
			if err != nil {
				return nil, err
			}
			out.items = append(out.items, c)
		}
	case *ast.CommentGroupNode:
		out.kind = kindNull
	default:
		return nil, &Problem{Line: p.line, Col: p.col, Msg: fmt.Sprintf("unsupported YAML (%s)", n.Type())}
	}
	return out, nil
}

func addPair(m *node, kv *ast.MappingValueNode, depth int) error {
	if _, ok := kv.Key.(*ast.MergeKeyNode); ok {
		p := pos(kv.Key)
		return &Problem{Line: p.line, Col: p.col, Msg: "merge keys (<<) are not supported; write the values out"}
	}
	k, err := convert(kv.Key, depth+1)
	if err != nil {
		return err
	}
	if k.kind != kindScalar {
		return &Problem{Line: k.line, Col: k.col, Msg: "a key must be a plain value"}
	}
	for _, seen := range m.keys {
		if seen.text == k.text {
			return &Problem{Line: k.line, Col: k.col, Msg: fmt.Sprintf("%q given twice (first on line %d)", k.text, seen.line)}
		}
	}
	v, err := convert(kv.Value, depth+1)
	if err != nil {
		return err
	}
	if v.kind == kindNull && kv.Value != nil {
		// an empty value stands where its key does
		v.line, v.col = k.line, k.col
	}
	m.keys = append(m.keys, k)
	m.vals = append(m.vals, v)
	return nil
}

// get returns the value of key in mapping m, or nil.
func (m *node) get(key string) *node {
	for i, k := range m.keys {
		if k.text == key {
			return m.vals[i]
		}
	}
	return nil
}

// list returns n's items if it is a sequence, n alone if it is a scalar:
// a field that takes a list takes one value as well.
func (n *node) list() []*node {
	switch n.kind {
	case kindSeq:
		return n.items
	case kindScalar:
		return []*node{n}
	}
	return nil
}
