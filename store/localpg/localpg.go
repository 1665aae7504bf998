// Package localpg runs a private PostgreSQL cluster from the server binaries
// installed on the machine. The service uses it when no DATABASE_URL is given,
// and the tests use it through storetest.
//
// The postmaster runs as a child process of the caller, listens on 127.0.0.1
// only and has no unix socket. When the caller is root, the server runs as an
// unprivileged OS user, because PostgreSQL refuses to run as root. On Linux
// the kernel shuts the server down when the caller dies without calling
// Server.Stop, so no orphan postmaster is left behind.
package localpg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoServer is returned by Start when no PostgreSQL server binaries
// (postgres and initdb) can be found.
var ErrNoServer = errors.New("localpg: no PostgreSQL server binaries (postgres, initdb) found: " +
	"install them (Debian/Ubuntu: apt-get install postgresql; other systems: the PostgreSQL server package), " +
	"or set DATABASE_URL to use an existing server instead")

// superuser is the role initdb creates and the URL connects as.
const superuser = "postgres"

// readyTimeout bounds the wait for a starting server when ctx has no deadline.
const readyTimeout = 60 * time.Second

// busyWait is how long Start waits for an earlier server on the same data
// dir to exit.
const busyWait = 5 * time.Second

// logName is the server log's file in the data dir.
const logName = "postgres.log"

// maxLogSize is the size above which the server log is moved aside at start.
const maxLogSize = 8 << 20

// Options configures Start.
type Options struct {
	// DataDir is the cluster's data directory. It is required, created if
	// missing and initialised if empty; an existing cluster is reused, so
	// state survives restarts.
	DataDir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// BinDir holds the postgres and initdb binaries. When empty, Start looks
	// for them on $PATH, then in `pg_config --bindir`, then in
	// /usr/lib/postgresql/*/bin (highest version first).
	BinDir string
	// OSUser is the user the server runs as when the caller is root. The
	// default is "postgres" if that user exists, else "nobody". It is ignored
	// when the caller is not root: the server then runs as the caller.
	OSUser string
	// Database is created if missing. The default is "callstate".
	Database string
	// Durable keeps fsync on. When false, fsync, synchronous_commit and
	// full_page_writes are off: much faster, but a machine crash can corrupt
	// the cluster. Use false for tests only; it also records commit times
	// (track_commit_timestamp), for benchmarks.
	Durable bool
	// Logger receives lifecycle messages. The server's own output goes to
	// postgres.log inside DataDir. Nil discards the messages.
	Logger *slog.Logger
}

// Server is a running PostgreSQL postmaster started by Start.
type Server struct {
	url     string
	port    int
	dataDir string
	log     *slog.Logger
	cmd     *exec.Cmd
	done    chan struct{} // closed when the postmaster has exited
	waitErr error         // valid after done is closed
}

// Start starts a private PostgreSQL server on opts.DataDir, initialising the
// cluster first if the directory is empty, waits until it accepts
// connections and creates opts.Database if missing.
//
// Start returns an error wrapping ErrNoServer when no server binaries are
// found. If the server exits while starting, the error includes the tail of
// its log; a data directory or port already used by another server is named
// as such. A server of an earlier, killed run that is still shutting down on
// the same data dir is waited for, up to 5 seconds. The caller must call Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("localpg: Options.DataDir is required")
	}
	if opts.Database == "" {
		opts.Database = "callstate"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("localpg: data dir: %w", err)
	}
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = findBinDir(); err != nil {
			return nil, err
		}
	} else if !hasServerBinaries(binDir) {
		return nil, fmt.Errorf("%w (looked in BinDir %s)", ErrNoServer, binDir)
	}
	cred, userName, err := credential(opts.OSUser)
	if err != nil {
		return nil, err
	}

	started := time.Now()
	fresh, err := prepareDataDir(ctx, dataDir, binDir, cred, opts.Durable)
	if err != nil {
		return nil, err
	}
	// Two failures are retried. With Port 0, a free port is picked and may
	// be taken by someone else before postgres binds it: try another one. A
	// server left by a killed run may still be shutting down, or its
	// backends still exiting: wait for them a little.
	var s *Server
	portTries, busyUntil, waiting := 0, time.Now().Add(busyWait), false
	for {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		if !waiting {
			opts.Logger.Info("postgres starting", "data_dir", dataDir, "port", port, "user", userName,
				"bin_dir", binDir, "new_cluster", fresh, "durable", opts.Durable,
				"log", filepath.Join(dataDir, logName))
		}
		handleReusedPid(dataDir, opts.Logger)
		s, err = start(ctx, dataDir, binDir, port, cred, opts)
		if err == nil {
			break
		}
		if errors.Is(err, errPortInUse) && opts.Port == 0 && portTries < 2 {
			portTries++
			opts.Logger.Warn("postgres port taken, trying another", "port", port)
			continue
		}
		if !errors.Is(err, errDataDirBusy) || time.Now().After(busyUntil) {
			return nil, err
		}
		if !waiting {
			opts.Logger.Info("postgres data dir busy, waiting for the previous server to exit",
				"data_dir", dataDir, "max_wait", busyWait)
			waiting = true
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err := s.createDatabase(ctx, opts.Database); err != nil {
		s.abort(ctx)
		return nil, err
	}
	s.url = connURL(s.port, opts.Database)
	opts.Logger.Info("postgres ready", "data_dir", dataDir, "url", s.url,
		"elapsed", time.Since(started).Round(time.Millisecond))
	return s, nil
}

// URL returns the connection URL for pgx, with sslmode=disable and the
// database from Options.Database.
func (s *Server) URL() string { return s.url }

// Done returns a channel closed when the server process has exited, whether
// through Stop or on its own.
func (s *Server) Done() <-chan struct{} { return s.done }

// Stop shuts the server down: a fast shutdown (SIGINT to the postmaster,
// which rolls back open transactions and closes connections), waiting until
// ctx is done; then an immediate shutdown (SIGQUIT) and finally SIGKILL.
// Stop returns ctx's error if the fast shutdown did not finish in time, and
// nil if the server had already exited. It may be called more than once.
func (s *Server) Stop(ctx context.Context) error {
	started := time.Now()
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
		s.log.Info("postgres stopped", "data_dir", s.dataDir, "elapsed", time.Since(started).Round(time.Millisecond))
		return nil
	case <-ctx.Done():
	}
	s.log.Warn("postgres fast shutdown timed out, sending SIGQUIT", "data_dir", s.dataDir)
	_ = s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.log.Warn("postgres stopped", "data_dir", s.dataDir, "elapsed", time.Since(started).Round(time.Millisecond))
	return fmt.Errorf("localpg: stop %s: fast shutdown: %w", s.dataDir, ctx.Err())
}

// abort stops a server that failed to start, even when ctx is done.
func (s *Server) abort(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = s.Stop(ctx)
}

// Start's retry conditions, wrapped into the errors of start.
var (
	errPortInUse   = errors.New("port in use")
	errDataDirBusy = errors.New("data dir in use")
)

// start runs the postmaster and waits until it accepts connections.
func start(ctx context.Context, dataDir, binDir string, port int, cred *syscall.Credential, opts Options) (*Server, error) {
	logPath := filepath.Join(dataDir, logName)
	if fi, err := os.Stat(logPath); err == nil && fi.Size() > maxLogSize {
		_ = os.Rename(logPath, logPath+".old")
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("localpg: open server log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	if cred != nil {
		_ = logFile.Chown(int(cred.Uid), int(cred.Gid))
	}
	logStart, _ := logFile.Seek(0, io.SeekEnd)

	args := []string{
		"-D", dataDir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=",
	}
	if !opts.Durable {
		args = append(args,
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			// Tests' benchmarks measure latency from a write's commit
			// (storetest.CommitTimes).
			"-c", "track_commit_timestamp=on",
		)
	}
	cmd := exec.Command(filepath.Join(binDir, "postgres"), args...)
	cmd.Dir = dataDir
	cmd.Env = serverEnv()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Its own process group: a Ctrl-C in the terminal reaches only the
	// service, which then stops the server when it no longer needs it.
	// Fast shutdown (SIGINT) when the service dies without calling Stop.
	cmd.SysProcAttr = sysProcAttr(cred, syscall.SIGINT)
	cmd.SysProcAttr.Setpgid = true

	s := &Server{port: port, dataDir: dataDir, log: opts.Logger, cmd: cmd, done: make(chan struct{})}
	if err := startLocked(cmd, s); err != nil {
		return nil, fmt.Errorf("localpg: run %s: %w", cmd.Path, err)
	}
	if err := s.waitReady(ctx, port); err != nil {
		s.abort(ctx)
		return nil, startError(err, logPath, logStart, dataDir, port)
	}
	return s, nil
}

// startLocked starts cmd from a goroutine locked to its OS thread for the
// whole life of the child. The kernel sends Pdeathsig when the thread that
// forked the child exits, not the process; a locked thread is never reused,
// so it exits only when the child has been waited for.
func startLocked(cmd *exec.Cmd, s *Server) error {
	started := make(chan error)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with the goroutine.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	return <-started
}

// waitReady connects until the server answers, the server exits, or the
// deadline passes.
func (s *Server) waitReady(ctx context.Context, port int) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	cfg, err := pgx.ParseConfig(connURL(port, "postgres"))
	if err != nil {
		return err
	}
	cfg.ConnectTimeout = 2 * time.Second
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			// Whoever answers on the port must be the server just started:
			// another PostgreSQL there (another checkout's, the system's)
			// is never used in its place.
			var dir string
			qerr := conn.QueryRow(ctx, `SELECT current_setting('data_directory')`).Scan(&dir)
			conn.Close(ctx)
			if qerr != nil {
				return fmt.Errorf("postgres on port %d: %w", port, qerr)
			}
			if !sameDir(dir, s.dataDir) {
				return fmt.Errorf("%w: port %d answers for another PostgreSQL (data directory %s), not the one callstate started on %s; set LOCAL_POSTGRES_PORT to a free port",
					errPortInUse, port, dir, s.dataDir)
			}
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("postgres exited: %v", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// sameDir reports whether a and b name the same directory.
func sameDir(a, b string) bool {
	clean := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		return filepath.Clean(p)
	}
	return clean(a) == clean(b)
}

// startError explains why the server did not start, with the tail of the
// log written since logStart.
func startError(err error, logPath string, logStart int64, dataDir string, port int) error {
	tail := logTail(logPath, logStart, 15)
	var hint string
	switch {
	case strings.Contains(tail, "lock file") && strings.Contains(tail, "already exists"):
		hint = fmt.Sprintf(": another server may be using data dir %s", dataDir)
		err = fmt.Errorf("%w: %w", errDataDirBusy, err)
	case strings.Contains(tail, "pre-existing shared memory block"):
		hint = fmt.Sprintf(": processes of an earlier server on data dir %s are still running", dataDir)
		err = fmt.Errorf("%w: %w", errDataDirBusy, err)
	case strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets"):
		hint = fmt.Sprintf(": another server may be using port %d", port)
		err = fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return fmt.Errorf("localpg: start postgres on %s, port %d%s: %w\n%s (tail):\n%s", dataDir, port, hint, err, logPath, tail)
}

// logTail returns the last n lines of the file written after offset.
func logTail(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err.Error()
	}
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// createDatabase creates name unless it exists.
func (s *Server) createDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, connURL(s.port, "postgres"))
	if err != nil {
		return fmt.Errorf("localpg: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists)
	if err != nil {
		return fmt.Errorf("localpg: look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("localpg: create database %s: %w", name, err)
	}
	s.log.Info("postgres database created", "database", name)
	return nil
}

// prepareDataDir creates and initialises dataDir when needed. It reports
// whether a new cluster was created.
func prepareDataDir(ctx context.Context, dataDir, binDir string, cred *syscall.Credential, durable bool) (bool, error) {
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); err == nil {
		return false, nil
	}
	if err := mkdirOwned(dataDir, cred); err != nil {
		return false, err
	}
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return false, fmt.Errorf("localpg: data dir: %w", err)
	}
	if len(entries) > 0 {
		return false, fmt.Errorf("localpg: data dir %s is not empty and holds no PostgreSQL cluster (no PG_VERSION)", dataDir)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return false, fmt.Errorf("localpg: data dir: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dataDir, int(cred.Uid), int(cred.Gid)); err != nil {
			return false, fmt.Errorf("localpg: data dir: %w", err)
		}
		if err := checkReachable(dataDir, cred); err != nil {
			return false, err
		}
	}
	args := []string{
		"--pgdata=" + dataDir,
		"--auth=trust",
		"--username=" + superuser,
		"--encoding=UTF8",
		"--no-locale",
	}
	if !durable {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), args...)
	cmd.Dir = dataDir
	cmd.Env = serverEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// On SIGTERM initdb removes what it wrote, so a killed service leaves an
	// empty data dir behind rather than half a cluster.
	cmd.SysProcAttr = sysProcAttr(cred, syscall.SIGTERM)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	runtime.LockOSThread()
	err = cmd.Run()
	runtime.UnlockOSThread()
	if err != nil {
		return false, fmt.Errorf("localpg: initdb %s: %w\n%s", dataDir, err, strings.TrimSpace(out.String()))
	}
	return true, nil
}

// mkdirOwned creates dir and any missing parents, giving the ones it creates
// to cred's user.
func mkdirOwned(dir string, cred *syscall.Credential) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("localpg: data dir: %w", err)
	}
	if cred == nil {
		return nil
	}
	for _, d := range missing {
		if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("localpg: data dir: %w", err)
		}
	}
	return nil
}

// checkReachable reports an error naming the directory when cred's user
// cannot traverse one of dir's parents.
func checkReachable(dir string, cred *syscall.Credential) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("localpg: data dir: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok {
			mode := fi.Mode().Perm()
			var can bool
			switch {
			case st.Uid == cred.Uid:
				can = mode&0o100 != 0
			case st.Gid == cred.Gid:
				can = mode&0o010 != 0
			default:
				can = mode&0o001 != 0
			}
			if !can {
				return fmt.Errorf("localpg: data dir %s: user uid=%d cannot enter %s (mode %v): "+
					"choose a data dir the user can reach, or make %s searchable", dir, cred.Uid, d, mode, d)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// handleReusedPid deals with a postmaster.pid left by a crash whose pid now
// belongs to another live process, or to a zombie. PostgreSQL itself ignores
// a pid file whose process is gone, but refuses to start when the pid is
// alive and signalable. The fix keeps the file (PostgreSQL still checks
// through it that no old backend uses the shared memory) and replaces the pid
// with ours: PostgreSQL treats its parent's pid as stale.
func handleReusedPid(dataDir string, log *slog.Logger) {
	path := filepath.Join(dataDir, "postmaster.pid")
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	line, rest, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return // gone, or no /proc: PostgreSQL decides
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	st := string(stat)
	open, closing := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
	if open < 0 || closing < open {
		return
	}
	comm := st[open+1 : closing]
	state := strings.TrimSpace(st[closing+1:])
	if comm == "postgres" && !strings.HasPrefix(state, "Z") {
		return // a live postgres: PostgreSQL refuses, and the error says so
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"+rest), 0o600); err != nil {
		log.Warn("postgres stale pid file not updated", "path", path, "err", err)
		return
	}
	log.Info("postgres stale pid file: pid reused by another process", "path", path, "pid", pid, "process", comm)
}

// credential returns the credential the server runs with: nil when the caller
// is not root, else the OS user's.
func credential(osUser string) (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return nil, strconv.Itoa(os.Geteuid()), nil
		}
		return nil, u.Username, nil
	}
	var u *user.User
	var err error
	if osUser != "" {
		if u, err = user.Lookup(osUser); err != nil {
			return nil, "", fmt.Errorf("localpg: OS user for postgres: %w", err)
		}
	} else if u, err = user.Lookup("postgres"); err != nil {
		if u, err = user.Lookup("nobody"); err != nil {
			return nil, "", fmt.Errorf("localpg: running as root and neither user postgres nor nobody exists: set Options.OSUser: %w", err)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, "", fmt.Errorf("localpg: user %s: uid %q: %w", u.Username, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, "", fmt.Errorf("localpg: user %s: gid %q: %w", u.Username, u.Gid, err)
	}
	if uid == 0 {
		return nil, "", fmt.Errorf("localpg: OS user %s is root: PostgreSQL refuses to run as root", u.Username)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, u.Username, nil
}

// BinDir returns the directory of the PostgreSQL binaries Start uses when
// Options.BinDir is empty, where the client tools (pg_dump, psql) of the
// same version are too. It returns an error wrapping ErrNoServer when there
// is none.
func BinDir() (string, error) { return findBinDir() }

// findBinDir looks for a directory holding both postgres and initdb: next to
// $PATH's postgres or initdb, in `pg_config --bindir`, then in the usual
// package locations, highest version first.
func findBinDir() (string, error) {
	var candidates []string
	for _, name := range []string{"postgres", "initdb"} {
		if p, err := exec.LookPath(name); err == nil {
			if r, err := filepath.EvalSymlinks(p); err == nil {
				candidates = append(candidates, filepath.Dir(r))
			}
			candidates = append(candidates, filepath.Dir(p))
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		candidates = append(candidates, strings.TrimSpace(string(out)))
	}
	for _, pattern := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"} {
		dirs, _ := filepath.Glob(pattern)
		slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
		candidates = append(candidates, dirs...)
	}
	candidates = append(candidates, "/usr/local/pgsql/bin")
	for _, dir := range candidates {
		if hasServerBinaries(dir) {
			return dir, nil
		}
	}
	return "", ErrNoServer
}

// versionOf returns the major version in a path like
// /usr/lib/postgresql/15/bin or /usr/pgsql-15/bin, or 0.
func versionOf(binDir string) int {
	d := filepath.Base(filepath.Dir(binDir))
	d = strings.TrimPrefix(d, "pgsql-")
	v, _ := strconv.ParseFloat(d, 64) // "9.6" sorts below "10"
	return int(v * 100)
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"postgres", "initdb"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// serverEnv is the environment without PG* variables, which would otherwise
// change how initdb and postgres behave.
func serverEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PG") })
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("localpg: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func connURL(port int, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Running returns the URL of a server that is running and ready on
// dataDir, read from its postmaster.pid (PostgreSQL writes its port there
// and "ready" once it accepts connections), for database. It reports false
// when there is none: no pid file, its process gone, not ready yet, or its
// port not answering. A command that needs the database only for a moment
// uses such a server instead of starting a second one, which PostgreSQL
// would refuse.
func Running(dataDir, database string) (string, bool) {
	if database == "" {
		database = "callstate"
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return "", false
	}
	// pid, data dir, start time, port, socket dir, listen address, shared
	// memory key, status.
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 || strings.TrimSpace(lines[7]) != "ready" {
		return "", false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return "", false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return "", false
	}
	port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
	if err != nil || port <= 0 || port > 65535 {
		return "", false
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return "", false
	}
	c.Close()
	return connURL(port, database), true
}
