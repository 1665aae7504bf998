package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/callstate/callstate/sip"
	"github.com/callstate/callstate/store"
)

// sipConfig holds the SIP_* settings of the PBX subscriber. An empty
// SIP_PBX_ADDR turns the subscriber off.
type sipConfig struct {
	PBXAddr      string        `env:"SIP_PBX_ADDR" validate:"omitempty,hostname_port"`
	Transport    string        `env:"SIP_TRANSPORT" default:"udp" validate:"oneof=udp tcp tls"`
	Domain       string        `env:"SIP_DOMAIN" validate:"omitempty,hostname|ip"`
	ListenAddr   string        `env:"SIP_LISTEN_ADDR" default:"0.0.0.0:5060" validate:"hostname_port"`
	ContactAddr  string        `env:"SIP_CONTACT_ADDR" validate:"omitempty,hostname_port"`
	Username     string        `env:"SIP_USERNAME" default:"callstate" validate:"printascii,max=64,excludesall=@:;<>"`
	Password     string        `env:"SIP_PASSWORD" secret:"true" validate:"omitempty,printascii"`
	AuthUsername string        `env:"SIP_AUTH_USERNAME" validate:"omitempty,printascii,excludesall=\""`
	Realm        string        `env:"SIP_REALM" validate:"omitempty,printascii,excludesall=\""`
	Extensions   []string      `env:"SIP_EXTENSIONS" validate:"dive,printascii,max=64,excludesall=@:;<>"`
	Expires      time.Duration `env:"SIP_EXPIRES" default:"10m" validate:"min=10s,max=24h"`
	Register     bool          `env:"SIP_REGISTER" default:"false"`
	Presence     bool          `env:"SIP_PRESENCE" default:"false"`
	StuckTimeout time.Duration `env:"SIP_STUCK_DIALOG_TIMEOUT" default:"2m" validate:"min=0s,max=24h"`
	MessageURI   string        `env:"SIP_MESSAGE_URI" validate:"omitempty,startswith=sip:|startswith=sips:"`
	ReloadEvery  time.Duration `env:"SIP_RELOAD_INTERVAL" default:"10s" validate:"min=1s,max=1h"`
}

// startSIP starts the SIP subscriber in g when it is configured. It returns
// once the subscriber runs; the subscriber stops when ctx is done.
func startSIP(ctx context.Context, g *errgroup.Group, cfg sipConfig, st *store.Store, log *slog.Logger) error {
	if cfg.PBXAddr == "" {
		log.Info("SIP subscriber off (SIP_PBX_ADDR is empty)")
		return nil
	}
	if err := st.AddExtensions(ctx, cfg.Extensions); err != nil {
		return fmt.Errorf("SIP_EXTENSIONS: %w", err)
	}
	sub, err := sip.New(sipOptions(cfg, st, log))
	if err != nil {
		return fmt.Errorf("SIP_* settings: %w", err)
	}
	log.Info("SIP subscriber on: watching the enabled rows of sip_extension", "pbx", cfg.PBXAddr, "contact", sub.Contact())
	g.Go(func() error { return sub.Run(ctx) })
	return nil
}

// sipOptions turns the SIP_* settings into the subscriber's Config.
func sipOptions(cfg sipConfig, st *store.Store, log *slog.Logger) sip.Config {
	return sip.Config{
		PBXAddr:            cfg.PBXAddr,
		Transport:          cfg.Transport,
		Domain:             cfg.Domain,
		ListenAddr:         cfg.ListenAddr,
		ContactAddr:        cfg.ContactAddr,
		Username:           cfg.Username,
		Password:           cfg.Password,
		AuthUsername:       cfg.AuthUsername,
		Realm:              cfg.Realm,
		Expires:            cfg.Expires,
		Register:           cfg.Register,
		Presence:           cfg.Presence,
		StuckDialogTimeout: cfg.StuckTimeout,
		MessageURI:         cfg.MessageURI,
		ReloadInterval:     cfg.ReloadEvery,
		Store:              st,
		Logger:             log,
	}
}
