package main

import (
	"strings"
	"testing"
	"time"
)

func TestLoadSIPConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string
	}{
		{"OffByDefault", nil, nil},
		{"OK", map[string]string{"SIP_PBX_ADDR": "pbx.example.com:5060", "SIP_TRANSPORT": "tcp", "SIP_USERNAME": "200",
			"SIP_PASSWORD": "pw", "SIP_EXTENSIONS": "100, 101,*97", "SIP_EXPIRES": "5m", "SIP_CONTACT_ADDR": "203.0.113.7:5060",
			"SIP_MESSAGE_URI": "sip:blf@10.0.0.2:5070"}, nil},
		{"ErrPBXAddr", map[string]string{"SIP_PBX_ADDR": "pbx.example.com"}, []string{"SIP_PBX_ADDR"}},
		{"ErrTransport", map[string]string{"SIP_TRANSPORT": "sctp"}, []string{"SIP_TRANSPORT", "one of [udp tcp tls]"}},
		{"ErrExpires", map[string]string{"SIP_EXPIRES": "5s"}, []string{"SIP_EXPIRES", "at least 10s"}},
		{"ErrExtensionInjection", map[string]string{"SIP_EXTENSIONS": "100,101@evil"}, []string{"SIP_EXTENSIONS"}},
		{"ErrUsername", map[string]string{"SIP_USERNAME": "a:b"}, []string{"SIP_USERNAME"}},
		{"ErrMessageURI", map[string]string{"SIP_MESSAGE_URI": "http://x"}, []string{"SIP_MESSAGE_URI"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(envFunc(tt.env))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.name == "OK" && (len(cfg.SIP.Extensions) != 3 || cfg.SIP.Expires != 5*time.Minute) {
					t.Errorf("SIP config %+v", cfg.SIP)
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

func TestSIPPasswordMasked(t *testing.T) {
	cfg, err := loadConfig(envFunc(map[string]string{"SIP_PASSWORD": "hunter2secret"}))
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.String(); strings.Contains(s, "hunter2secret") || !strings.Contains(s, "SIP_PASSWORD=****") {
		t.Errorf("config string does not mask SIP_PASSWORD: %s", s)
	}
}
