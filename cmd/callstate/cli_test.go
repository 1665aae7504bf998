package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/localpg"
	"github.com/callstate/callstate/store/storetest"
)

// runCLI runs the command line args and returns what it wrote to stdout.
func runCLI(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	prev := stdout
	stdout = &out
	t.Cleanup(func() { stdout = prev })
	err := run(context.Background(), args, envFunc(env), io.Discard)
	return out.String(), err
}

func exitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if err != nil {
		return 1
	}
	return 0
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		code     int
		want     []string // in stdout
		wantErrs []string // in the error
	}{
		{"Version", []string{"version"}, nil, 0, []string{"callstate ", "go1."}, nil},
		{"Help", []string{"help"}, nil, 0, []string{"check-config", "LISTEN_ADDR", "SIP_PBX_ADDR", "SPOOL_RESERVE_BYTES"}, nil},
		{"HelpFlag", []string{"--help"}, nil, 0, []string{"Usage:"}, nil},
		{"ErrUnknownCommand", []string{"versoin"}, nil, 2, nil, []string{`unknown command "versoin"`}},
		{"ErrUnknownFlag", []string{"-port", "80"}, nil, 2, nil, []string{"-port"}},
		{"ErrStrayArgument", []string{"serve", "now"}, nil, 2, nil, []string{"unexpected arguments"}},
		{"CheckConfigFine", []string{"check-config", "-env-file", os.DevNull}, nil, 0, []string{"configuration is fine"}, nil},
		{"CheckConfigRetentionInDays", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"RETENTION_CALLS": "90d"}, 0, []string{"RETENTION_CALLS=2160h0m0s"}, nil},
		{"ErrCheckConfigRetentionTooShort", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"RETENTION_CALLS": "5m"}, 2, nil, []string{"RETENTION_CALLS"}},
		{"CheckConfigEventRetentionInDays", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"RETENTION_EVENTS": "30d"}, 0, []string{"RETENTION_EVENTS=720h0m0s"}, nil},
		{"ErrCheckConfigEventRetentionUnderADay", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"RETENTION_EVENTS": "12h"}, 2, nil, []string{"RETENTION_EVENTS"}},
		{"ErrCheckConfigReportsEveryBadValue", []string{"check-config", "-env-file", os.DevNull},
			map[string]string{"LISTEN_ADDR": "bad", "SHUTDOWN_TIMEOUT": "xx", "DATABASE_MAX_CONNS": "0", "LOG_LEVEL": "loud"}, 2, nil,
			[]string{"LISTEN_ADDR", "SHUTDOWN_TIMEOUT", "DATABASE_MAX_CONNS", "LOG_LEVEL"}},
		// check-config accepts exactly what serve accepts.
		{"ErrCheckConfigListenPortOutOfRange", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"LISTEN_ADDR": ":99999"}, 2, nil, []string{"LISTEN_ADDR", "65535"}},
		{"ErrCheckConfigSIPListenPortOutOfRange", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"SIP_LISTEN_ADDR": "0.0.0.0:70000"}, 2, nil, []string{"SIP_LISTEN_ADDR", "65535"}},
		{"ErrCheckConfigAgentListenPortOutOfRange", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"SIP_AGENT_LISTEN": "0.0.0.0:70000"}, 2, nil, []string{"SIP_AGENT_LISTEN", "65535"}},
		{"ErrCheckConfigDebugPortOutOfRange", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"DEBUG_ADDR": "127.0.0.1:70000"}, 2, nil, []string{"DEBUG_ADDR", "65535"}},
		{"CheckConfigListenAnyPort", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"LISTEN_ADDR": "127.0.0.1:0"}, 0, []string{"LISTEN_ADDR=127.0.0.1:0"}, nil},
		{"ErrCheckConfigAgentWSSWithoutCert", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"SIP_AGENT_LISTEN": "127.0.0.1:5070", "SIP_AGENT_WSS_LISTEN": "127.0.0.1:7443"}, 2, nil, []string{"SIP_AGENT_TLS_CERT_FILE"}},
		{"ErrCheckConfigAgentAccounts", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"SIP_AGENT_LISTEN": "127.0.0.1:5070", "SIP_AGENT_ACCOUNTS": "alice:"}, 2, nil, []string{"SIP_AGENT_ACCOUNTS", "user:password"}},
		{"ErrCheckConfigDatabaseURLPort", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"DATABASE_URL": "postgres://u:pw7secret@host:notaport/db"}, 2, nil, []string{"DATABASE_URL", "cannot be used"}},
		{"ErrCheckConfigDatabaseURLParam", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"DATABASE_URL": "postgres://u:pw7secret@host/db?sslmode=sometimes"}, 2, nil, []string{"DATABASE_URL", "sslmode"}},
		{"CheckConfigDatabaseURL", []string{"check-config", "-env-file", os.DevNull}, map[string]string{"DATABASE_URL": "postgres://u:pw7secret@host:5433/db?sslmode=disable"}, 0, []string{"DATABASE_URL=postgres://u:xxxxx@host:5433/db"}, nil},
		{"ErrCheckConfigEnvFileMissing", []string{"check-config", "-env-file", "/nonexistent/callstate.env"}, nil, 2, nil, []string{"/nonexistent/callstate.env", "no such file"}},
		{"ErrCheckConfigEnvFileUnreadable", []string{"check-config", "-env-file", "/"}, nil, 2, nil, []string{"-env-file /"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCLI(t, tt.env, tt.args...)
			if got := exitCode(err); got != tt.code {
				t.Fatalf("exit code %d (%v), want %d", got, err, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.wantErrs {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), "pw7secret") {
				t.Errorf("error shows the password: %v", err)
			}
			if strings.Contains(out, "pw7secret") {
				t.Errorf("output shows the password:\n%s", out)
			}
		})
	}
}

// TestCheckConfigOneSettingALine: check-config lists the settings one a
// line, so that a person can read them.
func TestCheckConfigOneSettingALine(t *testing.T) {
	out, err := runCLI(t, map[string]string{"API_TOKEN": "0123456789abcdefsecret"}, "check-config", "-env-file", os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 50 {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	for _, l := range lines[1:] {
		if strings.Count(l, "=") < 1 || len(l) > 200 {
			t.Errorf("line %q is not one setting", l)
		}
	}
	for _, w := range []string{"\n  LISTEN_ADDR=:8080\n", "\n  API_TOKEN=****\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "0123456789abcdefsecret") {
		t.Errorf("output shows API_TOKEN:\n%s", out)
	}
}

// TestHelpListsEverySetting: help is made from the Config, so it names
// every variable the Config reads.
func TestHelpListsEverySetting(t *testing.T) {
	out, err := runCLI(t, nil, "help")
	if err != nil {
		t.Fatal(err)
	}
	var walk func(rt reflect.Type)
	walk = func(rt reflect.Type) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			if name := f.Tag.Get("env"); name != "" {
				if !strings.Contains(out, name+" ") {
					t.Errorf("help does not list %s", name)
				}
			} else if f.Type.Kind() == reflect.Struct {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
}

func TestMigrateCommand(t *testing.T) {
	env := map[string]string{"DATABASE_URL": storetest.NewDatabase(t), "LOG_LEVEL": "warn"}
	out, err := runCLI(t, env, "migrate", "status", "-env-file", os.DevNull)
	if err != nil || !strings.Contains(out, "001_call_state.sql") || !strings.Contains(out, "0 of ") {
		t.Fatalf("status of a new database: %v\n%s", err, out)
	}
	out, err = runCLI(t, env, "migrate", "up", "-env-file", os.DevNull)
	if err != nil || !strings.Contains(out, ", 0 pending") || strings.Contains(out, "pending\n0") {
		t.Fatalf("up: %v\n%s", err, out)
	}
	if out, err := runCLI(t, env, "migrate", "status", "-env-file", os.DevNull); err != nil || !strings.Contains(out, ", 0 pending") {
		t.Fatalf("status after up: %v\n%s", err, out)
	}
	if _, err := runCLI(t, env, "migrate"); exitCode(err) != 2 {
		t.Errorf("migrate without status or up: %v, want exit 2", err)
	}
}

func TestForgetCommand(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	st, err := store.Open(context.Background(), dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, from := range []string{"4917011111", "4917022222", "4917011111"} {
		ev := callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: fmt.Sprint("e", i),
			ReceivedAt: time.Now(), Payload: []byte("from=" + from),
			Update: callstate.Update{Key: fmt.Sprint("c", i), From: from, To: "4930", State: callstate.StateRinging}}
		if _, err := st.Apply(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	env := map[string]string{"DATABASE_URL": dbURL, "LOG_LEVEL": "warn"}
	out, err := runCLI(t, env, "forget", "4917011111", "-env-file", os.DevNull)
	if err != nil || !strings.Contains(out, "forgot 2 calls (2 journaled events)") {
		t.Fatalf("forget: %v\n%s", err, out)
	}
	if _, err := runCLI(t, env, "forget"); exitCode(err) != 2 {
		t.Errorf("forget without a number: %v, want exit 2", err)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	base, _, _ := startServiceUnready(t, map[string]string{"DATABASE_URL": storetest.NewDatabase(t), "SIPGATE_VERIFY_SIGNATURE": "false"})
	addr := strings.TrimPrefix(base, "http://")
	if _, err := runCLI(t, map[string]string{"LISTEN_ADDR": addr}, "healthcheck"); err != nil {
		t.Errorf("healthcheck of a running service: %v", err)
	}
	if _, err := runCLI(t, map[string]string{"LISTEN_ADDR": "127.0.0.1:1"}, "healthcheck"); err == nil {
		t.Error("healthcheck of nothing succeeded")
	}
}

// TestEnvExampleMatchesConfig: .env.example names every variable the
// Config reads, and nothing else, so that help and the example agree.
func TestEnvExampleMatchesConfig(t *testing.T) {
	raw, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	inExample := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		if name, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") && name != "" {
			inExample[strings.TrimSpace(name)] = true
		}
	}
	inConfig := map[string]bool{}
	var walk func(rt reflect.Type)
	walk = func(rt reflect.Type) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			if name := f.Tag.Get("env"); name != "" {
				inConfig[name] = true
			} else if f.Type.Kind() == reflect.Struct {
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeFor[Config]())
	for name := range inConfig {
		if !inExample[name] {
			t.Errorf(".env.example lacks %s", name)
		}
	}
	for name := range inExample {
		if !inConfig[name] {
			t.Errorf(".env.example names %s, which the configuration does not read", name)
		}
	}
}

// TestRetentionEvents: a service with RETENTION_EVENTS drops the journal's
// days past it at start, and keeps today's.
func TestRetentionEvents(t *testing.T) {
	dbURL := storetest.NewDatabase(t)
	st, err := store.Open(context.Background(), dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().AddDate(0, 0, -10)
	for i, at := range []time.Time{old, time.Now()} {
		ev := callstate.Event{Source: callstate.SourceSipgate, Type: "newCall", DedupKey: fmt.Sprint("r", i),
			ReceivedAt: at, Payload: []byte("from=1"),
			Update: callstate.Update{Key: fmt.Sprint("r", i), From: "1", To: "2", State: callstate.StateRinging}}
		if _, err := st.Apply(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	_, logs, _ := startService(t, map[string]string{"DATABASE_URL": dbURL, "RETENTION_EVENTS": "2d", "SIPGATE_VERIFY_SIGNATURE": "false", "SIPGATE_RINGING_TIMEOUT": "0s"})
	conn, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	partition := func(at time.Time) bool {
		var ok bool
		if err := conn.QueryRow(t.Context(), `SELECT to_regclass($1) IS NOT NULL`, "call_event_"+at.UTC().Format("20060102")).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for deadline := time.Now().Add(10 * time.Second); partition(old); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the partition of 10 days ago is still there; log:\n%s", logs)
		}
	}
	if !partition(time.Now()) || !partition(time.Now().AddDate(0, 0, 7)) {
		t.Error("today's or next week's partition is missing")
	}
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM call_event`).Scan(&n); err != nil || n != 1 {
		t.Errorf("journal holds %d events (%v), want today's 1", n, err)
	}
}

// TestMigrateStatusUsesRunningPrivateServer: with the service's private
// PostgreSQL running on DATA_DIR, migrate status uses it instead of
// starting a second server on the same data dir.
func TestMigrateStatusUsesRunningPrivateServer(t *testing.T) {
	dataDir := t.TempDir()
	// Reachable by the postgres user the server runs as under root.
	for _, d := range []string{filepath.Dir(dataDir), dataDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pg, err := localpg.Start(t.Context(), localpg.Options{DataDir: filepath.Join(dataDir, "postgres")})
	if errors.Is(err, localpg.ErrNoServer) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop(context.Background()) })
	var out, logs bytes.Buffer
	prev := stdout
	stdout = &out
	t.Cleanup(func() { stdout = prev })
	env := map[string]string{"DATA_DIR": dataDir, "LOCAL_POSTGRES_PORT": "1"}
	if err := run(t.Context(), []string{"migrate", "status", "-env-file", os.DevNull}, envFunc(env), &logs); err != nil {
		t.Fatalf("migrate status: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "using the running private PostgreSQL") || strings.Contains(logs.String(), "postgres starting") {
		t.Errorf("logs:\n%s", logs.String())
	}
	if !strings.Contains(out.String(), "pending") {
		t.Errorf("output:\n%s", out.String())
	}
	select {
	case <-pg.Done():
		t.Error("the running server stopped")
	default:
	}
}
