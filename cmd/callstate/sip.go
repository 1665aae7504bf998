package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/sip/watch"
	"github.com/callstate/callstate/spool"
	"github.com/callstate/callstate/store"
)

// sipConfig holds the SIP_* settings of the PBX subscriber. An empty
// SIP_PBX_ADDR turns the subscriber off.
type sipConfig struct {
	PBXAddr      string        `env:"SIP_PBX_ADDR" validate:"omitempty,hostname_port"`
	Transport    string        `env:"SIP_TRANSPORT" envDefault:"udp" validate:"oneof=udp tcp tls"`
	Domain       string        `env:"SIP_DOMAIN" validate:"omitempty,hostname|ip"`
	ListenAddr   string        `env:"SIP_LISTEN_ADDR" envDefault:"0.0.0.0:5060" validate:"hostname_port"`
	ContactAddr  string        `env:"SIP_CONTACT_ADDR" validate:"omitempty,hostname_port"`
	Username     string        `env:"SIP_USERNAME" envDefault:"callstate" validate:"printascii,max=64,excludesall=@:;<>"`
	Password     string        `env:"SIP_PASSWORD" secret:"true" validate:"omitempty,printascii"`
	AuthUsername string        `env:"SIP_AUTH_USERNAME" validate:"omitempty,printascii,excludesall=\""`
	Realm        string        `env:"SIP_REALM" validate:"omitempty,printascii,excludesall=\""`
	Extensions   []string      `env:"SIP_EXTENSIONS" validate:"dive,printascii,max=64,excludesall=@:;<>"`
	Expires      time.Duration `env:"SIP_EXPIRES" envDefault:"10m" validate:"min=10s,max=24h"`
	Register     bool          `env:"SIP_REGISTER" envDefault:"false"`
	Presence     bool          `env:"SIP_PRESENCE" envDefault:"false"`
	StuckTimeout time.Duration `env:"SIP_STUCK_DIALOG_TIMEOUT" envDefault:"2m" validate:"min=0s,max=24h"`
	Keepalive    time.Duration `env:"SIP_KEEPALIVE" envDefault:"5s" validate:"min=0s,max=1h"`
	AnswerWithin time.Duration `env:"SIP_NOTIFY_ANSWER_WITHIN" envDefault:"400ms" validate:"min=10ms,max=30s"`
	SubRate      int           `env:"SIP_SUBSCRIBE_RATE" envDefault:"500" validate:"min=1,max=100000"`
	MessageURI   string        `env:"SIP_MESSAGE_URI" validate:"omitempty,startswith=sip:|startswith=sips:"`
	ReloadEvery  time.Duration `env:"SIP_RELOAD_INTERVAL" validate:"min=1s,max=1h"` // default: watch.DefaultReloadInterval, see newConfig
	LeaseTTL     time.Duration `env:"SIP_LEASE_TTL" envDefault:"20s" validate:"min=2s,max=1h,gtefield=ReloadEvery"`
	InstanceID   string        `env:"INSTANCE_ID" validate:"omitempty,printascii,max=128"`
	TLSCAFile    string        `env:"SIP_TLS_CA_FILE" validate:"omitempty,file"`
	TLSCertFile  string        `env:"SIP_TLS_CERT_FILE" validate:"required_with=TLSKeyFile,omitempty,file"`
	TLSKeyFile   string        `env:"SIP_TLS_KEY_FILE" validate:"required_with=TLSCertFile,omitempty,file"`
}

// instanceID names this process among the instances sharing the database:
// INSTANCE_ID, else host name and process id.
func (c sipConfig) instanceID() string {
	if c.InstanceID != "" {
		return c.InstanceID
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// sipStore is what the subscriber writes to. Events go through the spool,
// like the webhooks'. The extensions it watches are those this instance
// holds a lease on, renewed at every reload, so that several instances
// share them and take over a dead one's within SIP_LEASE_TTL plus one
// reload. Status writes apply only while this instance holds the extension.
type sipStore struct {
	*store.Store
	events   *spool.Spool
	metrics  *metrics.Metrics
	instance string
	ttl      time.Duration
}

// Keep appends what a NOTIFY changed to the spool, which applies it to
// the database: the NOTIFY is answered once it is on local disk, without
// waiting for a database round trip.
func (s sipStore) Keep(ctx context.Context, evs []callstate.Event) error {
	err := s.events.Keep(ctx, evs)
	outcome := metrics.OutcomeApplied
	switch {
	case errors.Is(err, callstate.ErrInvalidEvent):
		outcome = metrics.OutcomeRejected
	case err != nil:
		// Answered 500: the subscriber asks for full state, and the PBX
		// sends the state again.
		outcome = metrics.OutcomeFailed
	}
	for _, ev := range evs {
		s.metrics.Event(string(ev.Source), ev.Type, outcome)
	}
	return err
}

func (s sipStore) Extensions(ctx context.Context) ([]string, error) {
	return s.ClaimExtensions(ctx, s.instance, s.ttl)
}

func (s sipStore) SetSubscriptions(ctx context.Context, exts, states, reasons []string) error {
	return s.SetSubscriptionsAs(ctx, s.instance, exts, states, reasons)
}

func (s sipStore) SetPresences(ctx context.Context, exts, statuses, notes []string) error {
	return s.SetPresencesAs(ctx, s.instance, exts, statuses, notes)
}

// startSIP starts the SIP subscriber in g when it is configured. It returns
// once the subscriber runs; the subscriber stops when ctx is done,
// un-subscribes, and gives its extensions back for other instances.
func startSIP(ctx context.Context, g *errgroup.Group, cfg sipConfig, st *store.Store, sp *spool.Spool, m *metrics.Metrics, ready *readiness, log *slog.Logger) error {
	if cfg.PBXAddr == "" {
		log.Info("SIP subscriber off (SIP_PBX_ADDR is empty)")
		return nil
	}
	if err := store.CheckExtensions(cfg.Extensions); err != nil {
		return fmt.Errorf("SIP_EXTENSIONS: %w", err)
	}
	ss := sipStore{Store: st, events: sp, metrics: m, instance: cfg.instanceID(), ttl: cfg.LeaseTTL}
	opts, err := sipOptions(cfg, ss, log)
	if err != nil {
		return err
	}
	sub, err := watch.New(opts)
	if err != nil {
		return fmt.Errorf("SIP_* settings: %w", err)
	}
	ready.sip = sub.Stats
	registerSIPMetrics(m, sub)
	log.Info("SIP subscriber on: watching the enabled rows of sip_extension", "pbx", cfg.PBXAddr,
		"contact", sub.Contact(), "instance", ss.instance)
	g.Go(func() error {
		// The subscriber needs its extensions' leases: it starts once the
		// database is there, which may be after callstate has started.
		if !onceReady(ctx, st) {
			return nil
		}
		for {
			err := st.AddExtensions(ctx, cfg.Extensions)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("adding SIP_EXTENSIONS to sip_extension failed; trying again", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
		err := sub.Run(ctx)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rerr := st.ReleaseExtensions(rctx, ss.instance); rerr != nil {
			log.Warn("giving back the SIP extensions", "err", rerr)
		}
		return err
	})
	return nil
}

// sipOptions turns the SIP_* settings into the subscriber's Config. It
// returns an error naming the variable when a TLS file cannot be used.
func sipOptions(cfg sipConfig, st watch.Store, log *slog.Logger) (watch.Config, error) {
	conf, err := sipTLS(cfg, log)
	if err != nil {
		return watch.Config{}, err
	}
	return watch.Config{
		TLSConfig:          conf,
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
		Keepalive:          cfg.Keepalive,
		AnswerWithin:       cfg.AnswerWithin,
		SubscribeRate:      cfg.SubRate,
		MessageURI:         cfg.MessageURI,
		ReloadInterval:     cfg.ReloadEvery,
		Store:              st,
		Logger:             log,
	}, nil
}

// sipTLS builds the TLS configuration for SIP_TRANSPORT=tls: the PBX's
// certificate is checked against SIP_TLS_CA_FILE (else the system's
// roots), and SIP_TLS_CERT_FILE with SIP_TLS_KEY_FILE is what callstate
// presents on its own listener and to a PBX that asks for a client
// certificate. It returns nil for other transports.
func sipTLS(cfg sipConfig, log *slog.Logger) (*tls.Config, error) {
	if cfg.Transport != "tls" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("SIP_TLS_CA_FILE: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("SIP_TLS_CA_FILE: no PEM certificate in %s", cfg.TLSCAFile)
		}
	}
	if cfg.TLSCertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("SIP_TLS_CERT_FILE, SIP_TLS_KEY_FILE: %w", err)
		}
		conf.Certificates = []tls.Certificate{pair}
	} else {
		log.Warn("SIP over TLS without SIP_TLS_CERT_FILE: NOTIFYs can arrive only on the connection callstate opens to the PBX; a PBX that connects back to SIP_CONTACT_ADDR for them, as Kamailio does, cannot deliver them")
	}
	return conf, nil
}
