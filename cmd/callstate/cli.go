package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/joho/godotenv"

	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/localpg"
)

const usage = `callstate turns sipgate.io webhooks and SIP dialog events into one call-state table in PostgreSQL.

Usage:
  callstate [serve] [-env-file FILE]   run the service (the default)
  callstate check-config [-env-file FILE]
                                       check the settings, report every bad one, exit 2 if any
  callstate migrate status|up [-env-file FILE]
                                       list the database's migrations, or apply the pending ones
                                       (serve applies them at start too)
  callstate forget NUMBER [-env-file FILE]
                                       delete every call of NUMBER (caller, callee, answering or
                                       diverting number) with its journal
  callstate reconcile -since TIME [-env-file FILE]
                                       fill from sipgate's history (SIPGATE_TOKEN) what the
                                       webhooks missed since TIME (RFC 3339, or a date in
                                       STATS_TIME_ZONE), and print what was filled
  callstate contacts import FILE [-env-file FILE]
                                       add the contacts of a CSV or vCard file to the phonebook
                                       (names shown for their numbers on the board and in the API)
  callstate route test --from NUMBER --to NUMBER [--at TIME] [--user ID,...] [--direction in|out]
                      [--menu NAME --digits KEYS] [-env-file FILE]
                                       which ROUTING_FILE rule a call would match, and the XML
                                       sipgate would get (lamps as the database has them now)
  callstate devices [list]             list the devices that get a push on incoming calls
  callstate devices enroll USER        print a one-time link that registers a device for USER
                                       (a sipgate user id such as w0), valid WAKE_ENROLL_TTL
                                       (docs/wake.md)
  callstate devices remove ID          remove a device
  callstate healthcheck                exit 0 if the service on LISTEN_ADDR answers /healthz
                                       (a container's HEALTHCHECK; the image has no shell or curl)
  callstate version                    print the version
  callstate help                       print this help and the settings

Settings come from the environment and from FILE (default .env); the
environment wins. Each is explained in .env.example and
docs/configuration.md.
`

// run runs the command in args: the service (blocking until ctx is done,
// then shutting down within the configured timeout), or one of the others
// (see usage). getenv is the environment; logs go to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	sub := ""
	switch cmd {
	case "migrate":
		if len(args) == 0 || (args[0] != "status" && args[0] != "up") {
			return exitError{2, errors.New("migrate needs status or up; try callstate help")}
		}
		sub, args = args[0], args[1:]
	case "contacts":
		if len(args) < 2 || args[0] != "import" || strings.HasPrefix(args[1], "-") {
			return exitError{2, errors.New("contacts needs: import FILE (a CSV or vCard file); try callstate help")}
		}
		sub, args = args[1], args[2:]
	case "forget":
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return exitError{2, errors.New("forget needs the number whose calls to delete; try callstate help")}
		}
		sub, args = args[0], args[1:]
	case "route":
		if len(args) == 0 || args[0] != "test" {
			return exitError{2, errors.New("route needs: test --from NUMBER --to NUMBER [--at TIME] [--user ID] [--direction in|out]; try callstate help")}
		}
		sub, args = args[0], args[1:]
	case "devices":
		switch {
		case len(args) == 0 || strings.HasPrefix(args[0], "-"):
			sub = "list"
		case args[0] == "list":
			sub, args = args[0], args[1:]
		case (args[0] == "enroll" || args[0] == "remove") && len(args) > 1 && !strings.HasPrefix(args[1], "-"):
			sub, args = args[0]+" "+args[1], args[2:]
		default:
			return exitError{2, errors.New("devices needs: list, enroll USER or remove ID; try callstate help")}
		}
	case "reconcile":
	case "serve", "check-config":
	case "version":
		fmt.Fprintln(stdout, "callstate", version())
		return nil
	case "healthcheck":
		return healthcheck(ctx, getenv)
	case "help":
		printHelp(stdout)
		return nil
	default:
		return exitError{2, fmt.Errorf("unknown command %q; try callstate help", cmd)}
	}
	fl := flag.NewFlagSet("callstate "+cmd, flag.ContinueOnError)
	fl.SetOutput(io.Discard)
	envFile := fl.String("env-file", ".env", "file of KEY=value settings; the environment wins over it")
	var rt routeTest
	if cmd == "route" {
		fl.StringVar(&rt.from, "from", "", "the caller, as sipgate sends it or as people write it")
		fl.StringVar(&rt.to, "to", "", "our number called")
		fl.StringVar(&rt.at, "at", "", "when, in RFC 3339 (now if left out)")
		fl.StringVar(&rt.user, "user", "", "users the call is offered to, comma-separated ids or names")
		fl.StringVar(&rt.direction, "direction", "in", "in or out")
		fl.StringVar(&rt.menu, "menu", "", "a menu of the rules: what its rules answer to --digits")
		fl.StringVar(&rt.digits, "digits", "", "with --menu: the digits pressed (none: the timeout)")
	}
	var since *string
	if cmd == "reconcile" {
		since = fl.String("since", "", "reconcile the calls since this time (RFC 3339) or date")
	}
	if err := fl.Parse(args); errors.Is(err, flag.ErrHelp) {
		printHelp(stdout)
		return nil
	} else if err != nil {
		return exitError{2, fmt.Errorf("%w; try callstate help", err)}
	}
	if fl.NArg() > 0 {
		return exitError{2, fmt.Errorf("unexpected arguments %q; try callstate help", fl.Args())}
	}
	named := false // -env-file given: that file must be there
	fl.Visit(func(f *flag.Flag) { named = named || f.Name == "env-file" })
	if err := godotenv.Load(*envFile); err != nil && (named || !errors.Is(err, fs.ErrNotExist)) {
		return exitError{2, fmt.Errorf("-env-file %s: %w", *envFile, err)}
	}
	cfg, err := loadConfig(getenv)
	if cmd == "migrate" || cmd == "forget" || cmd == "contacts" || cmd == "route" || cmd == "reconcile" || cmd == "devices" {
		if err != nil {
			return exitError{2, fmt.Errorf("configuration:\n%w", err)}
		}
		log := newOneShotLogger(newLogger(cfg, stderr))
		if cmd == "route" {
			return routeTestCommand(ctx, rt, cfg, log)
		}
		if cmd == "reconcile" {
			return reconcileCommand(ctx, *since, cfg, log)
		}
		if cmd == "devices" {
			return devicesCommand(ctx, strings.Fields(sub), cfg, log)
		}
		if cmd == "contacts" {
			return importContactsCommand(ctx, sub, cfg, log)
		}
		if cmd == "forget" {
			return forgetCommand(ctx, sub, cfg, log)
		}
		return migrateCommand(ctx, sub, cfg, log)
	}
	if err == nil {
		err = checkSettings(cfg)
	}
	if cmd == "check-config" {
		if err != nil {
			return exitError{2, fmt.Errorf("configuration:\n%w", err)}
		}
		fmt.Fprintln(stdout, "configuration is fine:")
		for _, s := range cfg.settings() {
			fmt.Fprintln(stdout, "  "+s)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	return serve(ctx, cfg, stderr)
}

// commandDatabaseURL is databaseURL for a command that needs the
// database for a moment (migrate, forget, contacts import): with no
// DATABASE_URL and the private PostgreSQL already running on DATA_DIR
// (the service's), it uses that one rather than start a second.
func commandDatabaseURL(ctx context.Context, cfg Config, log *slog.Logger) (url string, stop func(), err error) {
	if cfg.DatabaseURL == "" {
		dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "postgres"))
		if err != nil {
			return "", nil, fmt.Errorf("DATA_DIR: %w", err)
		}
		if url, ok := localpg.Running(dir, ""); ok {
			log.Info("using the running private PostgreSQL", "data_dir", dir, "url", url)
			return url, func() {}, nil
		}
	}
	return databaseURL(ctx, cfg, log)
}

// healthcheck asks the service on LISTEN_ADDR (the environment's, else the
// default) for /healthz and returns an error unless it answers 200 within
// two seconds.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	cfg, _ := loadConfig(getenv) // LISTEN_ADDR or its default; the rest does not matter here
	addr := cfg.ListenAddr
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return exitError{2, fmt.Errorf("LISTEN_ADDR %q: %w", addr, err)}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	return nil
}

// forgetCommand runs "callstate forget NUMBER".
func forgetCommand(ctx context.Context, number string, cfg Config, log *slog.Logger) error {
	return withStore(ctx, cfg, log, "nothing forgotten", func(st *store.Store) error {
		calls, events, err := st.ForgetNumber(ctx, number)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "forgot %d calls (%d journaled events) of %s\n", calls, events, number)
		return nil
	})
}

// withStore runs a one-shot command's fn on the store of DATABASE_URL, or
// of the private PostgreSQL (running, or started for the command); with
// the database unreachable it fails with "database unreachable; " +
// nothingDone.
func withStore(ctx context.Context, cfg Config, log *slog.Logger, nothingDone string, fn func(*store.Store) error) error {
	url, stop, err := commandDatabaseURL(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	st, err := store.Open(ctx, url, store.Options{Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()
	defer endOneShot(log) // before the close
	select {
	case <-st.Ready():
	default:
		return errors.New("database unreachable; " + nothingDone)
	}
	return fn(st)
}

// migrateCommand runs "callstate migrate status" or "callstate migrate up".
func migrateCommand(ctx context.Context, what string, cfg Config, log *slog.Logger) error {
	url, stop, err := commandDatabaseURL(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stop()
	if what == "up" {
		if err := store.Migrate(ctx, url, log); err != nil {
			return err
		}
	}
	ms, err := store.Migrations(ctx, url)
	if err != nil {
		return err
	}
	pending, changed := 0, 0
	for _, m := range ms {
		state := "pending"
		switch {
		case m.Changed:
			state, changed = "CHANGED since applied "+m.AppliedAt.Format(time.DateTime), changed+1
		case m.Applied:
			state = "applied " + m.AppliedAt.Format(time.DateTime)
		default:
			pending++
		}
		fmt.Fprintf(stdout, "%-40s %s\n", m.Name, state)
	}
	if changed > 0 {
		return exitError{2, fmt.Errorf("%d migration(s) changed after they were applied", changed)}
	}
	fmt.Fprintf(stdout, "%d of %d applied, %d pending\n", len(ms)-pending, len(ms), pending)
	return nil
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// printHelp writes the usage and every setting with its default, from the
// Config itself.
func printHelp(w io.Writer) {
	fmt.Fprint(w, usage)
	fmt.Fprintln(w, "\nSettings (default):")
	def := newConfig()
	for _, s := range settingsOf(reflect.ValueOf(def)) {
		d := s.defaultText(def)
		if d == "" {
			d = "(empty)"
		}
		fmt.Fprintf(w, "  %-28s %s\n", s.name, d)
	}
}
