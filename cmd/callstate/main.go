// Command callstate runs the callstate service: sipgate.io webhooks (and
// PBX extensions over SIP) into one call-state table in PostgreSQL.
//
// Configuration comes from the environment and from a .env file in the
// working directory; the environment wins. See .env.example.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	_ "time/tzdata" // time zone names (STATS_TIME_ZONE, the routing rules' time_zone) without the system's database
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "callstate:", err)
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// stdout is where version, help and check-config write.
var stdout io.Writer = os.Stdout

// exitError is an error that asks for an exit code of its own: 2 for a
// bad command line or configuration.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
