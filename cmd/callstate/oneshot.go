package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
)

// oneShotHandler is the log handler of a command that uses the store for a
// moment (contacts import, forget): once the command's work is done
// (ending), the store's background work that its close cancels, such as
// the refresh of the last changed calls' journeys at start, ends with a
// canceled context, which is no warning there. Such records go out at
// debug; every other record as it is.
type oneShotHandler struct {
	slog.Handler
	ending *atomic.Bool
}

func newOneShotLogger(log *slog.Logger) *slog.Logger {
	return slog.New(oneShotHandler{Handler: log.Handler(), ending: new(atomic.Bool)})
}

// endOneShot marks log's command as done: from now on a record about a
// canceled context is debug.
func endOneShot(log *slog.Logger) {
	if h, ok := log.Handler().(oneShotHandler); ok {
		h.ending.Store(true)
	}
}

func (h oneShotHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && h.ending.Load() && aboutCancel(r) {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h oneShotHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return oneShotHandler{Handler: h.Handler.WithAttrs(attrs), ending: h.ending}
}

func (h oneShotHandler) WithGroup(name string) slog.Handler {
	return oneShotHandler{Handler: h.Handler.WithGroup(name), ending: h.ending}
}

// aboutCancel reports whether r carries an error that is a canceled
// context.
func aboutCancel(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Value.Kind() == slog.KindAny &&
			(errors.Is(err, context.Canceled) || strings.HasSuffix(err.Error(), context.Canceled.Error())) {
			found = true
		}
		return !found
	})
	return found
}
