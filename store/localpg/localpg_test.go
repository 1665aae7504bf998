package localpg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The test binary re-runs itself as a child with helperEnv set to play a
// service: one that gets killed, or one that runs as an ordinary user.
const (
	helperEnv    = "LOCALPG_TEST_HELPER"
	helperDirEnv = "LOCALPG_TEST_DIR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode, os.Getenv(helperDirEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper starts a server on dir/data. In mode "serve" it prints the
// postmaster's pid and waits to be killed; in mode "roundtrip" it writes a
// row, stops and prints "ok".
func runHelper(mode, dir string) error {
	ctx := context.Background()
	s, err := Start(ctx, Options{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		return err
	}
	switch mode {
	case "serve":
		fmt.Printf("pid %d\n", s.cmd.Process.Pid)
		select {}
	case "roundtrip":
		if err := exec1(ctx, s.URL(), `CREATE TABLE t (id int)`); err != nil {
			return err
		}
		if err := s.Stop(ctx); err != nil {
			return err
		}
		fmt.Println("ok")
		return nil
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

func TestStart(t *testing.T) {
	tests := []struct {
		name string
		// run starts what it needs on a fresh dir whose data dir is opts.DataDir.
		run func(t *testing.T, opts Options)
	}{
		{"OK", func(t *testing.T, opts Options) {
			s := startServer(t, opts)
			var db, role string
			queryRow(t, s.URL(), `SELECT current_database(), current_user`, &db, &role)
			if db != "callstate" || role != "postgres" {
				t.Errorf("connected to %s as %s, want callstate as postgres", db, role)
			}
			if !strings.Contains(s.URL(), "sslmode=disable") {
				t.Errorf("URL %s has no sslmode=disable", s.URL())
			}
			fi, err := os.Stat(opts.DataDir)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("data dir mode %v, want 0700", fi.Mode().Perm())
			}
			if os.Geteuid() == 0 {
				want, _ := lookupUser(t, "postgres")
				if got := processUID(t, s.cmd.Process.Pid); got != want {
					t.Errorf("postmaster uid %d, want %d (postgres)", got, want)
				}
				if got := fi.Sys().(*syscall.Stat_t).Uid; got != want {
					t.Errorf("data dir owner uid %d, want %d (postgres)", got, want)
				}
			}
		}},
		{"DataSurvivesRestart", func(t *testing.T, opts Options) {
			s := startServer(t, opts)
			if err := exec1(t.Context(), s.URL(), `CREATE TABLE calls (id text PRIMARY KEY); INSERT INTO calls VALUES ('a')`); err != nil {
				t.Fatal(err)
			}
			stopServer(t, s)
			began := time.Now()
			s = startServer(t, opts)
			t.Logf("existing cluster started in %v", time.Since(began).Round(time.Millisecond))
			var id string
			queryRow(t, s.URL(), `SELECT id FROM calls`, &id)
			if id != "a" {
				t.Errorf("after restart: id %q, want a", id)
			}
		}},
		{"Running", func(t *testing.T, opts Options) {
			if url, ok := Running(opts.DataDir, ""); ok {
				t.Fatalf("before Start: Running = %s", url)
			}
			s := startServer(t, opts)
			url, ok := Running(opts.DataDir, "")
			if !ok || url != s.URL() {
				t.Fatalf("Running = %q, %v; want %q", url, ok, s.URL())
			}
			queryRow(t, url, `SELECT 1`, new(int))
			stopServer(t, s)
			if url, ok := Running(opts.DataDir, ""); ok {
				t.Errorf("after Stop: Running = %s", url)
			}
		}},
		{"ErrDataDirInUse", func(t *testing.T, opts Options) {
			s := startServer(t, opts)
			_, err := Start(t.Context(), opts)
			if err == nil || !strings.Contains(err.Error(), "another server may be using data dir") {
				t.Fatalf("second Start: got %v, want an error naming the data dir in use", err)
			}
			t.Logf("second Start: %v", err)
			queryRow(t, s.URL(), `SELECT 1`, new(int)) // the first one still serves
		}},
		{"ErrPortInUse", func(t *testing.T, opts Options) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			opts.Port = l.Addr().(*net.TCPAddr).Port
			_, err = Start(t.Context(), opts)
			if !errors.Is(err, errPortInUse) || !strings.Contains(err.Error(), fmt.Sprintf("another server may be using port %d", opts.Port)) {
				t.Fatalf("Start on a used port: got %v, want an error naming the port", err)
			}
		}},
		{"ErrPortOfAnotherPostgres", func(t *testing.T, opts Options) {
			// Another PostgreSQL (another checkout's) on the port: Start
			// must not take it for its own.
			other := startServer(t, opts)
			mine := opts
			mine.DataDir = filepath.Join(reachableDir(t), "data")
			mine.Port = other.port
			s, err := Start(t.Context(), mine)
			if err == nil {
				stopServer(t, s)
				t.Fatalf("Start on the port of another PostgreSQL succeeded: it would use the other one")
			}
			if !errors.Is(err, errPortInUse) || !strings.Contains(err.Error(), fmt.Sprint(other.port)) {
				t.Fatalf("Start on another PostgreSQL's port: got %v, want an error naming the port", err)
			}
			t.Logf("Start: %v", err)
			queryRow(t, other.URL(), `SELECT 1`, new(int)) // the other one still serves
		}},
		{"StopLeavesNoProcess", func(t *testing.T, opts Options) {
			s := startServer(t, opts)
			pid := s.cmd.Process.Pid
			pids := append(children(t, pid), pid)
			if len(pids) < 2 {
				t.Fatalf("postmaster %d has no children", pid)
			}
			stopServer(t, s)
			for _, p := range pids {
				if alive(p) {
					t.Errorf("process %d still running after Stop", p)
				}
			}
			if err := s.Stop(t.Context()); err != nil {
				t.Errorf("second Stop: %v", err)
			}
		}},
		{"StalePidFileIgnored", func(t *testing.T, opts Options) {
			s := startServer(t, opts)
			if err := s.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-s.Done()
			pidFile := filepath.Join(opts.DataDir, "postmaster.pid")
			if _, err := os.Stat(pidFile); err != nil {
				t.Fatalf("killed postmaster left no pid file: %v", err)
			}
			startServer(t, opts)
		}},
		{"ReusedPidInPidFileIgnored", func(t *testing.T, opts Options) {
			stopServer(t, startServer(t, opts))
			// A crash left a pid file, and the pid now belongs to another
			// process of the server's user, which PostgreSQL alone would
			// take for a running postmaster.
			sleep := exec.Command("sleep", "60")
			if os.Geteuid() == 0 {
				uid, gid := lookupUser(t, "postgres")
				sleep.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
			}
			if err := sleep.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = sleep.Process.Kill(); _ = sleep.Wait() }()
			pidFile := filepath.Join(opts.DataDir, "postmaster.pid")
			data := fmt.Sprintf("%d\n%s\n", sleep.Process.Pid, opts.DataDir)
			if err := os.WriteFile(pidFile, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			if os.Geteuid() == 0 {
				uid, gid := lookupUser(t, "postgres")
				if err := os.Chown(pidFile, int(uid), int(gid)); err != nil {
					t.Fatal(err)
				}
			}
			startServer(t, opts)
		}},
		{"NoOrphanWhenServiceKilled", func(t *testing.T, opts Options) {
			if runtime.GOOS != "linux" {
				t.Log("no parent-death signal outside Linux: nothing to check")
				return
			}
			dir := filepath.Dir(opts.DataDir)
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=serve", helperDirEnv+"="+dir)
			cmd.Stderr = t.Output()
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				_ = cmd.Process.Kill()
				t.Fatalf("service: %v", err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "pid ")))
			if err != nil {
				t.Fatalf("service said %q", line)
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			deadline := time.Now().Add(15 * time.Second)
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if alive(pid) {
				t.Fatalf("postmaster %d still running after its service was killed", pid)
			}
			if _, err := os.Stat(filepath.Join(opts.DataDir, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("postmaster.pid after the service was killed: %v, want a clean shutdown", err)
			}
			startServer(t, opts)
		}},
		{"OKNotRoot", func(t *testing.T, opts Options) {
			if os.Geteuid() != 0 {
				// The other cases already run as an ordinary user.
				startServer(t, opts)
				return
			}
			// Run a copy of this test binary as postgres, without root.
			dir := filepath.Dir(opts.DataDir)
			uid, gid := lookupUser(t, "postgres")
			bin := filepath.Join(dir, "localpg.test")
			copyFile(t, os.Args[0], bin)
			if err := os.Chown(dir, int(uid), int(gid)); err != nil {
				t.Fatal(err)
			}
			var out []byte
			var err error
			// A process forked elsewhere in this test binary while the copy
			// was open for writing holds that descriptor until it execs:
			// exec then fails with "text file busy" for a moment.
			for try := 0; try < 50; try++ {
				cmd := exec.Command(bin, "-test.run=^$")
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), helperEnv+"=roundtrip", helperDirEnv+"="+dir, "HOME="+dir)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
				if out, err = cmd.CombinedOutput(); !errors.Is(err, syscall.ETXTBSY) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil || !strings.Contains(string(out), "ok") {
				t.Fatalf("as user postgres: %v\n%s", err, out)
			}
		}},
		{"ErrNoServer", func(t *testing.T, opts Options) {
			opts.BinDir = t.TempDir()
			_, err := Start(t.Context(), opts)
			if !errors.Is(err, ErrNoServer) {
				t.Fatalf("got %v, want ErrNoServer", err)
			}
			for _, want := range []string{"apt-get install postgresql", "DATABASE_URL"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		}},
		{"ErrUnreachableDataDir", func(t *testing.T, opts Options) {
			if os.Geteuid() != 0 {
				t.Log("not root: nothing to check")
				return
			}
			locked := filepath.Join(filepath.Dir(opts.DataDir), "locked")
			if err := os.Mkdir(locked, 0o700); err != nil {
				t.Fatal(err)
			}
			opts.DataDir = filepath.Join(locked, "data")
			_, err := Start(t.Context(), opts)
			if err == nil || !strings.Contains(err.Error(), "cannot enter "+locked) {
				t.Fatalf("got %v, want an error naming %s", err, locked)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, Options{
				DataDir: filepath.Join(reachableDir(t), "data"),
				Logger:  slog.New(slog.NewTextHandler(t.Output(), nil)),
			})
		})
	}
}

func TestFindBinDir(t *testing.T) {
	dir, err := findBinDir()
	if err != nil {
		t.Fatal(err)
	}
	if !hasServerBinaries(dir) {
		t.Fatalf("findBinDir = %s, which lacks postgres or initdb", dir)
	}
	t.Logf("found %s", dir)
}

func TestVersionOf(t *testing.T) {
	tests := []struct {
		dir  string
		want int
	}{
		{"/usr/lib/postgresql/15/bin", 1500},
		{"/usr/lib/postgresql/9.6/bin", 960},
		{"/usr/pgsql-17/bin", 1700},
		{"/opt/bin", 0},
	}
	for _, tt := range tests {
		if got := versionOf(tt.dir); got != tt.want {
			t.Errorf("versionOf(%s) = %d, want %d", tt.dir, got, tt.want)
		}
	}
}

// reachableDir returns a temporary directory the server's OS user can enter.
func reachableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// t.TempDir's parent is private to the test's user.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	began := time.Now()
	s, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %v", time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() { stopServer(t, s) })
	return s
}

func stopServer(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Error(err)
	}
}

func exec1(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func queryRow(t *testing.T, url, sql string, dest ...any) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if err := conn.QueryRow(t.Context(), sql).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func lookupUser(t *testing.T, name string) (uid, gid uint32) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	id, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	g, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(id), uint32(g)
}

// processUID returns the real uid of process pid.
func processUID(t *testing.T, pid int) uint32 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.ParseUint(f[1], 10, 32)
			return uint32(uid)
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return 0
}

// children returns the pids whose parent is pid.
func children(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(p); ok && ppid == pid {
			pids = append(pids, p)
		}
	}
	return pids
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z" && state != "X"
}

// procStat returns the state and parent pid from /proc/pid/stat.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	// The command name in parentheses may hold spaces.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0], ppid, true
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
