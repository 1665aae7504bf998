package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

// startNodePeer runs node with args in dir (its modules installed, module
// telling) and returns the port it prints as {"listening": PORT} on
// stdout; every other JSON line of its stdout goes to onLine, in order. The
// process is killed when t ends.
func startNodePeer(t testing.TB, dir, module string, env []string, onLine func([]byte), args ...string) int {
	t.Helper()
	installNode(t, dir, module)
	cmd := exec.Command("node", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l struct {
				Listening int `json:"listening"`
			}
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				continue
			}
			if l.Listening != 0 {
				ready <- l.Listening
				continue
			}
			onLine(sc.Bytes())
		}
	}()
	select {
	case port := <-ready:
		return port
	case <-time.After(20 * time.Second):
		t.Fatalf("node %s in %s: not listening after 20s", strings.Join(args, " "), dir)
		return 0
	}
}
