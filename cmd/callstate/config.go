package main

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/sip/watch"
	"github.com/callstate/callstate/spool"
)

// Config is everything callstate reads from its environment (and .env).
// Each field names its variable, its default, and its rules; .env.example
// and docs/configuration.md (generated from both) list the same.
type Config struct {
	ListenAddr      string        `env:"LISTEN_ADDR" envDefault:":8080" validate:"required,listen_addr"`
	PublicURL       string        `env:"PUBLIC_URL" defaultText:"http://localhost:<port of LISTEN_ADDR>" validate:"omitempty,http_url"`
	ReadHeaderTO    time.Duration `env:"HTTP_READ_HEADER_TIMEOUT" envDefault:"5s" validate:"min=100ms,max=1m"`
	ReadTO          time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"10s" validate:"min=100ms,max=5m"`
	WriteTO         time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"10s" validate:"min=100ms,max=5m"`
	IdleTO          time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"2m" validate:"min=1s,max=1h"`
	MaxBodyBytes    int64         `env:"MAX_BODY_BYTES" envDefault:"65536" validate:"min=1024,max=10485760"`
	TrustedProxies  []string      `env:"TRUSTED_PROXIES" validate:"dive,cidr|ip"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"15s" validate:"min=1s,max=5m"`

	DatabaseURL       string        `env:"DATABASE_URL" secret:"true" validate:"omitempty,startswith=postgres://|startswith=postgresql://|contains=="`
	DBMaxConns        int32         `env:"DATABASE_MAX_CONNS" envDefault:"16" validate:"min=1,max=1000"`
	DBWriteTimeout    time.Duration `env:"DATABASE_WRITE_TIMEOUT" validate:"min=10ms,max=1m"`
	DBBatchWait       time.Duration `env:"DATABASE_BATCH_WAIT" envDefault:"10ms" validate:"min=0s,max=100ms,ltfield=DBWriteTimeout"`
	DBQueryTimeout    time.Duration `env:"DATABASE_QUERY_TIMEOUT" validate:"min=100ms,max=5m"`
	DataDir           string        `env:"DATA_DIR" envDefault:"./data" validate:"required"`
	LocalPGPort       int           `env:"LOCAL_POSTGRES_PORT" envDefault:"25432" validate:"min=1,max=65535"`
	LocalPGUser       string        `env:"LOCAL_POSTGRES_USER"`
	SpoolDir          string        `env:"SPOOL_DIR"`
	SpoolMaxBytes     int64         `env:"SPOOL_MAX_BYTES" validate:"min=1048576"`
	SpoolReserveBytes int64         `env:"SPOOL_RESERVE_BYTES" validate:"omitempty,min=0,ltfield=SpoolMaxBytes"`
	RetentionCalls    time.Duration `env:"RETENTION_CALLS" validate:"omitempty,min=1h"`
	RetentionEvents   time.Duration `env:"RETENTION_EVENTS" validate:"omitempty,min=24h"`

	VerifySignature bool          `env:"SIPGATE_VERIFY_SIGNATURE" envDefault:"true"`
	PublicKeyFile   string        `env:"SIPGATE_PUBLIC_KEY_FILE" validate:"omitempty,file"`
	NewCallAction   string        `env:"SIPGATE_NEWCALL_ACTION" envDefault:"none" validate:"oneof=none gather dial voicemail play reject hangup"`
	GatherMaxDigits int           `env:"SIPGATE_GATHER_MAX_DIGITS" envDefault:"1" validate:"min=1,max=100"`
	GatherTimeout   time.Duration `env:"SIPGATE_GATHER_TIMEOUT" envDefault:"5s" validate:"min=100ms,max=5m"`
	PlayURL         string        `env:"SIPGATE_PLAY_URL" validate:"omitempty,http_url"`
	DialNumbers     []string      `env:"SIPGATE_DIAL_NUMBERS" validate:"required_if=NewCallAction dial,dive,required"`
	DialCallerID    string        `env:"SIPGATE_DIAL_CALLER_ID"`
	DialAnonymous   bool          `env:"SIPGATE_DIAL_ANONYMOUS" envDefault:"false"`
	RejectReason    string        `env:"SIPGATE_REJECT_REASON" envDefault:"busy" validate:"oneof=busy rejected"`
	AllowedNetworks []string      `env:"SIPGATE_ALLOWED_NETWORKS" validate:"dive,cidr|ip"`
	PathSecret      string        `env:"SIPGATE_PATH_SECRET" secret:"true" validate:"omitempty,min=16,max=128,alphanum|uuid"`
	MaxInflight     int           `env:"WEBHOOK_MAX_INFLIGHT" envDefault:"512" validate:"min=1,max=100000"`
	RingingTimeout  time.Duration `env:"SIPGATE_RINGING_TIMEOUT" envDefault:"30m" validate:"min=0s,max=24h"`
	AnsweredTimeout time.Duration `env:"SIPGATE_ANSWERED_TIMEOUT" envDefault:"12h" validate:"min=0s,max=720h"`
	RingingStale    time.Duration `env:"SIPGATE_RINGING_STALE" envDefault:"5m" validate:"min=0s,max=24h"`

	TokenID           string        `env:"SIPGATE_TOKEN_ID" validate:"required_with=Token,omitempty,max=255,printascii"`
	Token             string        `env:"SIPGATE_TOKEN" secret:"true" validate:"required_with=TokenID,omitempty,max=255,printascii"`
	APIURL            string        `env:"SIPGATE_API_URL" envDefault:"https://api.sipgate.com/v2" validate:"required,http_url"`
	ReconcileInterval time.Duration `env:"SIPGATE_RECONCILE_INTERVAL" envDefault:"30s" validate:"min=1s,max=1h"`

	StatsTimeZone       string `env:"STATS_TIME_ZONE" validate:"omitempty,timezone"`
	SLASeconds          int    `env:"SLA_SECONDS" envDefault:"20" validate:"min=1,max=3600"`
	ShortAbandonSeconds int    `env:"SHORT_ABANDON_SECONDS" envDefault:"5" validate:"min=0,max=600"`

	MetricsEnabled bool   `env:"METRICS_ENABLED" envDefault:"true"`
	DebugAddr      string `env:"DEBUG_ADDR" validate:"omitempty,hostname_port"`

	LogLevel  string `env:"LOG_LEVEL" envDefault:"info" validate:"oneof=debug info warn error"`
	LogFormat string `env:"LOG_FORMAT" envDefault:"text" validate:"oneof=text json"`

	SIP sipConfig // SIP_*: the PBX subscriber, see sip.go

	Agent agentConfig // SIP_AGENT_*: the presence agent phones subscribe to, see agent.go

	Dashboard dashboardConfig // API_*, CORS_*, STREAM_*: the API, stream and board, see dashboard.go

	Routing routingConfig // ROUTING_*: rules for newCall's answer, see routing.go

	Events eventsConfig // EVENTS_*: the feed of typed events and webhooks out, see events.go

	Wake wakeConfig // WAKE_*: waking phones before they ring, see wake.go

	set map[string]bool // the variables the environment set (not empty)
}

//go:generate go test -run ^TestConfigurationReference$ -update .

// loadConfig reads the Config from getenv with caarlos0/env, applying the
// envDefault tags, and checks it with the validate tags. Its error lists
// every bad variable at once, by name, with what is expected; a secret's
// value is never shown.
func loadConfig(getenv func(string) string) (Config, error) {
	cfg := newConfig()
	environ := map[string]string{}
	for _, s := range settingsOf(reflect.ValueOf(&cfg).Elem()) {
		if v := getenv(s.name); v != "" {
			environ[s.name] = v
		}
	}
	// env calls OnSet with a variable's text just before it parses it, so
	// a parser's error can name the variable (env's own errors name the
	// Go field, which is not unique across the nested structs).
	var cur struct {
		name, raw string
		isDefault bool
	}
	wrap := func(parse func(string) (any, error)) env.ParserFunc {
		return func(raw string) (any, error) {
			v, err := parse(raw)
			if err == nil {
				return v, nil
			}
			src, shown := "value", strconv.Quote(raw)
			if cur.isDefault {
				src = "default"
			}
			if secrets[cur.name] {
				shown = "(secret, not shown)"
			}
			return nil, fmt.Errorf("%s: bad %s %s: %w", cur.name, src, shown, err)
		}
	}
	cfg.set = map[string]bool{}
	for name := range environ {
		cfg.set[name] = true
	}
	err := env.ParseWithOptions(&cfg, env.Options{
		Environment: environ,
		OnSet: func(name string, value any, isDefault bool) {
			cur.name, cur.raw, cur.isDefault = name, fmt.Sprint(value), isDefault
		},
		FuncMap: map[reflect.Type]env.ParserFunc{
			reflect.TypeFor[time.Duration](): wrap(func(s string) (any, error) { return parseDuration(s) }),
			reflect.TypeFor[bool](): wrap(func(s string) (any, error) {
				b, err := strconv.ParseBool(s)
				if err != nil {
					return nil, errors.New("want true or false")
				}
				return b, nil
			}),
			reflect.TypeFor[int](): wrap(func(s string) (any, error) {
				n, err := strconv.ParseInt(s, 10, 0)
				return int(n), wholeNumber(err)
			}),
			reflect.TypeFor[int32](): wrap(func(s string) (any, error) {
				n, err := strconv.ParseInt(s, 10, 32)
				return int32(n), wholeNumber(err)
			}),
			reflect.TypeFor[int64](): wrap(func(s string) (any, error) {
				n, err := strconv.ParseInt(s, 10, 64)
				return n, wholeNumber(err)
			}),
			reflect.TypeFor[[]string](): func(s string) (any, error) { return splitList(s), nil },
		},
	})
	var errs []error
	bad := map[string]bool{}
	if err != nil {
		list := []error{err}
		var agg env.AggregateError
		if errors.As(err, &agg) {
			list = agg.Errors
		}
		for _, e := range list {
			// A parser's error is the wrapped one; env's own prefix names
			// the Go field, which means nothing to whoever set the variable.
			var pe env.ParseError
			if errors.As(e, &pe) {
				e = pe.Err
			}
			name, _, _ := strings.Cut(e.Error(), ":")
			bad[name] = true
			errs = append(errs, e)
		}
	}
	if cfg.PublicURL == "" && validListenAddr(cfg.ListenAddr) {
		cfg.PublicURL = localURL(cfg.ListenAddr)
	}
	// Check the rest too, so that every bad variable is reported at once;
	// one that did not parse is reported for that alone.
	if err := validateConfig(cfg); err != nil {
		list := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			list = j.Unwrap()
		}
		for _, e := range list {
			if name, _, _ := strings.Cut(e.Error(), ":"); !bad[name] {
				errs = append(errs, e)
			}
		}
	}
	reported := false
	for _, e := range errs {
		reported = reported || strings.HasPrefix(e.Error(), "DATABASE_URL:")
	}
	if !reported {
		if err := checkDatabaseURL(cfg.DatabaseURL); err != nil {
			errs = append(errs, err)
		}
	}
	return cfg, errors.Join(errs...)
}

// newConfig is the Config before the environment is read: zero but for
// the defaults another package owns (those without an envDefault tag), so
// that each default is written once.
func newConfig() Config {
	return Config{
		DBWriteTimeout: spool.DefaultDirectTimeout,
		DBQueryTimeout: handlers.DefaultQueryTimeout,
		SpoolMaxBytes:  spool.DefaultMaxBytes,
		SIP:            sipConfig{ReloadEvery: watch.DefaultReloadInterval},
		Dashboard: dashboardConfig{
			Heartbeat: handlers.DefaultStreamHeartbeat, StreamWriteTO: handlers.DefaultStreamWriteTimeout,
			MaxClients: handlers.DefaultStreamMaxClients, StreamQueueLen: handlers.DefaultStreamQueueLen,
			MaxInflight: handlers.DefaultAPIMaxInflight,
		},
	}
}

// parseDuration reads a Go duration (500ms, 10s, 2m) or a number of days
// (90d), which Go's durations lack.
func parseDuration(raw string) (time.Duration, error) {
	d, err := time.ParseDuration(raw)
	if days, ok := strings.CutSuffix(raw, "d"); ok && err != nil {
		n, nerr := strconv.Atoi(days)
		if nerr == nil && n >= 0 && n <= 36500 {
			d, err = time.Duration(n)*24*time.Hour, nil
		}
	}
	if err != nil {
		return 0, errors.New("want a duration such as 500ms, 10s, 2m or 90d")
	}
	return d, nil
}

func wholeNumber(err error) error {
	if err != nil {
		return errors.New("want a whole number")
	}
	return nil
}

// splitList reads a comma-separated list, each item trimmed, empty ones
// dropped.
func splitList(raw string) []string {
	var list []string
	for _, s := range strings.Split(raw, ",") {
		if s = strings.TrimSpace(s); s != "" {
			list = append(list, s)
		}
	}
	return list
}

// validListenAddr reports whether s is an address net.Listen takes:
// host:port or :port, the port a number from 0 (any free one) to 65535.
func validListenAddr(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n <= 65535
}

// localURL is the http URL of this machine for a listen address: the
// address's host, or localhost for a wildcard or loopback one (:8080,
// 0.0.0.0:8080, 127.0.0.1:8080).
func localURL(listenAddr string) string {
	host, port, _ := net.SplitHostPort(listenAddr)
	if ip := net.ParseIP(host); host == "" || ip != nil && (ip.IsUnspecified() || ip.IsLoopback()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// spoolDir is SPOOL_DIR, or DATA_DIR/spool.
func (c Config) spoolDir() string {
	if c.SpoolDir != "" {
		return c.SpoolDir
	}
	return filepath.Join(c.DataDir, "spool")
}

// trustedProxies returns TRUSTED_PROXIES as networks.
func (c Config) trustedProxies() []*net.IPNet { return parseNets(c.TrustedProxies) }

// parseNets returns validated CIDRs or IPs as networks; a bare IP is a /32
// or /128.
func parseNets(list []string) []*net.IPNet {
	var nets []*net.IPNet
	for _, s := range list {
		if !strings.Contains(s, "/") {
			if ip := net.ParseIP(s); ip != nil && ip.To4() != nil {
				s += "/32"
			} else {
				s += "/128"
			}
		}
		if _, n, err := net.ParseCIDR(s); err == nil {
			nets = append(nets, n)
		}
	}
	return nets
}
