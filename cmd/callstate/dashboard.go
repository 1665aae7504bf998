package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/store"
)

// dashboardConfig holds the settings of the HTTP API, the live stream and
// the board. With neither API_TOKEN nor API_BASIC_AUTH_USER set, they are
// open to anyone who can reach LISTEN_ADDR.
type dashboardConfig struct {
	Token          string        `env:"API_TOKEN" secret:"true" validate:"omitempty,min=16,max=256,printascii,excludesall= "`
	BasicUser      string        `env:"API_BASIC_AUTH_USER" validate:"required_with=BasicPassword,omitempty,max=128,excludesall=:"`
	BasicPassword  string        `env:"API_BASIC_AUTH_PASSWORD" secret:"true" validate:"required_with=BasicUser,omitempty,min=8,max=256"`
	CORSOrigins    []string      `env:"CORS_ALLOWED_ORIGINS" validate:"dive,http_url|eq=*"`
	Heartbeat      time.Duration `env:"STREAM_HEARTBEAT" validate:"min=1s,max=5m"`
	MaxClients     int           `env:"STREAM_MAX_CLIENTS" validate:"min=1,max=100000"`
	StreamWriteTO  time.Duration `env:"STREAM_WRITE_TIMEOUT" validate:"min=100ms,max=5m"`
	StreamQueueLen int           `env:"STREAM_QUEUE_LEN" validate:"min=1,max=100000"`
	MaxInflight    int           `env:"API_MAX_INFLIGHT" validate:"min=1,max=100000"`
	PhoneRegion    string        `env:"PHONE_REGION" envDefault:"DE" validate:"phoneregion"`
	Thresholds     string        `env:"BOARD_THRESHOLDS" envDefault:"waiting=3:6,longest_wait=60s:120s,service_level=0.9:0.8" validate:"boardthresholds"`
	Sound          bool          `env:"BOARD_SOUND" envDefault:"true"`
}

// dashboardOptions turns the dashboard settings into the handlers' options,
// with a stream reading from st.
func dashboardOptions(cfg dashboardConfig, st *store.Store, log *slog.Logger) handlers.DashboardOptions {
	plan, _ := callstate.NewNumberPlan(cfg.PhoneRegion) // validated
	pb := handlers.NewPhonebook(st, plan, log)
	th, _ := handlers.ParseThresholds(cfg.Thresholds) // validated
	return handlers.DashboardOptions{
		Store:     st,
		Phonebook: pb,
		Stream: handlers.NewStream(st, handlers.StreamOptions{
			Heartbeat: cfg.Heartbeat, WriteTimeout: cfg.StreamWriteTO, MaxClients: cfg.MaxClients,
			QueueLen: cfg.StreamQueueLen, Logger: log, Phonebook: pb,
		}),
		BearerToken: cfg.Token, BasicUser: cfg.BasicUser, BasicPassword: cfg.BasicPassword,
		CORSOrigins: cfg.CORSOrigins, MaxInflight: cfg.MaxInflight,
		Board: handlers.BoardOptions{Thresholds: th, Sound: cfg.Sound},
	}
}

// changeFeed is a process's one listening connection to the database:
// every consumer (the live stream, the presence agent) subscribes to it
// before run, and each change the store announces goes to all of them.
type changeFeed struct {
	fns []func(store.Change)
}

// subscribe adds fn; call it before run.
func (f *changeFeed) subscribe(fn func(store.Change)) { f.fns = append(f.fns, fn) }

// run listens until ctx is done, if anyone subscribed.
func (f *changeFeed) run(ctx context.Context, st *store.Store) error {
	if len(f.fns) == 0 {
		return nil
	}
	return st.Listen(ctx, func(c store.Change) {
		for _, fn := range f.fns {
			fn(c)
		}
	})
}

// runStream sends the feed to the stream's clients until ctx is done; the
// database's change notifications (subscribed to changes) tell it when to
// read the feed.
func runStream(ctx context.Context, changes *changeFeed, s *handlers.Stream) func() error {
	changes.subscribe(func(c store.Change) {
		switch c.Kind {
		case store.ChangeCall, store.ChangeExtension, store.ChangeListening:
			s.Notify()
		}
	})
	return func() error { return s.Run(ctx) }
}
