package routing_test

import (
	"os"
	"strings"
	"testing"

	"github.com/callstate/callstate/routing"
)

// TestDocsExamples parses every YAML example of docs/routing.md: the docs
// show only files that work.
func TestDocsExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/routing.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```yaml\n")[1:]
	if len(blocks) < 6 {
		t.Fatalf("%d examples, want the six of the docs", len(blocks))
	}
	for i, b := range blocks {
		src, _, _ := strings.Cut(b, "```")
		if _, err := routing.Parse([]byte(src), plan); err != nil {
			t.Errorf("example %d:\n%s\n%v", i+1, src, err)
		}
	}
}
