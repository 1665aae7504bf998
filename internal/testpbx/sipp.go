package testpbx

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// SippTimeout is the global timeout RunSipp gives sipp (-timeout, with
// -timeout_error) unless the arguments set their own. The Go side kills
// sipp if it runs 30s longer than that.
const SippTimeout = 60 * time.Second

// SippProcess is a sipp process started by RunSipp.
type SippProcess struct {
	name     string
	port     int
	dir      string
	args     []string
	cmd      *exec.Cmd
	outPath  string
	errPath  string
	msgPath  string
	done     chan struct{}
	waitErr  error
	reported atomic.Bool // report already given by Err
}

// RunSipp starts sipp in the background with the given scenario and returns
// at once; call Wait to collect the result.
//
// scenario is either the name of a scenario embedded in this package (the
// files in testdata/sipp, for example "fakepbx-notifier.xml" or
// "uas-answer.xml") or a path to a scenario file. RunSipp adds
//
//	-sf <scenario> -i 127.0.0.1 -p <free port> -nostdin
//	-trace_err -error_file <dir>/errors.log
//	-trace_msg -message_file <dir>/messages.log
//	-timeout 60 -timeout_error
//
// before args, with <dir> a directory under tb.TempDir(). args are passed on
// unchanged, so they may set the remote address ("127.0.0.1:5060"), -m, -d,
// -key and so on; when they contain -p, RunSipp uses that port instead of
// picking one. sipp keeps running in the foreground of its own process (not
// -bg), so Wait can see its exit status; it is killed in tb.Cleanup if it
// still runs then, and its output and traces are logged if the test failed
// without Wait or Err having reported them.
//
// RunSipp fails tb (Fatal) if sipp is not installed or cannot be started.
func RunSipp(tb testing.TB, scenario string, args ...string) *SippProcess {
	tb.Helper()
	bin, err := exec.LookPath("sipp")
	if err != nil {
		tb.Fatalf("testpbx: sipp not found (make deps installs it): %v", err)
	}
	dir, err := os.MkdirTemp(tb.TempDir(), "sipp-")
	if err != nil {
		tb.Fatal(err)
	}
	scenarioPath, err := scenarioFile(scenario, dir)
	if err != nil {
		tb.Fatalf("testpbx: sipp scenario %q: %v", scenario, err)
	}

	port := 0
	for i, a := range args {
		if a == "-p" && i+1 < len(args) {
			if port, err = strconv.Atoi(args[i+1]); err != nil {
				tb.Fatalf("testpbx: sipp -p %q: %v", args[i+1], err)
			}
		}
	}
	full := []string{"-sf", scenarioPath, "-i", "127.0.0.1", "-nostdin"}
	if port == 0 {
		port = FreePort(tb)
		full = append(full, "-p", strconv.Itoa(port))
	}
	p := &SippProcess{
		name:    filepath.Base(scenario),
		port:    port,
		dir:     dir,
		outPath: filepath.Join(dir, "sipp.out"),
		errPath: filepath.Join(dir, "errors.log"),
		msgPath: filepath.Join(dir, "messages.log"),
		done:    make(chan struct{}),
	}
	full = append(full,
		"-trace_err", "-error_file", p.errPath,
		"-trace_msg", "-message_file", p.msgPath,
		"-timeout", strconv.Itoa(int(SippTimeout/time.Second)), "-timeout_error",
	)
	full = append(full, args...)
	p.args = full

	out, err := os.Create(p.outPath)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), SippTimeout+30*time.Second)
	p.cmd = exec.CommandContext(ctx, bin, full...)
	p.cmd.Dir = dir
	p.cmd.Stdout = out
	p.cmd.Stderr = out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		cancel()
		out.Close()
		tb.Fatalf("testpbx: start sipp %s: %v", strings.Join(full, " "), err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		out.Close()
		cancel()
		close(p.done)
	}()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(3 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if tb.Failed() && !p.reported.Load() {
			tb.Logf("testpbx: sipp %s (exit: %v)\n%s", p.name, p.waitErr, p.report())
		}
	})
	return p
}

// Port returns the local port sipp listens on.
func (p *SippProcess) Port() int { return p.port }

// Addr returns sipp's local address, "127.0.0.1:port".
func (p *SippProcess) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

// Dir returns the directory holding sipp's output and trace files.
func (p *SippProcess) Dir() string { return p.dir }

// Done returns a channel that is closed when sipp has exited.
func (p *SippProcess) Done() <-chan struct{} { return p.done }

// Err waits for sipp to exit and returns nil if it exited with status 0, or
// an error carrying sipp's exit status, output, unexpected messages and
// message trace. Unlike Wait it may be called from any goroutine.
func (p *SippProcess) Err() error {
	<-p.done
	if p.waitErr == nil {
		return nil
	}
	p.reported.Store(true)
	return fmt.Errorf("sipp %s: %w\n%s", p.name, p.waitErr, p.report())
}

// Wait waits for sipp to exit and fails tb (Fatal) with sipp's output and
// traces unless it exited with status 0 (all calls successful). Like
// tb.Fatal, it must be called from the goroutine running the test.
func (p *SippProcess) Wait(tb testing.TB) {
	tb.Helper()
	if err := p.Err(); err != nil {
		tb.Fatalf("testpbx: %v", err)
	}
}

func (p *SippProcess) report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- command ---\nsipp %s\n", strings.Join(p.args, " "))
	for _, f := range []struct{ title, path string }{
		{"output", p.outPath},
		{"unexpected messages (-trace_err)", p.errPath},
		{"messages (-trace_msg)", p.msgPath},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s ---\n%s\n", f.title, trimLog(data, 12000))
	}
	return b.String()
}

// scenarioFile returns the path of scenario: a scenario embedded in this
// package is written into dir, anything else is taken as a path.
func scenarioFile(scenario, dir string) (string, error) {
	if !strings.ContainsRune(scenario, filepath.Separator) {
		data, err := fs.ReadFile(scenarios, "testdata/sipp/"+scenario)
		if err == nil {
			path := filepath.Join(dir, scenario)
			return path, os.WriteFile(path, data, 0o644)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	abs, err := filepath.Abs(scenario)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("neither embedded in testpbx nor a file: %w", err)
	}
	return abs, nil
}

// Scenarios returns the names of the sipp scenarios embedded in this
// package, for RunSipp.
func Scenarios() []string {
	entries, _ := fs.ReadDir(scenarios, "testdata/sipp")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
