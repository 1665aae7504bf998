package watch

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/callstate/callstate"
)

// Bounds of the state writer: how long a change waits to be written with
// others, how many fill a statement (and flush at once), and how a failed
// write is tried again.
const (
	stateFlushEvery = 100 * time.Millisecond
	stateBatch      = 1000
	stateRetryMin   = 200 * time.Millisecond
	stateRetryMax   = 10 * time.Second
)

// stateWriter writes subscription states and presence to the store in the
// background: the latest change of each extension is kept until written,
// many extensions go in one statement, and a write that fails is tried
// again, with back-off, until it lands (or the writer is closed and its
// last attempt fails). So the database is eventually right whatever
// happened to one write, and 10,000 subscriptions coming up do not need
// 10,000 transactions at once.
type stateWriter struct {
	store   Store
	log     *slog.Logger
	timeout time.Duration // bounds each statement

	mu       sync.Mutex
	subs     map[string]stateValue // dialog subscription state by extension
	presence map[string]stateValue // presence by extension
	full     chan struct{}         // a batch is full: flush now
	stop     chan struct{}
	done     chan struct{}
	started  bool
	writes   int // statements that landed, for tests and the benchmark
	failures int // statements that failed
}

// stateValue is a pending value: a state and its reason, or a presence
// status and its note.
type stateValue struct{ value, detail string }

func newStateWriter(st Store, log *slog.Logger, timeout time.Duration) *stateWriter {
	return &stateWriter{
		store: st, log: log, timeout: timeout,
		subs:     make(map[string]stateValue),
		presence: make(map[string]stateValue),
		full:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// setSubscription queues ext's subscription state; it replaces a state of
// ext not written yet.
func (w *stateWriter) setSubscription(ext, state, reason string) {
	w.put(&w.subs, ext, stateValue{state, reason})
}

// setPresence queues ext's presence, replacing one not written yet.
func (w *stateWriter) setPresence(ext, status, note string) {
	w.put(&w.presence, ext, stateValue{status, note})
}

// put sets ext's pending value in *m; m is read under the lock, since
// flush replaces the map.
func (w *stateWriter) put(m *map[string]stateValue, ext string, v stateValue) {
	w.mu.Lock()
	(*m)[ext] = v
	n := len(*m)
	w.mu.Unlock()
	if n >= stateBatch {
		select {
		case w.full <- struct{}{}:
		default:
		}
	}
}

// start runs the writer until close.
func (w *stateWriter) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return
	}
	w.started = true
	go w.run()
}

// close writes what is pending (one attempt, within the timeout) and stops
// the writer.
func (w *stateWriter) close() {
	w.mu.Lock()
	started := w.started
	w.started = true
	w.mu.Unlock()
	if !started {
		go w.run()
	}
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *stateWriter) run() {
	defer close(w.done)
	failures := 0
	t := time.NewTimer(stateFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			if err := w.flush(); err != nil {
				w.log.Warn("sip: recording subscription states on the way out failed", "err", err)
			}
			return
		case <-w.full:
		case <-t.C:
		}
		next := stateFlushEvery
		if err := w.flush(); err != nil {
			failures++
			next = backoff(stateRetryMin, stateRetryMax, failures-1)
			if failures == 1 || failures%10 == 0 {
				w.log.Warn("sip: recording subscription states failed; trying again", "err", err,
					"attempt", failures, "retry_in", next.Round(time.Millisecond))
			}
		} else if failures > 0 {
			w.log.Info("sip: subscription states recorded again after failures", "attempts", failures+1)
			failures = 0
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(next)
	}
}

// flush writes the pending changes, up to stateBatch extensions a
// statement. What a failed statement held is kept for the next flush,
// unless a newer change of the same extension came meanwhile. A statement
// the store refuses as invalid is dropped (trying again cannot help).
func (w *stateWriter) flush() error {
	var errs []error
	for _, kind := range []struct {
		m     *map[string]stateValue
		write func(ctx context.Context, exts, values, details []string) error
	}{
		{&w.subs, w.store.SetSubscriptions},
		{&w.presence, w.store.SetPresences},
	} {
		w.mu.Lock()
		pending := *kind.m
		if len(pending) == 0 {
			w.mu.Unlock()
			continue
		}
		*kind.m = make(map[string]stateValue, len(pending))
		w.mu.Unlock()

		exts := make([]string, 0, len(pending))
		for ext := range pending {
			exts = append(exts, ext)
		}
		slices.Sort(exts)
		for chunk := range slices.Chunk(exts, stateBatch) {
			values, details := make([]string, len(chunk)), make([]string, len(chunk))
			for i, ext := range chunk {
				values[i], details[i] = pending[ext].value, pending[ext].detail
			}
			ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
			err := kind.write(ctx, chunk, values, details)
			cancel()
			w.mu.Lock()
			switch {
			case err == nil:
				w.writes++
			case errors.Is(err, callstate.ErrInvalidEvent):
				w.failures++
				w.log.Error("sip: the store refused subscription states; dropped", "extensions", len(chunk), "err", err)
			default:
				w.failures++
				for i, ext := range chunk {
					if _, newer := (*kind.m)[ext]; !newer {
						(*kind.m)[ext] = stateValue{values[i], details[i]}
					}
				}
				errs = append(errs, err)
			}
			w.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// pending returns how many extensions have changes not written yet.
func (w *stateWriter) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.subs) + len(w.presence)
}
