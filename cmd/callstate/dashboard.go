package main

import (
	"context"
	"errors"
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
	Heartbeat      time.Duration `env:"STREAM_HEARTBEAT" default:"15s" validate:"min=1s,max=5m"`
	MaxClients     int           `env:"STREAM_MAX_CLIENTS" default:"2000" validate:"min=1,max=100000"`
	StreamWriteTO  time.Duration `env:"STREAM_WRITE_TIMEOUT" default:"10s" validate:"min=100ms,max=5m"`
	StreamQueueLen int           `env:"STREAM_QUEUE_LEN" default:"256" validate:"min=1,max=100000"`
	MaxInflight    int           `env:"API_MAX_INFLIGHT" default:"64" validate:"min=1,max=100000"`
	PhoneRegion    string        `env:"PHONE_REGION" default:"DE" validate:"phoneregion"`
	Thresholds     string        `env:"BOARD_THRESHOLDS" default:"waiting=3:6,longest_wait=60s:120s,service_level=0.9:0.8" validate:"boardthresholds"`
	Sound          bool          `env:"BOARD_SOUND" default:"true"`
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

// runStream feeds the database's change notifications to the stream and
// sends them, until ctx is done.
func runStream(ctx context.Context, st *store.Store, s *handlers.Stream, lamps *handlers.LiveLamps) error {
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	err := st.Listen(ctx, func(c store.Change) {
		if lamps != nil {
			lamps.Changed()
		}
		switch {
		case c.Kind == store.ChangeCall:
			s.Notify(handlers.ChangeCall, c.Seq, c.CallID)
		case c.Kind == store.ChangeExtension:
			s.Notify(handlers.ChangeExtension, c.Seq, 0)
		case c.Kind == store.ChangeListening && c.Seq == 0:
			s.Notify(handlers.ChangeResync, 0, 0)
		}
	})
	return errors.Join(err, <-errc)
}
