package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/sip/presence"
	"github.com/callstate/callstate/store"
)

// agentConfig holds the SIP_AGENT_* settings of the presence agent, which
// phones SUBSCRIBE to for lamps. An empty SIP_AGENT_LISTEN turns it off.
type agentConfig struct {
	Listen          string        `env:"SIP_AGENT_LISTEN" validate:"omitempty,hostname_port"`
	Transport       string        `env:"SIP_AGENT_TRANSPORT" envDefault:"udp" validate:"oneof=udp tcp tls"`
	WSListen        string        `env:"SIP_AGENT_WS_LISTEN" validate:"omitempty,hostname_port"`
	WSSListen       string        `env:"SIP_AGENT_WSS_LISTEN" validate:"omitempty,hostname_port"`
	Domain          string        `env:"SIP_AGENT_DOMAIN" validate:"omitempty,hostname|ip"`
	ContactAddr     string        `env:"SIP_AGENT_CONTACT_ADDR" validate:"omitempty,hostname_port"`
	Realm           string        `env:"SIP_AGENT_REALM" validate:"omitempty,printascii,excludesall=\""`
	Accounts        []string      `env:"SIP_AGENT_ACCOUNTS" secret:"true" validate:"dive,contains=:"`
	Anonymous       bool          `env:"SIP_AGENT_ANONYMOUS" envDefault:"false"`
	Aliases         []string      `env:"SIP_AGENT_ALIASES" validate:"dive,contains=="`
	Lists           []string      `env:"SIP_AGENT_LISTS" validate:"dive,contains=="`
	MinExpires      time.Duration `env:"SIP_AGENT_MIN_EXPIRES" envDefault:"60s" validate:"min=1s,max=24h"`
	MaxExpires      time.Duration `env:"SIP_AGENT_MAX_EXPIRES" envDefault:"1h" validate:"min=1s,max=24h,gtefield=MinExpires"`
	Rate            int           `env:"SIP_AGENT_RATE" envDefault:"20" validate:"min=1,max=100000"`
	Burst           int           `env:"SIP_AGENT_BURST" envDefault:"100" validate:"min=1,max=1000000"`
	MaxSubs         int           `env:"SIP_AGENT_MAX_SUBSCRIPTIONS" envDefault:"50000" validate:"min=1,max=10000000"`
	MaxPerSubscribe int           `env:"SIP_AGENT_MAX_PER_SUBSCRIBER" envDefault:"500" validate:"min=1,max=10000000"`
	TLSCertFile     string        `env:"SIP_AGENT_TLS_CERT_FILE" validate:"required_if=Transport tls,required_with=TLSKeyFile,omitempty,file"`
	TLSKeyFile      string        `env:"SIP_AGENT_TLS_KEY_FILE" validate:"required_with=TLSCertFile,omitempty,file"`
}

// agentSource is the store as the presence agent's lamp source.
type agentSource struct{ *store.Store }

func (s agentSource) AgentAccounts(ctx context.Context, realm string) (map[string]string, error) {
	return s.PresenceAccounts(ctx, realm)
}

func (s agentSource) AgentAliases(ctx context.Context) (map[string]presence.LampRef, error) {
	as, err := s.PresenceAliases(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]presence.LampRef, len(as))
	for _, a := range as {
		m[a.Alias] = presence.LampRef{Source: a.Source, Extension: a.Extension}
	}
	return m, nil
}

// agentOptions turns the SIP_AGENT_* settings into the agent's config. Its
// errors name the variable.
func agentOptions(cfg agentConfig, st *store.Store, log *slog.Logger) (presence.Config, error) {
	accounts := map[string]string{}
	for _, a := range cfg.Accounts {
		user, pw, _ := strings.Cut(a, ":")
		if user == "" || pw == "" {
			return presence.Config{}, errors.New("SIP_AGENT_ACCOUNTS: want user:password, comma-separated")
		}
		accounts[user] = pw
	}
	aliases := map[string]presence.LampRef{}
	for _, a := range cfg.Aliases {
		alias, target, _ := strings.Cut(a, "=")
		ref, ok := presence.ParseLampRef(strings.TrimSpace(target))
		if strings.TrimSpace(alias) == "" || !ok {
			return presence.Config{}, fmt.Errorf("SIP_AGENT_ALIASES: %q: want alias=sip/EXTENSION or alias=sipgate/USERID", a)
		}
		aliases[strings.TrimSpace(alias)] = ref
	}
	lists := map[string][]presence.LampRef{}
	for _, l := range cfg.Lists {
		name, members, _ := strings.Cut(l, "=")
		name = strings.TrimSpace(name)
		if !callstate.ValidExtension(name) {
			return presence.Config{}, fmt.Errorf("SIP_AGENT_LISTS: list name %q: not allowed in a SIP URI", name)
		}
		for _, m := range strings.Fields(members) {
			ref, ok := presence.ParseLampRef(m)
			if !ok {
				return presence.Config{}, fmt.Errorf("SIP_AGENT_LISTS: %s: member %q: want sip/EXTENSION or sipgate/USERID", name, m)
			}
			lists[name] = append(lists[name], ref)
		}
		if len(lists[name]) == 0 {
			return presence.Config{}, fmt.Errorf("SIP_AGENT_LISTS: %s has no members", name)
		}
	}
	var conf *tls.Config
	if cfg.WSSListen != "" && cfg.TLSCertFile == "" {
		return presence.Config{}, errors.New("SIP_AGENT_TLS_CERT_FILE: must be set with SIP_AGENT_WSS_LISTEN")
	}
	if cfg.Transport == "tls" || cfg.WSSListen != "" {
		pair, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return presence.Config{}, fmt.Errorf("SIP_AGENT_TLS_CERT_FILE, SIP_AGENT_TLS_KEY_FILE: %w", err)
		}
		conf = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	}
	return presence.Config{
		ListenAddr: cfg.Listen, Transport: cfg.Transport, WSListenAddr: cfg.WSListen, WSSListenAddr: cfg.WSSListen, Domain: cfg.Domain, ContactAddr: cfg.ContactAddr,
		Realm: cfg.Realm, Accounts: accounts, AllowAnonymous: cfg.Anonymous, Aliases: aliases, Lists: lists,
		MinExpires: cfg.MinExpires, MaxExpires: cfg.MaxExpires,
		RatePerSecond: float64(cfg.Rate), Burst: cfg.Burst,
		MaxSubscriptions: cfg.MaxSubs, MaxPerSubscriber: cfg.MaxPerSubscribe,
		TLSConfig: conf, Source: agentSource{st}, Logger: log,
	}, nil
}

// startAgent starts the presence agent in g when SIP_AGENT_LISTEN is set.
// It reads the durable feed as every consumer does (store.FollowFeed); the
// process's listening connection (changes) tells it when the feed grew,
// whichever instance wrote.
func startAgent(ctx context.Context, g *errgroup.Group, cfg agentConfig, st *store.Store, changes *changeFeed, m *metrics.Metrics, log *slog.Logger) error {
	if cfg.Listen == "" {
		log.Info("presence agent off (SIP_AGENT_LISTEN is empty)")
		return nil
	}
	opts, err := agentOptions(cfg, st, log)
	if err != nil {
		return err
	}
	a, err := presence.New(opts)
	if err != nil {
		return fmt.Errorf("SIP_AGENT_* settings: %w", err)
	}
	if len(opts.Accounts) == 0 && !opts.AllowAnonymous {
		log.Warn("presence agent: SIP_AGENT_ACCOUNTS is empty; only the accounts of the presence_account table can subscribe")
	}
	registerAgentMetrics(m, a)
	wake := make(chan struct{}, 1)
	changes.subscribe(func(store.Change) {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	for _, run := range []func() error{
		func() error { return a.Run(ctx) },
		func() error {
			return st.FollowFeed(ctx, store.FeedFollow{Start: a.Snapshot, Apply: a.Apply, Wake: wake})
		},
	} {
		g.Go(func() error {
			if !onceReady(ctx, st) { // the agent reads lamps: it starts once the database is there
				return nil
			}
			return run()
		})
	}
	return nil
}
