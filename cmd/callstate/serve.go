package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/spool"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/localpg"
)

// serve runs the service with cfg until ctx is done, then shuts down
// within SHUTDOWN_TIMEOUT; logs go to stderr.
func serve(ctx context.Context, cfg Config, stderr io.Writer) error {
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
	st, err := store.Open(ctx, dbURL, store.Options{MaxConns: cfg.DBMaxConns, BatchWait: cfg.DBBatchWait, Logger: log})
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
	}
	registerServiceMetrics(m, sp, st)
	dash := dashboardOptions(cfg.Dashboard, st, log)
	dash.Board.RingingStale = cfg.RingingStale
	if dash.Stream != nil {
		registerStreamMetrics(m, dash.Stream)
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
		registerReconcileMetrics(m, rec)
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
