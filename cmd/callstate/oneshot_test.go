package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/callstate/callstate/store/storetest"
)

// TestOneShotLogger: once a one-shot command is done, a warning about a
// canceled context is debug; before that, and any other warning, stays.
func TestOneShotLogger(t *testing.T) {
	canceled := fmt.Errorf("store: unavailable: %w", context.Canceled)
	tests := []struct {
		name   string
		ending bool
		err    error
		want   string // in the output; "" means nothing written
	}{
		{"CanceledWhileWorking", false, canceled, "level=WARN"},
		{"CanceledAtTheEnd", true, canceled, ""},
		{"CanceledAsTextAtTheEnd", true, errors.New("query: context canceled"), ""},
		{"OtherAtTheEnd", true, errors.New("disk full"), "level=WARN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := newOneShotLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
			if tt.ending {
				endOneShot(log)
			}
			log.With("part", "store").Warn("journeys of the last changed calls not refreshed at start", "err", tt.err)
			if got := buf.String(); (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
		})
	}
	var buf bytes.Buffer
	log := newOneShotLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	endOneShot(log)
	log.Warn("x", "err", canceled)
	if !strings.Contains(buf.String(), "level=DEBUG") {
		t.Errorf("at LOG_LEVEL=debug: %q", buf.String())
	}
}

// TestContactsImportLogsNoWarning: a contacts import that works logs no
// warning, also not the store's work that its end cancels.
func TestContactsImportLogsNoWarning(t *testing.T) {
	env := map[string]string{"DATABASE_URL": storetest.NewDatabase(t), "LOG_LEVEL": "warn"}
	prev := stdout
	stdout = new(bytes.Buffer)
	t.Cleanup(func() { stdout = prev })
	for range 5 {
		var logs bytes.Buffer
		if err := run(t.Context(), []string{"contacts", "import", "../../testdata/contacts-google.csv", "-env-file", os.DevNull}, envFunc(env), &logs); err != nil {
			t.Fatal(err)
		}
		if logs.Len() > 0 {
			t.Fatalf("logs:\n%s", logs.String())
		}
	}
}
