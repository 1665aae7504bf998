package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-playground/validator/v10"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/webhook"
)

// Config is everything callstate reads from its environment (and .env).
// Each field names its variable, its default, and its rules; .env.example
// and the README's table list the same.
type Config struct {
	ListenAddr      string        `env:"LISTEN_ADDR" default:":8080" validate:"required,listen_addr"`
	PublicURL       string        `env:"PUBLIC_URL" default:"http://localhost:8080" validate:"required,http_url"`
	ReadHeaderTO    time.Duration `env:"HTTP_READ_HEADER_TIMEOUT" default:"5s" validate:"min=100ms,max=1m"`
	ReadTO          time.Duration `env:"HTTP_READ_TIMEOUT" default:"10s" validate:"min=100ms,max=5m"`
	WriteTO         time.Duration `env:"HTTP_WRITE_TIMEOUT" default:"10s" validate:"min=100ms,max=5m"`
	IdleTO          time.Duration `env:"HTTP_IDLE_TIMEOUT" default:"2m" validate:"min=1s,max=1h"`
	MaxBodyBytes    int64         `env:"MAX_BODY_BYTES" default:"65536" validate:"min=1024,max=10485760"`
	TrustedProxies  []string      `env:"TRUSTED_PROXIES" validate:"dive,cidr|ip"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" default:"15s" validate:"min=1s,max=5m"`

	DatabaseURL       string        `env:"DATABASE_URL" secret:"true" validate:"omitempty,startswith=postgres://|startswith=postgresql://|contains=="`
	DBMaxConns        int32         `env:"DATABASE_MAX_CONNS" default:"16" validate:"min=1,max=1000"`
	DBWriteTimeout    time.Duration `env:"DATABASE_WRITE_TIMEOUT" default:"500ms" validate:"min=10ms,max=1m"`
	DBQueryTimeout    time.Duration `env:"DATABASE_QUERY_TIMEOUT" default:"3s" validate:"min=100ms,max=5m"`
	DataDir           string        `env:"DATA_DIR" default:"./data" validate:"required"`
	LocalPGPort       int           `env:"LOCAL_POSTGRES_PORT" default:"25432" validate:"min=1,max=65535"`
	LocalPGUser       string        `env:"LOCAL_POSTGRES_USER"`
	SpoolDir          string        `env:"SPOOL_DIR"`
	SpoolMaxBytes     int64         `env:"SPOOL_MAX_BYTES" default:"268435456" validate:"min=1048576"`
	SpoolReserveBytes int64         `env:"SPOOL_RESERVE_BYTES" validate:"omitempty,min=0,ltfield=SpoolMaxBytes"`
	RetentionCalls    time.Duration `env:"RETENTION_CALLS" validate:"omitempty,min=1h"`
	RetentionEvents   time.Duration `env:"RETENTION_EVENTS" validate:"omitempty,min=24h"`

	VerifySignature bool          `env:"SIPGATE_VERIFY_SIGNATURE" default:"true"`
	PublicKeyFile   string        `env:"SIPGATE_PUBLIC_KEY_FILE" validate:"omitempty,file"`
	NewCallAction   string        `env:"SIPGATE_NEWCALL_ACTION" default:"none" validate:"oneof=none gather dial voicemail play reject hangup"`
	GatherMaxDigits int           `env:"SIPGATE_GATHER_MAX_DIGITS" default:"1" validate:"min=1,max=100"`
	GatherTimeout   time.Duration `env:"SIPGATE_GATHER_TIMEOUT" default:"5s" validate:"min=100ms,max=5m"`
	PlayURL         string        `env:"SIPGATE_PLAY_URL" validate:"omitempty,http_url"`
	DialNumbers     []string      `env:"SIPGATE_DIAL_NUMBERS" validate:"required_if=NewCallAction dial,dive,required"`
	DialCallerID    string        `env:"SIPGATE_DIAL_CALLER_ID"`
	DialAnonymous   bool          `env:"SIPGATE_DIAL_ANONYMOUS" default:"false"`
	RejectReason    string        `env:"SIPGATE_REJECT_REASON" default:"busy" validate:"oneof=busy rejected"`
	AllowedNetworks []string      `env:"SIPGATE_ALLOWED_NETWORKS" validate:"dive,cidr|ip"`
	PathSecret      string        `env:"SIPGATE_PATH_SECRET" secret:"true" validate:"omitempty,min=16,max=128,alphanum|uuid"`
	MaxInflight     int           `env:"WEBHOOK_MAX_INFLIGHT" default:"512" validate:"min=1,max=100000"`
	RingingTimeout  time.Duration `env:"SIPGATE_RINGING_TIMEOUT" default:"30m" validate:"min=0s,max=24h"`
	AnsweredTimeout time.Duration `env:"SIPGATE_ANSWERED_TIMEOUT" default:"12h" validate:"min=0s,max=720h"`
	RingingStale    time.Duration `env:"SIPGATE_RINGING_STALE" default:"5m" validate:"min=0s,max=24h"`

	TokenID           string        `env:"SIPGATE_TOKEN_ID" validate:"required_with=Token,omitempty,max=255,printascii"`
	Token             string        `env:"SIPGATE_TOKEN" secret:"true" validate:"required_with=TokenID,omitempty,max=255,printascii"`
	APIURL            string        `env:"SIPGATE_API_URL" default:"https://api.sipgate.com/v2" validate:"required,http_url"`
	ReconcileInterval time.Duration `env:"SIPGATE_RECONCILE_INTERVAL" default:"30s" validate:"min=1s,max=1h"`

	StatsTimeZone       string `env:"STATS_TIME_ZONE" validate:"omitempty,timezone"`
	SLASeconds          int    `env:"SLA_SECONDS" default:"20" validate:"min=1,max=3600"`
	ShortAbandonSeconds int    `env:"SHORT_ABANDON_SECONDS" default:"5" validate:"min=0,max=600"`

	MetricsEnabled bool   `env:"METRICS_ENABLED" default:"true"`
	DebugAddr      string `env:"DEBUG_ADDR" validate:"omitempty,hostname_port"`

	LogLevel  string `env:"LOG_LEVEL" default:"info" validate:"oneof=debug info warn error"`
	LogFormat string `env:"LOG_FORMAT" default:"text" validate:"oneof=text json"`

	SIP sipConfig // SIP_*: the PBX subscriber, see sip.go

	Agent agentConfig // SIP_AGENT_*: the presence agent phones subscribe to, see agent.go

	Dashboard dashboardConfig // API_*, CORS_*, STREAM_*: the API, stream and board, see dashboard.go

	Routing routingConfig // ROUTING_*: rules for newCall's answer, see routing.go

	Events eventsConfig // EVENTS_*: the feed of typed events and webhooks out, see events.go
}

// loadConfig reads the Config from getenv, applying defaults, and checks it.
// Its error lists every bad variable by name with what is expected.
func loadConfig(getenv func(string) string) (Config, error) {
	var cfg Config
	errs := loadFields(reflect.ValueOf(&cfg).Elem(), getenv)
	// Check the rest too, so that every bad variable is reported at once;
	// one that did not parse is reported for that alone.
	bad := map[string]bool{}
	for _, err := range errs {
		name, _, _ := strings.Cut(err.Error(), ":")
		bad[name] = true
	}
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

// loadFields sets each field of the struct v from its env variable or its
// default; nested structs without an env tag are loaded field by field.
func loadFields(v reflect.Value, getenv func(string) string) []error {
	var errs []error
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "" && f.Type.Kind() == reflect.Struct {
			errs = append(errs, loadFields(v.Field(i), getenv)...)
			continue
		}
		raw, set := getenv(name), true
		if raw == "" {
			raw, set = f.Tag.Get("default"), false
		}
		if raw == "" {
			continue
		}
		if err := setField(v.Field(i), raw); err != nil {
			src := "value"
			if !set {
				src = "default"
			}
			shown := strconv.Quote(raw)
			if f.Tag.Get("secret") == "true" {
				shown = "(secret, not shown)"
			}
			errs = append(errs, fmt.Errorf("%s: bad %s %s: %w", name, src, shown, err))
		}
	}
	return errs
}

func setField(v reflect.Value, raw string) error {
	switch v.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(raw)
		if days, ok := strings.CutSuffix(raw, "d"); ok && err != nil {
			// Days, which Go's durations lack: 90d.
			n, nerr := strconv.Atoi(days)
			if nerr == nil && n >= 0 && n <= 36500 {
				d, err = time.Duration(n)*24*time.Hour, nil
			}
		}
		if err != nil {
			return errors.New("want a duration such as 500ms, 10s, 2m or 90d")
		}
		v.SetInt(int64(d))
	case string:
		v.SetString(raw)
	case bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("want true or false")
		}
		v.SetBool(b)
	case int, int32, int64:
		n, err := strconv.ParseInt(raw, 10, v.Type().Bits())
		if err != nil {
			return errors.New("want a whole number")
		}
		v.SetInt(n)
	case []string:
		var list []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				list = append(list, s)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// validateConfig applies the validate tags; each message names the variable.
func validateConfig(cfg Config) error {
	v := validator.New(validator.WithRequiredStructEnabled())
	v.RegisterTagNameFunc(func(f reflect.StructField) string { return f.Tag.Get("env") })
	_ = v.RegisterValidation("phoneregion", func(fl validator.FieldLevel) bool {
		_, err := callstate.NewNumberPlan(fl.Field().String())
		return err == nil
	})
	_ = v.RegisterValidation("boardthresholds", func(fl validator.FieldLevel) bool {
		_, err := handlers.ParseThresholds(fl.Field().String())
		return err == nil
	})
	_ = v.RegisterValidation("listen_addr", func(fl validator.FieldLevel) bool {
		return validListenAddr(fl.Field().String())
	})
	_ = v.RegisterValidation("whsec", func(fl validator.FieldLevel) bool {
		_, err := webhook.ParseSecret(fl.Field().String())
		return err == nil
	})
	_ = v.RegisterValidation("feedtype", func(fl validator.FieldLevel) bool {
		return callstate.KnownFeedType(fl.Field().String())
	})
	_ = v.RegisterValidation("retryschedule", func(fl validator.FieldLevel) bool {
		_, err := parseSchedule(fl.Field().String())
		return err == nil
	})
	err := v.Struct(cfg)
	var verrs validator.ValidationErrors
	if !errors.As(err, &verrs) {
		return err
	}
	var errs []error
	for _, fe := range verrs {
		name := fe.Field()
		if i := strings.IndexByte(name, '['); i >= 0 {
			name = name[:i]
		}
		errs = append(errs, fmt.Errorf("%s: %s", name, expectation(fe, secrets[name])))
	}
	return errors.Join(errs...)
}

// secretVars returns the variables of t (and its nested structs) whose
// field is tagged secret:"true": their values are never shown.
func secretVars(t reflect.Type) map[string]bool {
	m := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("env")
		if name == "" && f.Type.Kind() == reflect.Struct {
			for k := range secretVars(f.Type) {
				m[k] = true
			}
			continue
		}
		if f.Tag.Get("secret") == "true" {
			m[name] = true
		}
	}
	return m
}

// secrets are the variables whose values no message shows.
var secrets = secretVars(reflect.TypeFor[Config]())

// expectation says what fe's rule wants; the value it got is shown only
// when the variable is not a secret.
func expectation(fe validator.FieldError, secret bool) string {
	msg := expectationOf(fe)
	if secret {
		return msg
	}
	if got := gotValue(fe); got != "" {
		return msg + ", got " + got
	}
	return msg
}

// gotValue is the value fe's rule rejected, for its message; empty for
// rules whose message needs none.
func gotValue(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required", "required_if", "required_with", "alphanum|uuid", "file":
		return ""
	}
	if s, ok := fe.Value().(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(fe.Value())
}

// unit is what min and max count for fe's field: characters of a string,
// items of a list, nothing for numbers and durations.
func unit(fe validator.FieldError) string {
	switch fe.Kind() {
	case reflect.String:
		return " characters"
	case reflect.Slice:
		return " items"
	}
	return ""
}

func expectationOf(fe validator.FieldError) string {
	switch fe.Tag() {
	case "required":
		return "must be set"
	case "required_if":
		field, value, _ := strings.Cut(fe.Param(), " ")
		return fmt.Sprintf("must be set when %s is %s", envName(reflect.TypeFor[Config](), field), value)
	case "required_with":
		return fmt.Sprintf("must be set with %s", envName(reflect.TypeFor[Config](), fe.Param()))
	case "http_url":
		return "want an absolute http(s) URL"
	case "oneof":
		return fmt.Sprintf("want one of [%s]", fe.Param())
	case "min":
		return fmt.Sprintf("want at least %s%s", fe.Param(), unit(fe))
	case "max":
		return fmt.Sprintf("want at most %s%s", fe.Param(), unit(fe))
	case "file":
		if s, ok := fe.Value().(string); ok && !secrets[fe.Field()] {
			return fmt.Sprintf("no such file %q", s)
		}
		return "no such file"
	case "alphanum|uuid":
		return "want letters and digits (or a UUID) only"
	case "phoneregion":
		return "want a two-letter country code with a numbering plan such as DE, AT, CH or GB"
	case "cidr|ip":
		return "want a CIDR such as 10.0.0.0/8 or an IP"
	case "listen_addr":
		return "want host:port or :port, the port from 0 to 65535"
	case "boardthresholds":
		_, err := handlers.ParseThresholds(fmt.Sprint(fe.Value()))
		return strings.TrimPrefix(fmt.Sprint(err), handlers.ErrBadThresholds.Error()+": ") + " (e.g. " + handlers.DefaultThresholds + ")"
	case "hostname_port":
		return "want host:port, the port from 1 to 65535"
	case "whsec":
		return "want whsec_ and 24 to 64 bytes in base64 (Standard Webhooks), e.g. from: openssl rand -base64 32"
	case "feedtype":
		return "want event types of the feed: " + strings.Join(callstate.FeedTypes, ", ")
	case "retryschedule":
		return "want the waits before each try, comma-separated durations, e.g. 0s,5s,5m,30m,2h,5h,10h,10h"
	default:
		return fmt.Sprintf("want a value that passes %s", fe.Tag())
	}
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

// spoolDir is SPOOL_DIR, or DATA_DIR/spool.
func (c Config) spoolDir() string {
	if c.SpoolDir != "" {
		return c.SpoolDir
	}
	return filepath.Join(c.DataDir, "spool")
}

// envName returns the variable of the field called field in t or its nested
// structs, or field itself if there is none.
func envName(t reflect.Type, field string) string {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Name == field && f.Tag.Get("env") != "" {
			return f.Tag.Get("env")
		}
		if f.Tag.Get("env") == "" && f.Type.Kind() == reflect.Struct {
			if name := envName(f.Type, field); name != field {
				return name
			}
		}
	}
	return field
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

// String lists the settings for the startup log, with secrets masked.
func (c Config) String() string { return strings.Join(c.settings(), " ") }

// settings lists the settings as NAME=value, secrets masked.
func (c Config) settings() []string {
	var parts []string
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name := f.Tag.Get("env")
			if name == "" && f.Type.Kind() == reflect.Struct {
				walk(v.Field(i))
				continue
			}
			val := fmt.Sprint(v.Field(i).Interface())
			if f.Tag.Get("secret") == "true" && val != "" {
				val = redactURL(val)
			}
			parts = append(parts, name+"="+val)
		}
	}
	walk(reflect.ValueOf(c))
	return parts
}

// redactURL hides a password in a database URL or DSN: the URL's user
// password and a password parameter; anything else is hidden whole.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return "****"
}

// checkSettings checks what loadConfig's rules cannot and serve checks
// before it starts: the sipgate webhook's options (the public key), the
// SIP subscriber's and the presence agent's (extensions, TLS files,
// aliases, lists, accounts). check-config runs it too, so that it accepts
// exactly what serve does.
func checkSettings(cfg Config) error {
	quiet := slog.New(slog.DiscardHandler)
	var errs []error
	if _, err := sipgateOptions(cfg, quiet); err != nil {
		errs = append(errs, err)
	}
	if cfg.SIP.PBXAddr != "" {
		if err := store.CheckExtensions(cfg.SIP.Extensions); err != nil {
			errs = append(errs, fmt.Errorf("SIP_EXTENSIONS: %w", err))
		}
		if _, err := sipOptions(cfg.SIP, nil, quiet); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.Agent.Listen != "" {
		if _, err := agentOptions(cfg.Agent, nil, quiet); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.Routing.File != "" {
		plan, _ := callstate.NewNumberPlan(cfg.Dashboard.PhoneRegion) // validated
		if _, _, err := readRules(cfg.Routing, plan); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkDatabaseURL parses DATABASE_URL as the store will (pgx's parser),
// so that one it cannot use is reported before start; the message never
// shows the URL's password.
func checkDatabaseURL(raw string) error {
	if raw == "" {
		return nil
	}
	_, err := pgxpool.ParseConfig(raw)
	if err == nil {
		return nil
	}
	// pgx's message quotes the URL, redacted as best it can; the reason
	// follows it.
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "cannot parse `"); ok {
		if i := strings.LastIndex(rest, "`: "); i >= 0 {
			msg = rest[i+3:]
		}
	}
	for _, pw := range append(passwordsIn(raw), raw) {
		if pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return fmt.Errorf("DATABASE_URL: cannot be used: %s", msg)
}

// passwordsIn finds the passwords in a database URL or key=value DSN,
// also when it does not parse: a URL's user:password@ and password=.
func passwordsIn(raw string) []string {
	var pws []string
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		if i := strings.LastIndexByte(rest, '@'); i >= 0 {
			if _, pw, ok := strings.Cut(rest[:i], ":"); ok {
				pws = append(pws, pw)
				if dec, err := url.PathUnescape(pw); err == nil {
					pws = append(pws, dec)
				}
			}
		}
	}
	for _, sep := range []string{"password=", "password = "} {
		for s := raw; ; {
			i := strings.Index(s, sep)
			if i < 0 {
				break
			}
			s = s[i+len(sep):]
			end := strings.IndexAny(s, " &'")
			if end < 0 {
				end = len(s)
			}
			pws = append(pws, s[:end])
		}
	}
	return pws
}
