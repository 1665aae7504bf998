// Package testpbx starts real SIP peers for tests: a private Kamailio acting
// as a small PBX with dialog-event presence (RFC 4235 over RFC 6665), and sipp
// processes that register, place and answer calls, or play scripted scenarios.
//
// Everything listens on 127.0.0.1 on free ports, lives in tb.TempDir() and is
// stopped in tb.Cleanup, so tests using it may run in parallel. The packages
// kamailio, kamailio-presence-modules, kamailio-tls-modules (for
// StartKamailioTLS) and sip-tester (sipp) must be installed;
// scripts/install-test-deps.sh (run by make test) installs them on Debian.
//
// A test of a dialog-event subscriber typically reads:
//
//	k := testpbx.StartKamailio(t)
//	// subscribe to k.URI("101") (Event: dialog), sending to k.Addr()
//	k.PlaceCall(t, "100", "101", 500*time.Millisecond, time.Second)
//	// expect NOTIFYs: early, confirmed, terminated
//
// RunSipp plays any sipp scenario, such as testdata/sipp/fakepbx-notifier.xml,
// a scripted PBX that challenges and notifies a subscriber.
package testpbx

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

//go:embed kamailio.cfg.tmpl
var kamailioTemplate string

//go:embed testdata/sipp/*.xml
var scenarios embed.FS

// DBTextSchemaDir is where Debian's kamailio package ships the db_text
// table files; StartKamailio copies them into the test's directory.
const DBTextSchemaDir = "/usr/share/kamailio/dbtext/kamailio"

// DefaultDomain is the SIP domain of the PBX's users. It is a name under the
// reserved TLD .invalid, so it never resolves: requests always go to Addr().
const DefaultDomain = "testpbx.invalid"

const (
	startAttempts = 3
	readyTimeout  = 10 * time.Second
	stopTimeout   = time.Second
)

// Kamailio is a running private Kamailio instance started by StartKamailio.
type Kamailio struct {
	bin     string
	port    int
	tlsPort int // 0 without TLS
	domain  string
	dir     string
	cfgPath string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
	shmMiB  int           // Kamailio's shared memory (-m)
}

// StartKamailio starts a private Kamailio on 127.0.0.1 on a free port (UDP and
// TCP), with a configuration rendered from the embedded kamailio.cfg.tmpl into
// tb.TempDir(). It checks the configuration with `kamailio -c` first, runs
// Kamailio in the foreground with its log in a file, and returns once
// Kamailio answers an OPTIONS request. The process is stopped in tb.Cleanup,
// and its log is written with tb.Log when the test has failed.
//
// StartKamailio fails tb (Fatal) if kamailio is not installed, the
// configuration does not check, or Kamailio does not answer within 10s.
func StartKamailio(tb testing.TB) *Kamailio {
	tb.Helper()
	return startWith(tb, nil, defaultShmMiB)
}

// defaultShmMiB is the shared memory a test Kamailio gets: enough for the
// tests, not for thousands of subscriptions (presence keeps each one there,
// and answers 500 once it runs out).
const defaultShmMiB = 64

// StartKamailioLarge is StartKamailio with shmMiB MiB of shared memory, for
// benchmarks with thousands of subscriptions: 10,000 need more than 64.
func StartKamailioLarge(tb testing.TB, shmMiB int) *Kamailio {
	tb.Helper()
	return startWith(tb, nil, shmMiB)
}

// TLSFiles are the PEM files of the certificate Kamailio presents on its
// TLS listener (StartKamailioTLS).
type TLSFiles struct {
	CertFile, KeyFile string
}

// StartKamailioTLS is StartKamailio with a TLS listener besides, on
// TLSAddr(), presenting the certificate in files (which should name
// 127.0.0.1). Kamailio does not check its peers' certificates. It needs
// the package kamailio-tls-modules.
func StartKamailioTLS(tb testing.TB, files TLSFiles) *Kamailio {
	tb.Helper()
	return startWith(tb, &files, defaultShmMiB)
}

func startWith(tb testing.TB, tlsFiles *TLSFiles, shmMiB int) *Kamailio {
	tb.Helper()
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		bin = "/usr/sbin/kamailio"
		if _, statErr := os.Stat(bin); statErr != nil {
			tb.Fatalf("testpbx: kamailio not found (make deps installs it): %v", err)
		}
	}
	base := tb.TempDir()

	var lastErr error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		dir := filepath.Join(base, "kamailio-"+strconv.Itoa(attempt))
		k, err := startKamailio(tb, bin, dir, tlsFiles, shmMiB)
		if err == nil {
			return k
		}
		lastErr = err
		// A free port can be taken by someone else between picking and
		// binding it; only that failure is worth another attempt.
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	tb.Fatalf("testpbx: start kamailio: %v", lastErr)
	return nil
}

var errAddrInUse = errors.New("address already in use")

func startKamailio(tb testing.TB, bin, dir string, tlsFiles *TLSFiles, shmMiB int) (*Kamailio, error) {
	tb.Helper()
	dbDir := filepath.Join(dir, "db")
	if err := os.MkdirAll(dbDir, 0o755); err != nil {
		return nil, err
	}
	if err := copyDir(DBTextSchemaDir, dbDir); err != nil {
		return nil, fmt.Errorf("copy db_text schema (is kamailio installed?): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	k := &Kamailio{
		shmMiB:  shmMiB,
		port:    port,
		domain:  DefaultDomain,
		dir:     dir,
		cfgPath: filepath.Join(dir, "kamailio.cfg"),
		logPath: filepath.Join(dir, "kamailio.log"),
		done:    make(chan struct{}),
	}
	data := configData{Port: k.port, Domain: k.domain, DBURL: "text://" + dbDir}
	if tlsFiles != nil {
		if k.tlsPort, err = freePort(); err != nil {
			return nil, err
		}
		data.TLSPort, data.TLSConfig = k.tlsPort, filepath.Join(dir, "tls.cfg")
		tlsCfg := fmt.Sprintf(`[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = %s
private_key = %s

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
`, tlsFiles.CertFile, tlsFiles.KeyFile)
		if err := os.WriteFile(data.TLSConfig, []byte(tlsCfg), 0o644); err != nil {
			return nil, err
		}
	}
	cfg, err := renderConfig(data)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(k.cfgPath, cfg, 0o644); err != nil {
		return nil, err
	}

	check := exec.Command(bin, "-c", "-f", k.cfgPath, "-Y", dir)
	if out, err := check.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kamailio -c -f %s: %v\n%s", k.cfgPath, err, out)
	}

	k.bin = bin
	if err := k.launch(); err != nil {
		return nil, err
	}

	// Cleanups run last-in first-out: stop first, then dump the complete log.
	tb.Cleanup(func() {
		if tb.Failed() {
			log, _ := os.ReadFile(k.logPath)
			tb.Logf("--- kamailio log (%s), its end ---\n%s", k.logPath, trimLog(log, 12000))
		}
	})
	tb.Cleanup(k.stop)
	return k, nil
}

// launch starts the Kamailio process with the instance's configuration
// and waits until it answers OPTIONS. Its log is appended to the log file.
func (k *Kamailio) launch() error {
	logFile, err := os.OpenFile(k.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// -DD: no daemon, children still forked; -E: log to stderr; -Y: runtime
	// directory (FIFO/ctl files) inside the test directory.
	k.cmd = exec.Command(k.bin, "-DD", "-E", "-f", k.cfgPath, "-Y", k.dir, "-w", k.dir, "-m", strconv.Itoa(k.shmMiB), "-M", "8")
	k.cmd.Dir = k.dir
	k.cmd.Stdout = logFile
	k.cmd.Stderr = logFile
	// Pdeathsig: if the test process is killed before its cleanups run,
	// Kamailio gets SIGTERM and ends its children as on a normal stop
	// (SIGKILL would leave them running).
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := k.cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", k.bin, err)
	}
	done := make(chan struct{})
	k.done = done
	cmd := k.cmd
	go func() {
		k.waitErr = cmd.Wait()
		logFile.Close()
		close(done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := k.waitReady(ctx); err != nil {
		k.stop()
		log, _ := os.ReadFile(k.logPath)
		if bytes.Contains(log, []byte("Address already in use")) {
			err = fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return fmt.Errorf("%v\n--- kamailio log ---\n%s", err, log)
	}
	return nil
}

// Restart kills every process of this Kamailio (SIGKILL, as a crash or
// kill -9 would), waits for down, and starts it again with the same
// configuration and ports, returning once it answers OPTIONS. What it kept
// in memory is gone: registrations, dialogs, presentities and
// subscriptions. Restart fails tb (Fatal) if Kamailio does not come back.
func (k *Kamailio) Restart(tb testing.TB, down time.Duration) {
	tb.Helper()
	_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	<-k.done
	time.Sleep(down)
	if err := k.launch(); err != nil {
		tb.Fatalf("testpbx: restart kamailio: %v", err)
	}
}

// waitReady sends OPTIONS until Kamailio answers or ctx ends.
func (k *Kamailio) waitReady(ctx context.Context) error {
	for {
		select {
		case <-k.done:
			return fmt.Errorf("kamailio exited before answering: %v", k.waitErr)
		default:
		}
		attempt, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		res, err := sendRequest(attempt, k.Addr(), rawRequest{
			Method: "OPTIONS",
			URI:    "sip:" + k.Addr(),
			From:   "sip:testpbx@" + k.domain,
			To:     "sip:" + k.Addr(),
		})
		cancel()
		if err == nil && res.Status > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kamailio did not answer OPTIONS on %s: %v", k.Addr(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends Kamailio with SIGTERM and, if it has not exited within
// stopTimeout, kills its process group. Kamailio 5.6's main process now and
// then hangs in its module cleanup after the children are gone; the
// instance keeps nothing worth a clean shutdown. Children still alive after
// the main process exited are killed too.
func (k *Kamailio) stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	pgid := k.cmd.Process.Pid // Setpgid: the group of Kamailio's processes
	select {
	case <-k.done:
	default:
		_ = k.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-k.done:
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-k.done
		}
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // ESRCH when none is left
}

// Addr returns Kamailio's address, "127.0.0.1:port", for both UDP and TCP.
func (k *Kamailio) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(k.port))
}

// TLSAddr returns the address of Kamailio's TLS listener, "127.0.0.1:port",
// or "" if it was started without TLS.
func (k *Kamailio) TLSAddr() string {
	if k.tlsPort == 0 {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(k.tlsPort))
}

// Port returns the port Kamailio listens on (UDP and TCP).
func (k *Kamailio) Port() int { return k.port }

// Domain returns the SIP domain of the PBX's users (DefaultDomain), to be
// used in URIs such as "sip:101@" + k.Domain(). It does not resolve; send
// requests to Addr().
func (k *Kamailio) Domain() string { return k.domain }

// URI returns the address-of-record of an extension, "sip:ext@domain".
func (k *Kamailio) URI(ext string) string { return "sip:" + ext + "@" + k.domain }

// Dir returns the directory holding the generated configuration, the db_text
// tables and the log of this instance.
func (k *Kamailio) Dir() string { return k.dir }

// Log returns what Kamailio has logged so far.
func (k *Kamailio) Log() string {
	b, _ := os.ReadFile(k.logPath)
	return string(b)
}

// Register binds extension ext to contact (a SIP URI such as
// "sip:101@127.0.0.1:5070") in Kamailio's location table for expires, as a
// REGISTER without authentication would. An expires of 0 removes the
// binding. Register fails tb (Fatal) unless Kamailio answers 200.
func (k *Kamailio) Register(tb testing.TB, ext, contact string, expires time.Duration) {
	tb.Helper()
	if err := k.register(ext, contact, expires); err != nil {
		tb.Fatalf("testpbx: %v", err)
	}
}

func (k *Kamailio) register(ext, contact string, expires time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	secs := strconv.Itoa(int(expires / time.Second))
	res, err := sendRequest(ctx, k.Addr(), rawRequest{
		Method:  "REGISTER",
		URI:     "sip:" + k.domain,
		From:    k.URI(ext),
		To:      k.URI(ext),
		Headers: []string{"Contact: <" + contact + ">;expires=" + secs, "Expires: " + secs},
	})
	if err != nil {
		return fmt.Errorf("REGISTER %s -> %s: %w", ext, contact, err)
	}
	if res.Status != 200 {
		return fmt.Errorf("REGISTER %s -> %s: got %d %s", ext, contact, res.Status, res.Reason)
	}
	return nil
}

// Registered reports whether extension ext has a binding in Kamailio's
// location table. It fails tb (Fatal) if Kamailio does not answer.
func (k *Kamailio) Registered(tb testing.TB, ext string) bool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := sendRequest(ctx, k.Addr(), rawRequest{
		Method: "OPTIONS",
		URI:    k.URI(ext),
		From:   "sip:testpbx@" + k.domain,
		To:     k.URI(ext),
	})
	if err != nil {
		tb.Fatalf("testpbx: OPTIONS %s: %v", ext, err)
	}
	return res.Status == 200
}

type configData struct {
	Port      int
	Domain    string
	DBURL     string
	TLSPort   int
	TLSConfig string
}

func renderConfig(data configData) ([]byte, error) {
	tmpl, err := template.New("kamailio.cfg").Option("missingkey=error").Parse(kamailioTemplate)
	if err != nil {
		return nil, fmt.Errorf("parse kamailio.cfg.tmpl: %w", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render kamailio.cfg.tmpl: %w", err)
	}
	return buf.Bytes(), nil
}

func copyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Test ports are drawn at random below Linux's default ephemeral range
// (32768-60999), from which the kernel hands out ports to every bind(":0")
// and outgoing connection: a port taken from there can be handed to someone
// else between the check and the peer's own bind, which made parallel tests
// flaky.
const (
	portLo = 20000
	portHi = 32768
)

// freePort returns a port on 127.0.0.1 that is free for both UDP and TCP at
// the time of the call.
func freePort() (int, error) {
	for range 100 {
		port := portLo + rand.IntN(portHi-portLo)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, errors.New("testpbx: no free port on 127.0.0.1 for both UDP and TCP")
}

// FreePort returns a port on 127.0.0.1 that is free for both UDP and TCP at
// the time of the call, or fails tb (Fatal).
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func trimLog(b []byte, max int) string {
	if len(b) <= max {
		return string(b)
	}
	cut := b[len(b)-max:]
	if i := bytes.IndexByte(cut, '\n'); i >= 0 {
		cut = cut[i+1:]
	}
	return "[… " + strconv.Itoa(len(b)-len(cut)) + " bytes cut …]\n" + strings.TrimLeft(string(cut), "\n")
}
