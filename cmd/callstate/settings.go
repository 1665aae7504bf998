package main

// The settings as a list: names, defaults and values shown with secrets
// masked, for help, check-config, the start's line and the generated
// configuration reference.

import (
	"fmt"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// setting is one variable of the Config: its name, its struct field and
// its value in a Config.
type setting struct {
	name  string
	field reflect.StructField
	value reflect.Value
}

// settingsOf lists the variables of v (a Config or one of its nested
// structs), in the order of the fields.
func settingsOf(v reflect.Value) []setting {
	var out []setting
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		switch {
		case name == "" && f.Type.Kind() == reflect.Struct:
			out = append(out, settingsOf(v.Field(i))...)
		case name != "":
			out = append(out, setting{name: name, field: f, value: v.Field(i)})
		}
	}
	return out
}

// secret reports whether s's value is never shown.
func (s setting) secret() bool { return s.field.Tag.Get("secret") == "true" }

// shown is s's value as the settings list shows it, a secret masked.
func (s setting) shown() string {
	if s.value.Kind() == reflect.Slice {
		val := strings.Join(s.value.Interface().([]string), ",")
		if s.secret() && val != "" {
			return "****"
		}
		return val
	}
	val := fmt.Sprint(s.value.Interface())
	if s.secret() && val != "" {
		val = redactURL(val)
	}
	return val
}

// defaultText is s's default as help and the configuration reference show
// it: its envDefault tag, else its defaultText tag (a default made from
// other settings), else the value newConfig gives it, else "".
func (s setting) defaultText(def Config) string {
	if d, ok := s.field.Tag.Lookup("envDefault"); ok {
		return d
	}
	if d, ok := s.field.Tag.Lookup("defaultText"); ok {
		return d
	}
	for _, d := range settingsOf(reflect.ValueOf(def)) {
		if d.name == s.name && !d.value.IsZero() {
			if dur, ok := d.value.Interface().(time.Duration); ok {
				return formatDuration(dur)
			}
			return fmt.Sprint(d.value.Interface())
		}
	}
	return ""
}

// formatDuration writes d as a setting would: 5s, 2m, 12h, 1h30m, 7d.
func formatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// secrets are the variables whose values no message shows: their field
// is tagged secret:"true".
var secrets = func() map[string]bool {
	m := map[string]bool{}
	for _, s := range settingsOf(reflect.ValueOf(Config{})) {
		if s.secret() {
			m[s.name] = true
		}
	}
	return m
}()

// String lists the settings, with secrets masked.
func (c Config) String() string { return strings.Join(c.settings(), " ") }

// settings lists the settings as NAME=value, secrets masked.
func (c Config) settings() []string {
	var parts []string
	for _, s := range settingsOf(reflect.ValueOf(c)) {
		parts = append(parts, s.name+"="+s.shown())
	}
	return parts
}

// changed lists the settings the environment set to other than their
// default, as NAME=value, secrets masked: what the start logs.
func (c Config) changed() []string {
	def, _ := loadConfig(func(string) string { return "" })
	defs := settingsOf(reflect.ValueOf(def))
	var parts []string
	for i, s := range settingsOf(reflect.ValueOf(c)) {
		if c.set[s.name] && !reflect.DeepEqual(s.value.Interface(), defs[i].value.Interface()) {
			parts = append(parts, s.name+"="+s.shown())
		}
	}
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
