package main

// The checks of the settings beyond parsing: the validate tags' rules
// and their messages, and what serve checks before it starts.

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/go-playground/validator/v10"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/webhook"
	"github.com/callstate/callstate/webpush"
)

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
	_ = v.RegisterValidation("vapidsubject", func(fl validator.FieldLevel) bool {
		return webpush.CheckSubject(fl.Field().String()) == nil
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
		return fmt.Sprintf("must be set when %s is %s", siblingVar(fe, field), value)
	case "required_with":
		return fmt.Sprintf("must be set with %s", siblingVar(fe, fe.Param()))
	case "ltfield":
		return fmt.Sprintf("want less than %s", siblingVar(fe, fe.Param()))
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
	case "vapidsubject":
		return "want a mailto: or https: URI to contact the operator, e.g. mailto:ops@example.com"
	case "retryschedule":
		return "want the waits before each try, comma-separated durations, e.g. 0s,5s,5m,30m,2h,5h,10h,10h"
	default:
		return fmt.Sprintf("want a value that passes %s", fe.Tag())
	}
}

// siblingVar returns the variable of the field called field in the same
// struct as fe's field (a required_if or required_with parameter), or
// field itself if there is none.
func siblingVar(fe validator.FieldError, field string) string {
	v := reflect.ValueOf(Config{})
	path := strings.Split(fe.StructNamespace(), ".") // Config.SIP.TLSCertFile
	for _, p := range path[1 : len(path)-1] {
		v = v.FieldByName(p)
	}
	if f, ok := v.Type().FieldByName(field); ok {
		if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" {
			return name
		}
	}
	return field
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
