package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeTestCommand: the README's two commands are make run and make
// test, CI (.ci/run) runs exactly the README's test command, and the
// Makefile has both targets.
func TestReadmeTestCommand(t *testing.T) {
	readme := readFile(t, "../../README.md")
	block := regexp.MustCompile("(?s)## Two commands\n\n```sh\n(.*?)```").FindStringSubmatch(readme)
	if block == nil {
		t.Fatal("README has no Two commands block")
	}
	var cmds []string
	for _, line := range strings.Split(strings.TrimSpace(block[1]), "\n") {
		cmd, _, _ := strings.Cut(line, "#")
		cmds = append(cmds, strings.TrimSpace(cmd))
	}
	if strings.Join(cmds, "|") != "make run|make test" {
		t.Fatalf("README's two commands = %q, want make run and make test", cmds)
	}
	var ci []string
	for _, line := range strings.Split(readFile(t, "../../.ci/run"), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "set ") || strings.HasPrefix(line, "cd ") {
			continue
		}
		ci = append(ci, line)
	}
	if len(ci) != 1 || ci[0] != cmds[1] {
		t.Errorf(".ci/run runs %q, want exactly the README's test command %q", ci, cmds[1])
	}
	makefile := readFile(t, "../../Makefile")
	for _, target := range []string{"run", "test"} {
		if !regexp.MustCompile(`(?m)^` + target + `:`).MatchString(makefile) {
			t.Errorf("the Makefile has no %s target", target)
		}
	}
}

// TestDocsLinks: every relative link of the README and docs/*.md points
// to a file that exists, and a #fragment to one of its headings.
func TestDocsLinks(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	checked := 0
	for _, f := range files {
		for _, m := range link.FindAllStringSubmatch(readFile(t, f), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), path)
			}
			b, err := os.ReadFile(dest)
			if err != nil {
				t.Errorf("%s: link %s: %v", f, target, err)
				continue
			}
			checked++
			if frag != "" && strings.HasSuffix(dest, ".md") && !anchors(string(b))[frag] {
				t.Errorf("%s: link %s: no heading with that anchor in %s", f, target, dest)
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d links checked: the pattern misses them", checked)
	}
}

// anchors are the fragments GitHub gives a Markdown file's headings:
// lower case, punctuation but - and _ dropped, spaces as -.
func anchors(md string) map[string]bool {
	out := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		var b strings.Builder
		for _, r := range h {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				b.WriteRune(r)
			}
		}
		out[b.String()] = true
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
