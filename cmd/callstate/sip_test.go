package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate/internal/testpbx"
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
		{"ErrTLSKeyWithoutCert", map[string]string{"SIP_TLS_KEY_FILE": "sip_test.go"}, []string{"SIP_TLS_CERT_FILE", "must be set with SIP_TLS_KEY_FILE"}},
		{"ErrTLSCAFile", map[string]string{"SIP_TLS_CA_FILE": "/nonexistent/ca.pem"}, []string{"SIP_TLS_CA_FILE", "no such file"}},
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

func TestSIPTLS(t *testing.T) {
	files := testpbx.NewCertificate(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	tests := []struct {
		name    string
		cfg     sipConfig
		wantErr string
	}{
		{"OffForUDP", sipConfig{Transport: "udp", TLSCAFile: garbage}, ""},
		{"OK", sipConfig{Transport: "tls", TLSCAFile: files.CertFile, TLSCertFile: files.CertFile, TLSKeyFile: files.KeyFile}, ""},
		{"OKSystemRootsNoCertificate", sipConfig{Transport: "tls"}, ""},
		{"ErrCAFileNotPEM", sipConfig{Transport: "tls", TLSCAFile: garbage}, "SIP_TLS_CA_FILE: no PEM certificate"},
		{"ErrKeyPair", sipConfig{Transport: "tls", TLSCertFile: files.CertFile, TLSKeyFile: garbage}, "SIP_TLS_CERT_FILE, SIP_TLS_KEY_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := sipTLS(tt.cfg, log)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case tt.cfg.Transport != "tls" && conf != nil:
				t.Errorf("TLS configuration for transport %s", tt.cfg.Transport)
			case tt.name == "OK" && (conf.RootCAs == nil || len(conf.Certificates) != 1):
				t.Errorf("configuration %+v: want the CA and the certificate", conf)
			}
		})
	}
}
