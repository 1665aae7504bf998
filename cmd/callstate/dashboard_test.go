package main

import (
	"strings"
	"testing"
)

func TestDashboardConfig(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	cfg, err := loadConfig(env(map[string]string{
		"API_TOKEN": "0123456789abcdef", "CORS_ALLOWED_ORIGINS": "https://grafana.example.com, *",
		"API_BASIC_AUTH_USER": "wall", "API_BASIC_AUTH_PASSWORD": "s3cret-pass",
	}))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Dashboard
	if d.Token != "0123456789abcdef" || len(d.CORSOrigins) != 2 || d.MaxClients != 2000 || d.Heartbeat.Seconds() != 15 {
		t.Fatalf("%+v", d)
	}
	if s := cfg.String(); strings.Contains(s, "0123456789abcdef") || strings.Contains(s, "s3cret-pass") {
		t.Fatalf("secret in %s", s)
	}
	for name, tt := range map[string]struct {
		env  map[string]string
		want string
	}{
		"ErrShortToken":        {map[string]string{"API_TOKEN": "short"}, "API_TOKEN"},
		"ErrUserNoPassword":    {map[string]string{"API_BASIC_AUTH_USER": "wall"}, "API_BASIC_AUTH_PASSWORD"},
		"ErrPasswordNoUser":    {map[string]string{"API_BASIC_AUTH_PASSWORD": "s3cret-pass"}, "API_BASIC_AUTH_USER"},
		"ErrBadOrigin":         {map[string]string{"CORS_ALLOWED_ORIGINS": "grafana"}, "CORS_ALLOWED_ORIGINS"},
		"ErrHeartbeatTooShort": {map[string]string{"STREAM_HEARTBEAT": "10ms"}, "STREAM_HEARTBEAT"},
		"ErrNoClients":         {map[string]string{"STREAM_MAX_CLIENTS": "0"}, "STREAM_MAX_CLIENTS"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(env(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one naming %s", err, tt.want)
			}
		})
	}
}
