package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/xmlresponse"
)

// sipgateOptions turns the SIPGATE_* settings into the webhook's options.
func sipgateOptions(cfg Config, log *slog.Logger) (handlers.SipgateOptions, error) {
	o := handlers.SipgateOptions{
		PublicURL:    cfg.PublicURL,
		MaxBodyBytes: cfg.MaxBodyBytes,
		// The spool bounds the database wait by DATABASE_WRITE_TIMEOUT; this
		// also covers its fsync.
		WriteTimeout: cfg.DBWriteTimeout + 3*time.Second,

		AllowedNetworks: parseNets(cfg.AllowedNetworks),
		PathSecret:      cfg.PathSecret,
		MaxInflight:     cfg.MaxInflight,
	}
	if cfg.VerifySignature {
		key := handlers.SipgatePublicKey
		if cfg.PublicKeyFile != "" {
			b, err := os.ReadFile(cfg.PublicKeyFile)
			if err != nil {
				return o, fmt.Errorf("SIPGATE_PUBLIC_KEY_FILE: %w", err)
			}
			key = b
		}
		v, err := handlers.NewSignatureVerifier(key)
		if err != nil {
			return o, fmt.Errorf("SIPGATE_PUBLIC_KEY_FILE: %w", err)
		}
		o.Verifier = v
	} else {
		log.Warn("SIPGATE_VERIFY_SIGNATURE=false: anyone who can reach the webhook can write call state; use this for local experiments only")
	}
	var play *xmlresponse.Play
	if cfg.PlayURL != "" {
		play = &xmlresponse.Play{URL: cfg.PlayURL}
	}
	switch cfg.NewCallAction {
	case "gather":
		o.NewCallAction = xmlresponse.Gather{MaxDigits: cfg.GatherMaxDigits, Timeout: cfg.GatherTimeout.Round(time.Millisecond), Play: play}
	case "dial":
		o.NewCallAction = xmlresponse.Dial{Numbers: cfg.DialNumbers, CallerID: cfg.DialCallerID, Anonymous: cfg.DialAnonymous}
	case "voicemail":
		o.NewCallAction = xmlresponse.Dial{Voicemail: true}
	case "play":
		if play == nil {
			return o, errors.New("SIPGATE_PLAY_URL: must be set when SIPGATE_NEWCALL_ACTION is play")
		}
		o.NewCallAction = *play
	case "reject":
		o.NewCallAction = xmlresponse.Reject{Reason: xmlresponse.RejectReason(cfg.RejectReason)}
	case "hangup":
		o.NewCallAction = xmlresponse.Hangup{}
	}
	if o.NewCallAction != nil {
		if err := (xmlresponse.Response{Action: o.NewCallAction}).Validate(); err != nil && !errors.Is(err, xmlresponse.ErrGatherWithoutOnData) {
			return o, fmt.Errorf("SIPGATE_NEWCALL_ACTION=%s: %w", cfg.NewCallAction, err)
		}
	}
	return o, nil
}
