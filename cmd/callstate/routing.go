package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/routing"
	"github.com/callstate/callstate/store"
)

// routingConfig holds the ROUTING_* settings: the rules that decide
// newCall's answer per call (docs/routing.md). With no ROUTING_FILE every
// newCall gets SIPGATE_NEWCALL_ACTION, as before.
type routingConfig struct {
	File   string `env:"ROUTING_FILE" validate:"omitempty,file"`
	Secret string `env:"ROUTING_SECRET" secret:"true" validate:"omitempty,min=16,max=256"`
}

// readRules reads and checks the rules file of cfg. Its error names
// ROUTING_FILE and lists every problem of the file with its line.
func readRules(cfg routingConfig, plan callstate.NumberPlan) (*routing.Rules, []byte, error) {
	data, err := os.ReadFile(cfg.File)
	if err != nil {
		return nil, nil, fmt.Errorf("ROUTING_FILE: %w", err)
	}
	r, err := routing.Parse(data, plan)
	if err != nil {
		var lines []string
		for _, l := range strings.Split(err.Error(), "\n") {
			lines = append(lines, "ROUTING_FILE "+cfg.File+": "+l)
		}
		return nil, nil, errors.New(strings.Join(lines, "\n"))
	}
	if len(r.Menus) > 0 && cfg.Secret == "" {
		return nil, nil, errors.New("ROUTING_SECRET: must be set (16 characters or more, the same on every instance) when ROUTING_FILE has menus: it signs the menu state sipgate sends back")
	}
	return r, data, nil
}

// ruleBook keeps the rules in force and reloads them when the file
// changes or on SIGHUP. A file that does not load keeps the rules before
// it, with an error line and a metric.
type ruleBook struct {
	cfg  routingConfig
	plan callstate.NumberPlan
	log  *slog.Logger
	m    *metrics.Metrics

	cur  atomic.Pointer[routing.Rules]
	mu   sync.Mutex // one reload at a time
	hash [32]byte   // of the file in force
}

// newRuleBook loads the rules file; an error stops the start.
func newRuleBook(cfg routingConfig, plan callstate.NumberPlan, log *slog.Logger, m *metrics.Metrics) (*ruleBook, error) {
	b := &ruleBook{cfg: cfg, plan: plan, log: log, m: m}
	r, data, err := readRules(cfg, plan)
	if err != nil {
		return nil, err
	}
	b.cur.Store(r)
	b.hash = sha256.Sum256(data)
	registerRoutingMetrics(m, b)
	log.Info("routing rules loaded", "file", cfg.File, "rules", r.Len(), "menus", len(r.Menus))
	return b, nil
}

// Rules returns the rules in force.
func (b *ruleBook) Rules() *routing.Rules { return b.cur.Load() }

// Reload reads the file again. A file that does not load leaves the rules
// in force; the error says why.
func (b *ruleBook) Reload(why string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, data, err := readRules(b.cfg, b.plan)
	if err != nil {
		b.m.RoutingReload(false)
		b.log.Error("routing rules not reloaded: the file has errors; the previous rules stay in force",
			"file", b.cfg.File, "trigger", why, "err", err)
		return err
	}
	h := sha256.Sum256(data)
	if bytes.Equal(h[:], b.hash[:]) && why != "SIGHUP" {
		return nil // the same file: an editor's second write event
	}
	b.cur.Store(r)
	b.hash = h
	b.m.RoutingReload(true)
	b.log.Info("routing rules reloaded", "file", b.cfg.File, "trigger", why, "rules", r.Len(), "menus", len(r.Menus))
	return nil
}

// reloadSettle is how long Watch waits after a change of the file before
// reading it, so that an editor's several writes are read once.
const reloadSettle = 100 * time.Millisecond

// Watch reloads the rules when the file changes and on SIGHUP, until ctx
// is done. It watches the file's directory, so that an editor's
// write-and-rename and a Kubernetes ConfigMap's symlink swap are seen.
func (b *ruleBook) Watch(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("routing: watch %s: %w", b.cfg.File, err)
	}
	defer w.Close()
	dir := filepath.Dir(b.cfg.File)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("routing: watch %s: %w", dir, err)
	}
	name := filepath.Clean(b.cfg.File)
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			_ = b.Reload("SIGHUP")
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// Any change in the directory may be the file's (a symlink
			// swap renames another name); reading it again costs little.
			if filepath.Clean(ev.Name) == name || ev.Op&(fsnotify.Create|fsnotify.Rename) != 0 {
				settle = time.After(reloadSettle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			b.log.Warn("routing: watching the rules file", "file", b.cfg.File, "err", err)
		case <-settle:
			settle = nil
			_ = b.Reload("file changed")
		}
	}
}

// routeTest is what "callstate route test" is asked about.
type routeTest struct {
	from, to, at, user, direction string
	menu, digits                  string
}

// routeTestCommand runs "callstate route test": which rule of ROUTING_FILE
// a newCall from, to, at would match, and the XML sipgate would get, with
// the lamps and the phonebook as the database has them now.
func routeTestCommand(ctx context.Context, rt routeTest, cfg Config, log *slog.Logger) error {
	if cfg.Routing.File == "" {
		return exitError{2, errors.New("ROUTING_FILE: not set: there are no rules to test")}
	}
	plan, _ := callstate.NewNumberPlan(cfg.Dashboard.PhoneRegion) // validated
	rules, _, err := readRules(cfg.Routing, plan)
	if err != nil {
		return exitError{2, err}
	}
	c := routing.Call{Direction: callstate.Direction(rt.direction), From: rt.from, To: rt.to, At: time.Now(), Digits: rt.digits}
	if strings.Trim(rt.digits, "0123456789*#") != "" {
		return exitError{2, fmt.Errorf("--digits %q: use 0-9, * and #", rt.digits)}
	}
	if c.Direction != callstate.DirectionIn && c.Direction != callstate.DirectionOut {
		return exitError{2, fmt.Errorf("--direction %q: want in or out", rt.direction)}
	}
	// People write numbers as they like; sipgate sends E.164 digits.
	for _, n := range []*string{&c.From, &c.To} {
		if *n != "" && !strings.EqualFold(*n, "anonymous") {
			k, err := plan.Normalize(*n)
			if err != nil {
				return exitError{2, fmt.Errorf("%q: %w", *n, err)}
			}
			*n = k
		}
	}
	if rt.at != "" {
		if c.At, err = time.Parse(time.RFC3339, rt.at); err != nil {
			return exitError{2, fmt.Errorf("--at %q: want a time in RFC 3339, e.g. 2026-12-07T19:30:00+01:00", rt.at)}
		}
	}
	for _, u := range strings.Split(rt.user, ",") {
		if u = strings.TrimSpace(u); u != "" {
			c.UserIDs, c.Users = append(c.UserIDs, u), append(c.Users, u)
		}
	}
	sg, err := sipgateOptions(cfg, log)
	if err != nil {
		return exitError{2, err}
	}
	return withStore(ctx, cfg, log, "no dry run", func(st *store.Store) error {
		ls, err := st.LampStatuses(ctx)
		if err != nil {
			return err
		}
		pb := handlers.NewPhonebook(st, plan, log)
		if err := pb.Refresh(ctx); err != nil {
			return err
		}
		ans, err := handlers.DryRun(sg, rules, handlers.LampMap(ls), pb, rt.menu, c)
		if errors.Is(err, handlers.ErrNoMenu) {
			return exitError{2, fmt.Errorf("--menu: %w", err)}
		}
		if err != nil {
			return err
		}
		if rt.menu != "" {
			fmt.Fprintf(stdout, "in menu %s, digits %q: ", rt.menu, rt.digits)
		}
		at := c.At
		if rules.TimeZone != nil {
			at = at.In(rules.TimeZone)
		}
		if ans.Rule == "" {
			fmt.Fprintf(stdout, "no rule matches a call from %s to %s at %s: the default answer (SIPGATE_NEWCALL_ACTION=%s)\n",
				cmp.Or(c.From, "anonymous"), c.To, at.Format("Mon 2006-01-02 15:04 MST"), cfg.NewCallAction)
		} else {
			fmt.Fprintf(stdout, "rule %q (%s line %d) matches a call from %s to %s at %s: %s\n",
				ans.Rule, cfg.Routing.File, ans.Line, cmp.Or(c.From, "anonymous"), c.To, at.Format("Mon 2006-01-02 15:04 MST"), ans.Action)
		}
		fmt.Fprintf(stdout, "%s\n", ans.XML)
		return nil
	})
}
