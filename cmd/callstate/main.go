// Command callstate runs the callstate service: sipgate.io webhooks (and
// PBX extensions over SIP) into one call-state table in PostgreSQL.
//
// Configuration comes from the environment and from a .env file in the
// working directory; the environment wins. See .env.example.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	_ "time/tzdata" // time zone names (STATS_TIME_ZONE, the routing rules' time_zone) without the system's database

	"github.com/joho/godotenv"
	"golang.org/x/sync/errgroup"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/sip"
	"github.com/callstate/callstate/spool"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/localpg"
	"github.com/callstate/callstate/xmlresponse"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "callstate:", err)
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// stdout is where version, help and check-config write.
var stdout io.Writer = os.Stdout

// exitError is an error that asks for an exit code of its own: 2 for a
// bad command line or configuration.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

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
  callstate devices remove ID          remove a device
  callstate healthcheck                exit 0 if the service on LISTEN_ADDR answers /healthz
                                       (a container's HEALTHCHECK; the image has no shell or curl)
  callstate version                    print the version
  callstate help                       print this help and the settings

Settings come from the environment and from FILE (default .env); the
environment wins. Each is explained in .env.example and the README.
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
	log := newLogger(cfg, stderr)
	slog.SetDefault(log) // libraries' logs (sipgo's) in the same format
	settings := "all defaults"
	if ch := cfg.changed(); len(ch) > 0 {
		settings = strings.Join(ch, " ")
	}
	log.Info("starting callstate", "version", version(), "settings", settings)

	dbURL, stopPG, err := databaseURL(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer stopPG()

	// The store connects in the background when the database is not
	// there yet: callstate serves without it, into the spool.
	st, err := store.Open(ctx, dbURL, store.Options{MaxConns: cfg.DBMaxConns, Logger: log})
	if err != nil {
		return err
	}
	defer st.Close()

	// Every accepted event goes through the spool: straight to the
	// database when it answers in time, to local disk when it does not.
	sp, err := spool.Open(spool.Options{
		Dir: cfg.spoolDir(), MaxBytes: cfg.SpoolMaxBytes, Reserve: cfg.SpoolReserveBytes,
		DirectTimeout: cfg.DBWriteTimeout, Logger: log,
	}, st)
	if err != nil {
		return err
	}
	defer sp.Close()

	sg, err := sipgateOptions(cfg, log)
	if err != nil {
		return err
	}
	var m *metrics.Metrics
	if cfg.MetricsEnabled {
		m = metrics.New()
		m.GaugeFunc("callstate_spool_events", "Events waiting in the local spool for the database.",
			func() float64 { return float64(sp.Stats().Records) })
		m.GaugeFunc("callstate_spool_bytes", "Size of the local spool.",
			func() float64 { return float64(sp.Stats().Bytes) })
		m.CounterFunc("callstate_spool_rejected_total", "Spooled events the database refused for good.",
			func() float64 { return float64(sp.Stats().Rejected) })
		m.CounterFunc("callstate_database_errors_total", "Database writes that failed and went to the spool.",
			func() float64 { return float64(sp.Stats().DBErrors) })
		m.CounterFunc("callstate_spool_appended_total", "Events accepted into the local spool instead of straight into the database.",
			func() float64 { return float64(sp.Stats().Spooled) })
		m.CounterFunc("callstate_spool_kept_total", "Events of NOTIFYs kept in the local spool before the answer, applied to the database from there.",
			func() float64 { return float64(sp.Stats().Kept) })
		m.CounterFunc("callstate_spool_drained_total", "Spooled events applied to the database.",
			func() float64 { return float64(sp.Stats().Drained) })
		m.CounterFunc("callstate_spool_refused_total", "Events the spool could not take: full, or its disk failed.",
			func() float64 { return float64(sp.Stats().Refused) })
		m.CounterFunc("callstate_spool_write_errors_total", "Appends to the spool that failed on the disk.",
			func() float64 { return float64(sp.Stats().WriteErrors) })
		m.GaugeFunc("callstate_database_up", "1 while events go straight to the database, 0 while they go to the spool.",
			func() float64 {
				if sp.Stats().StoreDown {
					return 0
				}
				return 1
			})
	}
	dash := dashboardOptions(cfg.Dashboard, st, log)
	dash.Board.RingingStale = cfg.RingingStale
	if m != nil {
		m.BuildInfo(strings.TrimSuffix(version(), " "+runtime.Version()), runtime.Version())
		if dash.Stream != nil {
			m.GaugeFunc("callstate_stream_clients", "Live stream clients connected to this instance.",
				func() float64 { return float64(dash.Stream.Clients()) })
			m.CounterFunc("callstate_stream_events_total", "Events handed to live stream clients (one event to ten clients counts ten).",
				func() float64 { n, _ := dash.Stream.Sent(); return float64(n) })
			m.CounterFunc("callstate_stream_dropped_clients_total", "Live stream clients dropped for falling behind.",
				func() float64 { _, n := dash.Stream.Sent(); return float64(n) })
		}
	}
	dash.QueryTimeout = cfg.DBQueryTimeout
	sender := newWebhooks(cfg, st, dash.Phonebook, m, log)
	dash.Webhooks = webhookOptions(st, sender)
	var (
		rules *ruleBook
		lamps *handlers.LiveLamps
	)
	if cfg.Routing.File != "" {
		plan, _ := callstate.NewNumberPlan(cfg.Dashboard.PhoneRegion) // validated
		if rules, err = newRuleBook(cfg.Routing, plan, log, m); err != nil {
			return err
		}
		lamps = handlers.NewLiveLamps(st, log)
		sg.Routing = &handlers.RoutingOptions{
			Rules: rules.Rules, Lamps: lamps, Phonebook: dash.Phonebook, Secret: []byte(cfg.Routing.Secret),
		}
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("LISTEN_ADDR %s: %w", cfg.ListenAddr, err)
	}
	defer ln.Close() // closed by the server once it serves
	local := localURL(ln.Addr().String())
	if !cfg.set["PUBLIC_URL"] {
		// The listener's own port, also when LISTEN_ADDR asks for any (:0).
		sg.PublicURL = local
	}
	wk := newWaker(cfg.Wake, st, dash.Phonebook, m, log)
	sg.Wake, sg.WakeWait = wk, cfg.Wake.Wait
	dash.Devices = wk.deviceOptions(sg.PublicURL)
	ready := &readiness{st: st, sp: sp}
	e, err := handlers.New(handlers.Options{
		Store: sp, Ready: ready, Logger: log, Metrics: m,
		TrustedProxies: cfg.trustedProxies(), Sipgate: sg, Dashboard: dash,
	})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: cfg.ReadHeaderTO,
		ReadTimeout:       cfg.ReadTO,
		WriteTimeout:      cfg.WriteTO,
		IdleTimeout:       cfg.IdleTO,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("listening", "addr", ln.Addr().String())
	logWhereToLook(log, sg, local, dbURL, cfg.DatabaseURL != "")

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return sp.Run(gctx) })
	if cfg.DebugAddr != "" {
		if err := serveDebug(gctx, g, cfg.DebugAddr, log); err != nil {
			return err
		}
	}
	changes := &changeFeed{}
	g.Go(runStream(gctx, changes, dash.Stream))
	if lamps != nil {
		changes.subscribe(func(store.Change) { lamps.Changed() })
	}
	if rules != nil {
		g.Go(func() error { return rules.Watch(gctx) })
		g.Go(func() error { return lamps.Run(gctx) })
	}
	g.Go(func() error { return dash.Phonebook.Run(gctx) })
	if cfg.RingingTimeout > 0 || cfg.AnsweredTimeout > 0 {
		g.Go(func() error { return endStuckCalls(gctx, st, sp, cfg.RingingTimeout, cfg.AnsweredTimeout, log) })
	}
	if cfg.TokenID != "" {
		rec, err := newReconciler(cfg, st, backlogApplier{st}, log, nil)
		if err != nil {
			return err
		}
		rec.register(m)
		log.Info("reconciling with sipgate's record", "api", cfg.APIURL, "every", cfg.ReconcileInterval)
		g.Go(func() error { return rec.run(gctx) })
	}
	if cfg.RetentionCalls > 0 {
		g.Go(func() error { return forgetOldCalls(gctx, st, cfg.RetentionCalls, log) })
	}
	g.Go(func() error { return keepJournal(gctx, st, cmp.Or(cfg.RetentionEvents, cfg.RetentionCalls), log) })
	g.Go(func() error { return setJourneySettings(gctx, st, cfg, log) })
	g.Go(func() error { return keepFeed(gctx, st, cfg.Events.Retention, log) })
	g.Go(func() error { return compactJourneyStats(gctx, st, log) })
	if err := startSIP(gctx, g, cfg.SIP, st, sp, m, ready, log); err != nil {
		return err
	}
	if err := startAgent(gctx, g, cfg.Agent, st, changes, m, log); err != nil {
		return err
	}
	startWebhooks(gctx, g, cfg.Events, st, changes, sender, log)
	changes.subscribe(wk.changed)
	g.Go(func() error { return wk.run(gctx) })
	g.Go(func() error { return changes.run(gctx, st) })
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	// One bound for the whole shutdown: the HTTP server's goodbye, the
	// spool's last drain and the store's close all end by this deadline,
	// even with a database that does not answer; what is left stays in
	// the spool for the next start.
	var deadline atomic.Pointer[time.Time]
	g.Go(func() error {
		<-gctx.Done()
		d := time.Now().Add(cfg.ShutdownTimeout)
		deadline.Store(&d)
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
		sctx, cancel := context.WithDeadline(context.WithoutCancel(gctx), d)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
			return fmt.Errorf("http shutdown: %w", err)
		}
		return nil
	})
	err = g.Wait()
	// Nothing new comes in now: apply what the spool still holds, within
	// the shutdown bound, keeping a moment for closing; the rest waits on
	// disk for the next start.
	end := time.Now().Add(cfg.ShutdownTimeout)
	if d := deadline.Load(); d != nil {
		end = *d
	}
	// The store's close may take a second more with a database that does
	// not answer (see store.Close).
	dctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), end.Add(-min(cfg.ShutdownTimeout/2, 1500*time.Millisecond)))
	if left := sp.Drain(dctx); left > 0 {
		log.Warn("events left in the spool for the next start", "events", left, "dir", cfg.spoolDir())
	}
	cancel()
	st.Close()
	log.Info("stopped")
	return err
}

// databaseURL is DATABASE_URL, or the URL of the private PostgreSQL that it
// starts when DATABASE_URL is empty; stop stops that one (and does nothing
// otherwise).
func databaseURL(ctx context.Context, cfg Config, log *slog.Logger) (url string, stop func(), err error) {
	if cfg.DatabaseURL != "" {
		return cfg.DatabaseURL, func() {}, nil
	}
	dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "postgres"))
	if err != nil {
		return "", nil, fmt.Errorf("DATA_DIR: %w", err)
	}
	pg, err := localpg.Start(ctx, localpg.Options{
		DataDir: dir, Port: cfg.LocalPGPort, OSUser: cfg.LocalPGUser,
		Durable: true, Logger: log,
	})
	if err != nil {
		return "", nil, fmt.Errorf("no DATABASE_URL, so callstate starts its own PostgreSQL, which failed: %w", err)
	}
	return pg.URL(), func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(cfg.ShutdownTimeout/10, 2*time.Second))
		defer cancel()
		if err := pg.Stop(ctx); err != nil {
			log.Error("stopping private PostgreSQL", "err", err)
		}
	}, nil
}

// logWhereToLook tells a newcomer, in a few lines, what to paste into the
// sipgate console, where the board and the API are, and how to reach the
// database with psql (the private one's URL; DATABASE_URL's is not
// repeated, its password with it).
func logWhereToLook(log *slog.Logger, sg handlers.SipgateOptions, local, dbURL string, ownDB bool) {
	log.Info("sipgate console: set the incoming and outgoing webhook URL to " + sg.RedactedWebhookURL())
	log.Info("wall board: " + local + "/")
	log.Info("API: " + local + "/api/calls (described at " + local + "/api/openapi.yaml)")
	if ownDB {
		log.Info(`database: psql "$DATABASE_URL"`)
	} else {
		log.Info("using private PostgreSQL; connect with: psql '" + dbURL + "'")
	}
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

// forgetOldCalls deletes, once the database is there and then every hour,
// the rows of the calls that ended more than keep ago.
func forgetOldCalls(ctx context.Context, st *store.Store, keep time.Duration, log *slog.Logger) error {
	return hourly(ctx, st, func() {
		cutoff := time.Now().Add(-keep)
		calls, err := st.Forget(ctx, cutoff)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			log.Warn("forgetting old calls failed; trying again in an hour", "retention", keep, "err", err)
		case calls > 0:
			log.Info("forgot calls past RETENTION_CALLS", "calls", calls, "ended_before", cutoff.Format(time.RFC3339))
		}
	})
}

// keepJournal makes, once the database is there and then every hour, the
// journal's partitions of the next days and, when keep is not 0, drops
// those of the days that ended more than keep ago.
func keepJournal(ctx context.Context, st *store.Store, keep time.Duration, log *slog.Logger) error {
	return hourly(ctx, st, func() {
		now := time.Now()
		if _, err := st.EnsureJournalPartitions(ctx, now); err != nil && ctx.Err() == nil {
			log.Warn("making the journal's partitions ahead failed; writes make their own, trying again in an hour", "err", err)
		}
		if keep == 0 {
			return
		}
		cutoff := now.Add(-keep)
		parts, keys, err := st.DropJournalBefore(ctx, cutoff)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			log.Warn("dropping the journal's old days failed; trying again in an hour", "retention", keep, "err", err)
		case parts > 0 || keys > 0:
			log.Info("dropped the journal's days past RETENTION_EVENTS", "partitions", parts, "dedup_keys", keys,
				"before", cutoff.UTC().Format(time.DateOnly))
		}
	})
}

// hourly runs fn once st is ready and then every hour, until ctx is done.
func hourly(ctx context.Context, st *store.Store, fn func()) error {
	select {
	case <-ctx.Done():
		return nil
	case <-st.Ready():
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		fn()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
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

// sipgateOptions turns the SIPGATE_* settings into the webhook's options.
func sipgateOptions(cfg Config, log *slog.Logger) (handlers.SipgateOptions, error) {
	o := handlers.SipgateOptions{
		PublicURL:    cfg.PublicURL,
		MaxBodyBytes: cfg.MaxBodyBytes,
		// The spool bounds the database wait by DATABASE_WRITE_TIMEOUT; this
		// also covers its fsync.
		WriteTimeout: cfg.DBWriteTimeout + 3*time.Second,

		AllowedNetworks: parseNets(cfg.AllowedNetworks),
		PathSecret:      cfg.PathSecret,
		MaxInflight:     cfg.MaxInflight,
	}
	if cfg.VerifySignature {
		key := handlers.SipgatePublicKey
		if cfg.PublicKeyFile != "" {
			b, err := os.ReadFile(cfg.PublicKeyFile)
			if err != nil {
				return o, fmt.Errorf("SIPGATE_PUBLIC_KEY_FILE: %w", err)
			}
			key = b
		}
		v, err := handlers.NewSignatureVerifier(key)
		if err != nil {
			return o, fmt.Errorf("SIPGATE_PUBLIC_KEY_FILE: %w", err)
		}
		o.Verifier = v
	} else {
		log.Warn("SIPGATE_VERIFY_SIGNATURE=false: anyone who can reach the webhook can write call state; use this for local experiments only")
	}
	var play *xmlresponse.Play
	if cfg.PlayURL != "" {
		play = &xmlresponse.Play{URL: cfg.PlayURL}
	}
	switch cfg.NewCallAction {
	case "gather":
		o.NewCallAction = xmlresponse.Gather{MaxDigits: cfg.GatherMaxDigits, Timeout: cfg.GatherTimeout.Round(time.Millisecond), Play: play}
	case "dial":
		o.NewCallAction = xmlresponse.Dial{Numbers: cfg.DialNumbers, CallerID: cfg.DialCallerID, Anonymous: cfg.DialAnonymous}
	case "voicemail":
		o.NewCallAction = xmlresponse.Dial{Voicemail: true}
	case "play":
		if play == nil {
			return o, errors.New("SIPGATE_PLAY_URL: must be set when SIPGATE_NEWCALL_ACTION is play")
		}
		o.NewCallAction = *play
	case "reject":
		o.NewCallAction = xmlresponse.Reject{Reason: xmlresponse.RejectReason(cfg.RejectReason)}
	case "hangup":
		o.NewCallAction = xmlresponse.Hangup{}
	}
	if o.NewCallAction != nil {
		if err := (xmlresponse.Response{Action: o.NewCallAction}).Validate(); err != nil && !errors.Is(err, xmlresponse.ErrGatherWithoutOnData) {
			return o, fmt.Errorf("SIPGATE_NEWCALL_ACTION=%s: %w", cfg.NewCallAction, err)
		}
	}
	return o, nil
}

// readiness is /readyz's check: the spool can take events, the database
// answers, and, with the SIP subscriber on, the extensions this instance
// watches have a subscription up. Each answer says which.
type readiness struct {
	st  *store.Store
	sp  *spool.Spool
	sip func() sip.Stats // set by startSIP before the server starts
}

func (r *readiness) Ping(ctx context.Context) error {
	var errs []error
	if err := r.sp.Err(); err != nil {
		if errors.Is(err, spool.ErrFull) {
			errs = append(errs, &handlers.NotReady{Check: "spool", Reason: "spool full: only new calls are kept", Err: err})
		} else {
			errs = append(errs, &handlers.NotReady{Check: "spool", Reason: "spool cannot write to its disk", Err: err})
		}
	}
	if r.sp.Stats().StoreDown {
		errs = append(errs, &handlers.NotReady{Check: "database", Reason: "database unreachable: events are kept in the spool",
			Err: errors.New("a write failed; the spool probes the database until it answers")})
	} else if err := r.st.Ping(ctx); err != nil {
		errs = append(errs, &handlers.NotReady{Check: "database", Reason: "database unreachable", Err: err})
	}
	if r.sip != nil {
		if st := r.sip(); st.Watched > 0 && st.Active == 0 {
			errs = append(errs, &handlers.NotReady{Check: "sip", Reason: "no SIP subscription up",
				Err: fmt.Errorf("none of the %d watched extensions has a subscription up", st.Watched)})
		}
	}
	return errors.Join(errs...)
}

// serveDebug serves Go's profiler (net/http/pprof) on its own listener,
// meant for 127.0.0.1 only: it is off unless DEBUG_ADDR is set.
func serveDebug(ctx context.Context, g *errgroup.Group, addr string, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("DEBUG_ADDR %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Warn("profiler listening; keep DEBUG_ADDR on a loopback address", "addr", ln.Addr().String())
	g.Go(func() error {
		<-ctx.Done()
		return srv.Close()
	})
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("debug server: %w", err)
		}
		return nil
	})
	return nil
}

// Version and Commit are set at build time (-ldflags "-X main.Version=…");
// without them, version reads what the Go toolchain recorded.
var (
	Version = ""
	Commit  = ""
)

// version says which build this is: Version and Commit, else the module
// version and VCS revision the toolchain embedded, and the Go version.
func version() string {
	v, c := Version, Commit
	dirty := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = true
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	if len(c) > 12 {
		c = c[:12]
	}
	out := v
	if c != "" {
		out += " commit " + c
		if dirty && Commit == "" {
			out += " (modified)"
		}
	}
	return out + " " + runtime.Version()
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
