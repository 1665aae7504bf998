package main

import (
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate/sip/watch"
)

func envFunc(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(envFunc(nil))
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if cfg.ListenAddr != ":8080" || cfg.PublicURL != "http://localhost:8080" || !cfg.VerifySignature ||
		cfg.ReadHeaderTO != 5*time.Second || cfg.MaxBodyBytes != 65536 || cfg.NewCallAction != "none" {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string // every fragment must appear; none means OK
	}{
		{"OK", map[string]string{"LISTEN_ADDR": "127.0.0.1:9000", "PUBLIC_URL": "https://x.example.com/cs",
			"TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1", "SIPGATE_NEWCALL_ACTION": "dial", "SIPGATE_DIAL_NUMBERS": "4930123,4940123"}, nil},
		{"ErrPublicURL", map[string]string{"PUBLIC_URL": "localhost:8080"}, []string{"PUBLIC_URL", "absolute http(s) URL"}},
		{"ErrDuration", map[string]string{"HTTP_READ_TIMEOUT": "10"}, []string{"HTTP_READ_TIMEOUT", "duration"}},
		{"ErrBool", map[string]string{"SIPGATE_VERIFY_SIGNATURE": "yes please"}, []string{"SIPGATE_VERIFY_SIGNATURE", "true or false"}},
		{"ErrNumber", map[string]string{"MAX_BODY_BYTES": "64k"}, []string{"MAX_BODY_BYTES", "whole number"}},
		{"ErrTooSmall", map[string]string{"MAX_BODY_BYTES": "10"}, []string{"MAX_BODY_BYTES", "at least 1024"}},
		{"ErrOneOf", map[string]string{"LOG_LEVEL": "loud"}, []string{"LOG_LEVEL", "one of [debug info warn error]"}},
		{"ErrProxies", map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33"}, []string{"TRUSTED_PROXIES", "CIDR"}},
		{"ErrDialWithoutNumbers", map[string]string{"SIPGATE_NEWCALL_ACTION": "dial"}, []string{"SIPGATE_DIAL_NUMBERS", "must be set when SIPGATE_NEWCALL_ACTION is dial"}},
		{"ErrKeyFile", map[string]string{"SIPGATE_PUBLIC_KEY_FILE": "/nonexistent.pem"}, []string{"SIPGATE_PUBLIC_KEY_FILE", "no such file"}},
		{"ErrPathSecretShort", map[string]string{"SIPGATE_PATH_SECRET": "abc"}, []string{"SIPGATE_PATH_SECRET", "at least 16"}},
		{"ErrPathSecretChars", map[string]string{"SIPGATE_PATH_SECRET": "abcdefghijklmnop/x"}, []string{"SIPGATE_PATH_SECRET", "letters and digits"}},
		{"ErrSeveral", map[string]string{"LOG_FORMAT": "xml", "LISTEN_ADDR": "nope"}, []string{"LOG_FORMAT", "LISTEN_ADDR"}},
		{"OKBoard", map[string]string{"BOARD_THRESHOLDS": "waiting=2:4,service_level=0.95:0.85", "SLA_SECONDS": "15",
			"SHORT_ABANDON_SECONDS": "0", "STATS_TIME_ZONE": "America/New_York"}, nil},
		{"ErrBoardThresholds", map[string]string{"BOARD_THRESHOLDS": "waiting=6:3"}, []string{"BOARD_THRESHOLDS", "amber (6) must not be above red (3)", "e.g. waiting=3:6"}},
		{"ErrSLA", map[string]string{"SLA_SECONDS": "0"}, []string{"SLA_SECONDS", "at least 1"}},
		{"ErrTimeZone", map[string]string{"STATS_TIME_ZONE": "Mars/Olympus"}, []string{"STATS_TIME_ZONE"}},
		{"OKWebhook", map[string]string{"EVENTS_WEBHOOK_URL": "https://crm.example.com/hook", "EVENTS_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			"EVENTS_WEBHOOK_TYPES": "call.missed, call.voicemail", "EVENTS_WEBHOOK_FORMAT": "chat", "EVENTS_WEBHOOK_RETRY_SCHEDULE": "0s,1s,1m", "EVENTS_RETENTION": "30d"}, nil},
		{"ErrWebhookWithoutSecret", map[string]string{"EVENTS_WEBHOOK_URL": "https://crm.example.com/hook"}, []string{"EVENTS_WEBHOOK_SECRET", "must be set with EVENTS_WEBHOOK_URL"}},
		{"ErrWebhookSecret", map[string]string{"EVENTS_WEBHOOK_URL": "https://crm.example.com/hook", "EVENTS_WEBHOOK_SECRET": "whsec_short"}, []string{"EVENTS_WEBHOOK_SECRET", "whsec_ and 24 to 64 bytes"}},
		{"ErrWebhookURL", map[string]string{"EVENTS_WEBHOOK_URL": "crm.example.com"}, []string{"EVENTS_WEBHOOK_URL", "absolute http(s) URL"}},
		{"ErrWebhookType", map[string]string{"EVENTS_WEBHOOK_TYPES": "call.missed,call.exploded"}, []string{"EVENTS_WEBHOOK_TYPES", "event types of the feed"}},
		{"ErrWebhookFormat", map[string]string{"EVENTS_WEBHOOK_FORMAT": "xml"}, []string{"EVENTS_WEBHOOK_FORMAT", "one of [standard zammad chat]"}},
		{"ErrRetrySchedule", map[string]string{"EVENTS_WEBHOOK_RETRY_SCHEDULE": "0s,soon"}, []string{"EVENTS_WEBHOOK_RETRY_SCHEDULE", "comma-separated durations"}},
		{"ErrEventsRetention", map[string]string{"EVENTS_RETENTION": "10m"}, []string{"EVENTS_RETENTION", "at least 1h"}},
		{"OKWake", map[string]string{"WAKE_WAIT": "4s", "WAKE_VAPID_SUBJECT": "https://example.com/contact", "WAKE_ALLOW_HTTP": "true",
			"WAKE_ENROLL_TTL": "7d", "WAKE_PUSH_TTL": "1m"}, nil},
		{"ErrWakeWait", map[string]string{"WAKE_WAIT": "5s"}, []string{"WAKE_WAIT", "at most 4s"}},
		{"ErrWakeWaitNegative", map[string]string{"WAKE_WAIT": "-1s"}, []string{"WAKE_WAIT", "at least 0s"}},
		{"ErrWakeSubject", map[string]string{"WAKE_VAPID_SUBJECT": "ops@example.com"}, []string{"WAKE_VAPID_SUBJECT", "mailto: or https:"}},
		{"ErrWakeEnrollTTL", map[string]string{"WAKE_ENROLL_TTL": "10s"}, []string{"WAKE_ENROLL_TTL", "at least 1m"}},
		{"ErrWakePushTTL", map[string]string{"WAKE_PUSH_TTL": "1h"}, []string{"WAKE_PUSH_TTL", "at most 10m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(envFunc(tt.env))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, frag := range tt.wantErr {
				if !strings.Contains(err.Error(), frag) {
					t.Errorf("error %q does not mention %q", err, frag)
				}
			}
		})
	}
}

func TestConfigStringMasksSecrets(t *testing.T) {
	cfg, err := loadConfig(envFunc(map[string]string{"DATABASE_URL": "postgres://cs:hunter2@db:5432/cs"}))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.String(); strings.Contains(s, "hunter2") || !strings.Contains(s, "DATABASE_URL=postgres://cs:xxxxx@db:5432/cs") {
		t.Errorf("config string %q", s)
	}
}

// TestConfigErrorsHideSecrets: no message about a secret setting shows
// its value, whichever rule the value breaks.
func TestConfigErrorsHideSecrets(t *testing.T) {
	const marker = "hunter2secret"
	bad := []string{
		marker,                               // too short, no scheme, no colon
		marker + "\x01 x",                    // not printable, has a space
		strings.Repeat(marker, 30),           // too long
		"postgres://u:" + marker + "@h:x/db", // a URL that does not parse
	}
	if len(secrets) < 5 {
		t.Fatalf("secrets = %v: the secret:\"true\" tags are not found", secrets)
	}
	for name := range secrets {
		failed := false
		for _, v := range bad {
			_, err := loadConfig(envFunc(map[string]string{name: v}))
			if err == nil {
				continue
			}
			failed = true
			if strings.Contains(err.Error(), marker) {
				t.Errorf("%s=%q: error shows the secret: %v", name, v, err)
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%q: error does not name the variable: %v", name, v, err)
			}
		}
		if !failed {
			t.Errorf("%s: none of the bad values was rejected, so nothing was checked", name)
		}
	}
	_, err := loadConfig(envFunc(map[string]string{"API_TOKEN": marker}))
	if err == nil || !strings.Contains(err.Error(), "API_TOKEN: want at least 16 characters") {
		t.Errorf("API_TOKEN too short: %v", err)
	}
}

// TestConfigBatchWaitBelowWriteTimeout: an event that waits for company
// longer than the database may take would go to the spool every time.
func TestConfigBatchWaitBelowWriteTimeout(t *testing.T) {
	_, err := loadConfig(envFunc(map[string]string{"DATABASE_BATCH_WAIT": "50ms", "DATABASE_WRITE_TIMEOUT": "20ms"}))
	if err == nil || !strings.Contains(err.Error(), "DATABASE_BATCH_WAIT: want less than DATABASE_WRITE_TIMEOUT") {
		t.Errorf("DATABASE_BATCH_WAIT over DATABASE_WRITE_TIMEOUT: %v", err)
	}
	if _, err := loadConfig(envFunc(map[string]string{"DATABASE_BATCH_WAIT": "10ms", "DATABASE_WRITE_TIMEOUT": "20ms"})); err != nil {
		t.Errorf("DATABASE_BATCH_WAIT under DATABASE_WRITE_TIMEOUT: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for _, s := range []string{"postgres://u:pw1234@h/db", "postgres://u@h/db?password=pw1234&sslmode=disable", "host=h password=pw1234"} {
		if got := redactURL(s); strings.Contains(got, "pw1234") {
			t.Errorf("redactURL(%q) = %q", s, got)
		}
	}
}

func TestDayTimeZone(t *testing.T) {
	for _, c := range []struct {
		name     string
		env      map[string]string
		tz, from string
		guessed  bool
	}{
		{"DefaultRegionDE", nil, "Europe/Berlin", "PHONE_REGION", false},
		{"RegionAT", map[string]string{"PHONE_REGION": "AT"}, "Europe/Vienna", "PHONE_REGION", false},
		{"RegionOfSeveralZones", map[string]string{"PHONE_REGION": "US"}, "UTC", "", true},
		{"SettingWins", map[string]string{"PHONE_REGION": "US", "STATS_TIME_ZONE": "America/Chicago"}, "America/Chicago", "STATS_TIME_ZONE", false},
		{"SettingUTC", map[string]string{"STATS_TIME_ZONE": "UTC"}, "UTC", "STATS_TIME_ZONE", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadConfig(envFunc(c.env))
			if err != nil {
				t.Fatal(err)
			}
			tz, from, guessed := dayTimeZone(cfg)
			if tz != c.tz || from != c.from || guessed != c.guessed {
				t.Errorf("dayTimeZone = %q, %q, %t; want %q, %q, %t", tz, from, guessed, c.tz, c.from, c.guessed)
			}
		})
	}
}

// TestLoadConfigNamesNestedVariables: a value that does not parse, or a
// rule that names another field, is reported under the variable of its
// own struct, also where two structs have fields of the same name.
func TestLoadConfigNamesNestedVariables(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    []string
		notWant string
	}{
		{"ErrAgentDuration", map[string]string{"SIP_AGENT_MIN_EXPIRES": "soon"}, []string{`SIP_AGENT_MIN_EXPIRES: bad value "soon": want a duration`}, ""},
		{"ErrSIPDuration", map[string]string{"SIP_EXPIRES": "10"}, []string{`SIP_EXPIRES: bad value "10": want a duration`}, ""},
		{"ErrInt32", map[string]string{"DATABASE_MAX_CONNS": "99999999999"}, []string{"DATABASE_MAX_CONNS", "whole number"}, ""},
		{"ErrAgentTLSKeyMissing", map[string]string{"SIP_AGENT_TLS_CERT_FILE": "config.go"}, []string{"SIP_AGENT_TLS_KEY_FILE: must be set with SIP_AGENT_TLS_CERT_FILE"}, "SIP_TLS_CERT_FILE"},
		{"ErrSIPTLSKeyMissing", map[string]string{"SIP_TLS_CERT_FILE": "config.go"}, []string{"SIP_TLS_KEY_FILE: must be set with SIP_TLS_CERT_FILE"}, "SIP_AGENT_TLS"},
		{"ErrParseAndRuleAtOnce", map[string]string{"SIP_EXPIRES": "x", "LOG_LEVEL": "loud", "MAX_BODY_BYTES": "1k"}, []string{"SIP_EXPIRES", "LOG_LEVEL", "MAX_BODY_BYTES"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(envFunc(tt.env))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error %q names %s", err, tt.notWant)
			}
			if strings.Contains(err.Error(), "parse error on field") {
				t.Errorf("error %q names a Go field", err)
			}
		})
	}
}

// TestLoadConfigLists: lists are comma-separated, items trimmed, empty
// ones dropped.
func TestLoadConfigLists(t *testing.T) {
	cfg, err := loadConfig(envFunc(map[string]string{"TRUSTED_PROXIES": " 10.0.0.0/8 ,, 192.168.1.1, "}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.TrustedProxies, "|"); got != "10.0.0.0/8|192.168.1.1" {
		t.Errorf("TRUSTED_PROXIES = %q", got)
	}
}

// TestConfigTags: every setting's default is in an envDefault tag (env's
// own; a "default" tag would be ignored silently) that loads, or is one
// that newConfig sets; and no variable is read twice.
func TestConfigTags(t *testing.T) {
	seen := map[string]bool{}
	def := newConfig()
	for _, s := range settingsOf(reflect.ValueOf(&def).Elem()) {
		if seen[s.name] {
			t.Errorf("%s is read by two fields", s.name)
		}
		seen[s.name] = true
		if _, ok := s.field.Tag.Lookup("default"); ok {
			t.Errorf("%s: a default tag; the loader reads envDefault", s.name)
		}
		if _, ok := s.field.Tag.Lookup("envDefault"); ok && !s.value.IsZero() {
			t.Errorf("%s: a default both in newConfig and in envDefault", s.name)
		}
	}
	if len(seen) < 100 {
		t.Errorf("%d settings found: the walk misses some", len(seen))
	}
}

// TestSIPReloadIntervalDefault: SIP_RELOAD_INTERVAL's default is the sip
// package's, in one place, and help shows it.
func TestSIPReloadIntervalDefault(t *testing.T) {
	cfg, err := loadConfig(envFunc(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SIP.ReloadEvery != watch.DefaultReloadInterval || watch.DefaultReloadInterval != 5*time.Second {
		t.Errorf("SIP_RELOAD_INTERVAL = %s, the watcher's default %s; want both 5s", cfg.SIP.ReloadEvery, watch.DefaultReloadInterval)
	}
	cfg, err = loadConfig(envFunc(map[string]string{"SIP_RELOAD_INTERVAL": "10s"}))
	if err != nil || cfg.SIP.ReloadEvery != 10*time.Second {
		t.Errorf("SIP_RELOAD_INTERVAL=10s: %s, %v", cfg.SIP.ReloadEvery, err)
	}
	var b strings.Builder
	printHelp(&b)
	if !regexp.MustCompile(`\n  SIP_RELOAD_INTERVAL +5s\n`).MatchString(b.String()) {
		t.Errorf("help does not show SIP_RELOAD_INTERVAL's default 5s:\n%s", b.String())
	}
}

// TestConfigChanged: the start logs only the settings that differ from
// their defaults, secrets masked.
func TestConfigChanged(t *testing.T) {
	cfg, err := loadConfig(envFunc(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.changed(); len(got) != 0 {
		t.Errorf("defaults: changed = %q, want none", got)
	}
	cfg, err = loadConfig(envFunc(map[string]string{"LISTEN_ADDR": "127.0.0.1:18899", "LOG_LEVEL": "info",
		"DATABASE_URL": "postgres://cs:hunter2@db:5432/cs", "TRUSTED_PROXIES": "10.0.0.0/8"}))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.changed(), " ")
	want := "LISTEN_ADDR=127.0.0.1:18899 TRUSTED_PROXIES=10.0.0.0/8 DATABASE_URL=postgres://cs:xxxxx@db:5432/cs"
	if got != want {
		t.Errorf("changed = %q, want %q", got, want)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{5 * time.Second: "5s", 2 * time.Minute: "2m", 12 * time.Hour: "12h",
		90 * time.Minute: "1h30m", 7 * 24 * time.Hour: "7d", 500 * time.Millisecond: "500ms", 0: "0s"} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%s) = %q, want %q", d, got, want)
		}
		if back, err := parseDuration(formatDuration(d)); err != nil || back != d {
			t.Errorf("parseDuration(%q) = %s, %v", formatDuration(d), back, err)
		}
	}
}

// TestPublicURLDefault: with no PUBLIC_URL, the webhook URL is this
// machine on LISTEN_ADDR's port; a PUBLIC_URL set wins.
func TestPublicURLDefault(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "http://localhost:8080"},
		{map[string]string{"LISTEN_ADDR": "127.0.0.1:18899"}, "http://localhost:18899"},
		{map[string]string{"LISTEN_ADDR": "0.0.0.0:9000"}, "http://localhost:9000"},
		{map[string]string{"LISTEN_ADDR": "[::1]:9000"}, "http://localhost:9000"},
		{map[string]string{"LISTEN_ADDR": "192.168.1.5:9000"}, "http://192.168.1.5:9000"},
		{map[string]string{"LISTEN_ADDR": ":9000", "PUBLIC_URL": "https://x.example.com"}, "https://x.example.com"},
	} {
		cfg, err := loadConfig(envFunc(c.env))
		if err != nil || cfg.PublicURL != c.want {
			t.Errorf("%v: PUBLIC_URL = %q, %v; want %q", c.env, cfg.PublicURL, err, c.want)
		}
	}
}

// FuzzLoadConfig: any value of any setting loads without a panic, and a
// secret's value shows neither in the error nor in the settings listed.
func FuzzLoadConfig(f *testing.F) {
	f.Add(uint16(0), ":8080")
	f.Add(uint16(3), "90d")
	f.Add(uint16(7), "a,,b , c")
	f.Add(uint16(11), "postgres://u:pw@h:x/db")
	f.Add(uint16(20), "\x00\r\n")
	settings := settingsOf(reflect.ValueOf(newConfig()))
	f.Fuzz(func(t *testing.T, i uint16, value string) {
		s := settings[int(i)%len(settings)]
		const marker = "zq8Secret"
		if s.secret() {
			value = marker + value
			if s.name == "DATABASE_URL" {
				value = "postgres://u:" + url.PathEscape(value) + "@h/db"
			}
		}
		cfg, err := loadConfig(envFunc(map[string]string{s.name: value}))
		if !s.secret() {
			return
		}
		if err != nil && strings.Contains(err.Error(), marker) {
			t.Errorf("%s=%q: the error shows the secret: %v", s.name, value, err)
		}
		if err == nil && (strings.Contains(cfg.String(), marker) || strings.Contains(strings.Join(cfg.changed(), " "), marker)) {
			t.Errorf("%s=%q: the settings show the secret", s.name, value)
		}
	})
}
