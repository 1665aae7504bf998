package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// npmInstalls remembers each folder's npm ci, so that it runs once per
// test binary and every test needing the folder sees its outcome.
var npmInstalls sync.Map // dir → *npmInstall

type npmInstall struct {
	once sync.Once
	out  []byte
	err  error
}

// installNode makes sure node and npm are there and that dir's Node
// program has its modules (npm ci, pinned by its package-lock.json), whose
// presence module tells; it fails t otherwise.
func installNode(t testing.TB, dir, module string) {
	t.Helper()
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found (make deps installs it; Debian: apt-get install nodejs npm): %v", bin, err)
		}
	}
	v, _ := npmInstalls.LoadOrStore(dir, &npmInstall{})
	in := v.(*npmInstall)
	in.once.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", module)); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--silent")
		cmd.Dir = dir
		in.out, in.err = cmd.CombinedOutput()
	})
	if in.err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, in.err, in.out)
	}
}
