package sip

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// sameTree returns where a and b differ, or "".
func sameTree(a, b *node, path string) string {
	switch {
	case a.space != b.space || a.name != b.name:
		return fmt.Sprintf("%s: element {%s}%s, want {%s}%s", path, a.space, a.name, b.space, b.name)
	case !bytes.Equal(a.text, b.text):
		return fmt.Sprintf("%s: text %q, want %q", path, a.text, b.text)
	case a.start != b.start || a.end != b.end:
		return fmt.Sprintf("%s: bytes %d-%d, want %d-%d", path, a.start, a.end, b.start, b.end)
	case len(a.attrs) != len(b.attrs):
		return fmt.Sprintf("%s: attributes %v, want %v", path, a.attrs, b.attrs)
	case len(a.children) != len(b.children):
		return fmt.Sprintf("%s: %d children, want %d", path, len(a.children), len(b.children))
	}
	for i := range a.attrs {
		if a.attrs[i] != b.attrs[i] {
			return fmt.Sprintf("%s: attribute %v, want %v", path, a.attrs[i], b.attrs[i])
		}
	}
	for i := range a.children {
		if d := sameTree(a.children[i], b.children[i], fmt.Sprintf("%s/%s[%d]", path, a.children[i].name, i)); d != "" {
			return d
		}
	}
	return ""
}

// checkFastTree fails t when fastTree accepts body and encoding/xml does
// not, or reads it otherwise.
func checkFastTree(t *testing.T, body []byte) (fast bool) {
	t.Helper()
	root, ok := fastTree(body, 0, MaxDialogElements)
	if !ok {
		return false
	}
	want, raw, err := slowTree("test", body, 0, MaxDialogElements)
	if err != nil {
		t.Fatalf("fast path read a body encoding/xml refuses (%v): %q", err, body)
	}
	if !raw {
		t.Fatalf("fast path read a body encoding/xml converted from another encoding: %q", body)
	}
	if d := sameTree(root, want, root.name); d != "" {
		t.Fatalf("fast path and encoding/xml differ: %s\nbody: %q", d, body)
	}
	return true
}

// fastTreeSeeds are bodies on the edges of what the fast path reads.
var fastTreeSeeds = []string{
	`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="sip:1@x"/>`,
	`<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<d:dialog-info xmlns:d="urn:ietf:params:xml:ns:dialog-info"><d:dialog id="a&amp;b&#65;&#x42;"><d:state>early</d:state></d:dialog></d:dialog-info>`,
	`<a xmlns="u1"><b xmlns=""><c/></b><x:y xmlns:x="u2" x:attr="v" attr='w'>t&lt;&gt;&quot;&apos;</x:y></a>`,
	`<a><undeclared:b/></a>`,
	`<a xml:lang="de">Grüße ☎</a>`,
	"<a>\r\n</a>",
	`<a><!-- c --></a>`,
	`<a><![CDATA[x]]></a>`,
	`<!DOCTYPE a><a/>`,
	`<?xml version="1.1"?><a/>`,
	`<?xml version="1.0" encoding="ISO-8859-1"?><a>é</a>`,
	`<a b="1" b="2"/>`,
	`<a b="1"c="2"/>`,
	`<a>&unknown;</a>`,
	`<a>&#0;</a>`,
	`<a>x</b>`,
	`<a/><b/>`,
	`text<a/>`,
	`<a/>text`,
	`<a b="<"/>`,
	`<a:b:c/>`,
	`<xmlns/>`,
	`<a>]]></a>`,
	"<a>\x01</a>",
	"<a>\xff</a>",
	`<a`,
	`<a b=c/>`,
}

func TestFastTree(t *testing.T) {
	var paths []string
	for _, dir := range []string{"dialoginfo", "kamailio", "pidf", "agent"} {
		p, _ := filepath.Glob(filepath.Join("testdata", dir, "*.xml"))
		paths = append(paths, p...)
	}
	fast := 0
	for _, p := range paths {
		body, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(p), func(t *testing.T) {
			if checkFastTree(t, bytes.TrimPrefix(body, utf8BOM)) {
				fast++
			}
		})
	}
	// Every Kamailio capture is of the shape the fast path is for.
	kamailio, _ := filepath.Glob(filepath.Join("testdata", "kamailio", "*.xml"))
	if fast < len(kamailio) {
		t.Errorf("fast path read %d of %d captures, want at least the %d of Kamailio", fast, len(paths), len(kamailio))
	}
	for i, s := range fastTreeSeeds {
		t.Run(fmt.Sprint("seed", i), func(t *testing.T) { checkFastTree(t, []byte(s)) })
	}
}

func FuzzFastTree(f *testing.F) {
	for _, s := range fastTreeSeeds {
		f.Add([]byte(s))
	}
	for _, dir := range []string{"dialoginfo", "kamailio", "pidf"} {
		paths, _ := filepath.Glob(filepath.Join("testdata", dir, "*.xml"))
		for _, p := range paths {
			if body, err := os.ReadFile(p); err == nil && len(body) < 8<<10 {
				f.Add(body)
			}
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastTree(t, body)
	})
}
