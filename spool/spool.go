// Package spool keeps accepted events safe on local disk while the database
// cannot take them, and applies them once it can.
//
// A Spool sits between the adapters (webhooks, SIP) and the store. Apply
// writes an event straight to the store while the store answers within
// DirectTimeout; when a write fails or times out, the spool takes the
// store for down, and from then on appends each event to the spool file,
// fsyncs it and reports it accepted, without waiting for the store. A
// runner probes the store a few times a second; as soon as it answers,
// new events go straight to it again, and the runner drains the backlog
// beside them, many events at a time through the store's group commit.
//
// Live events never wait for the backlog, and the backlog is applied in no
// particular order: the store's merge is independent of the order events
// are applied in (callstate.Call.Apply), so this is safe, and several
// instances, each with a spool of its own, can drain at once. Because every
// event carries a dedup key, an event that reached the store and the spool
// both (a write that timed out but committed) is applied once in effect.
//
// The file is a sequence of records: 4-byte big-endian length, 4-byte
// CRC-32C of the data, then the event as JSON. A torn record at the end
// (a crash during a write, never acknowledged) is cut off at open. After a
// restart the whole file is applied again from the start; repeats are
// harmless. The file is truncated whenever it has been drained.
//
// A part of the bound (Options.Reserve) is kept for events that start a
// call (a sipgate newCall, a ringing dialog): when the spool is nearly
// full, other events are refused first. Disk space for them (the reserve,
// at most 64 MiB and a tenth of the free space) is held by a file beside
// the spool, given up for those events when the disk itself is full.
package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/callstate/callstate"
)

// Applier is what the spool writes to: the store.
type Applier interface {
	Apply(ctx context.Context, ev callstate.Event) (applied bool, err error)
	Ping(ctx context.Context) error
}

// BacklogApplier is an Applier that takes a backlog's events after live
// ones; the drain uses it when the store has it.
type BacklogApplier interface {
	ApplyBacklog(ctx context.Context, ev callstate.Event) (applied bool, err error)
}

// ErrFull is returned by Apply when the spool cannot take the event
// within its bound: the event is not accepted.
var ErrFull = errors.New("spool: full")

// Options configure a Spool.
type Options struct {
	Dir           string        // folder of the spool file; created if missing
	MaxBytes      int64         // bound on the spool file; 0 means 256 MiB
	Reserve       int64         // part of MaxBytes only events that start a call may use; 0 means a tenth
	DirectTimeout time.Duration // how long a direct store write may take before the event is spooled; 0 means 500ms
	ProbeEvery    time.Duration // how often a down store is probed; 0 means 250ms
	DrainBatch    int           // records read from the file at a time while draining; 0 means 4096
	DrainParallel int           // lanes (events in flight to the store) while draining; 0 means 128
	Logger        *slog.Logger  // nil means slog.Default()
}

// Stats describe the spool for logs, metrics and /readyz.
type Stats struct {
	Records     int   // events waiting to be applied
	Bytes       int64 // size of those events on disk
	MaxBytes    int64 // the bound
	Reserve     int64 // the part of the bound kept for events that start a call
	Rejected    int64 // events the store refused for good since start (kept in rejected.jsonl)
	DBErrors    int64 // direct writes that failed and were spooled instead, since start
	Spooled     int64 // events accepted into the spool since start, instead of straight into the store
	Kept        int64 // events kept through the spool by Keep since start (a SIP watcher's)
	Drained     int64 // spooled events applied to the store since start
	Refused     int64 // events the spool could not take (full, or the disk failed), since start
	WriteErrors int64 // appends that failed on the disk, since start
	StoreDown   bool  // events go to the spool instead of the store
}

// Spool is safe for concurrent use.
type Spool struct {
	next Applier
	opts Options
	log  *slog.Logger

	down atomic.Bool   // the store is taken for down: events are spooled without trying it
	wake chan struct{} // signalled after an append and when the store goes down

	mu        sync.Mutex
	f         *os.File
	size      int64 // bytes in the file
	readOff   int64 // bytes already applied
	depth     int   // records not yet applied
	written   int64 // records ever written (sync sequence)
	spooled   int64 // events Apply appended since start, the store being down
	kept      int64 // events Keep appended since start
	rejected  int64
	dbErrors  int64
	drained   int64
	refused   int64
	writeErrs int64
	writeErr  error // the last append's failure, until an append or a disk probe succeeds
	full      bool  // an event was refused for want of room, and nothing was drained since
	ballast   bool  // the ballast file holds disk space for new calls
	released  bool  // the ballast was given up and is not back yet

	syncMu sync.Mutex
	synced int64 // records known to be on disk
	syncTo int64 // file size known to be on disk

	drainMu  sync.Mutex // one drainer at a time
	rejectMu sync.Mutex // rejected.jsonl
}

const fileName = "events.spool"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// The spool's defaults, for options left zero; the service's
// SPOOL_MAX_BYTES and DATABASE_WRITE_TIMEOUT default to them.
const (
	DefaultMaxBytes      = 256 << 20
	DefaultDirectTimeout = 500 * time.Millisecond
)

// Open opens (or creates) the spool in opts.Dir in front of next. Events
// left by an earlier run are kept and will be applied by Run.
func Open(opts Options, next Applier) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Reserve <= 0 || opts.Reserve >= opts.MaxBytes {
		opts.Reserve = opts.MaxBytes / 10
	}
	if opts.DirectTimeout <= 0 {
		opts.DirectTimeout = DefaultDirectTimeout
	}
	if opts.ProbeEvery <= 0 {
		opts.ProbeEvery = 250 * time.Millisecond
	}
	if opts.DrainBatch <= 0 {
		opts.DrainBatch = 4096
	}
	if opts.DrainParallel <= 0 {
		opts.DrainParallel = 128
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	path := filepath.Join(opts.Dir, fileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{next: next, opts: opts, log: log.With("component", "spool"), f: f, wake: make(chan struct{}, 1)}
	if err := s.recover(); err != nil {
		f.Close()
		return nil, err
	}
	s.makeBallast()
	if s.depth > 0 {
		s.log.Warn("spool holds events from an earlier run; applying them", "events", s.depth, "bytes", s.size, "path", path)
	}
	return s, nil
}

// recover scans the file, counts its records, and cuts off a torn tail.
func (s *Spool) recover() error {
	r := bufio.NewReader(io.NewSectionReader(s.f, 0, 1<<62))
	var off int64
	for {
		_, n, err := readRecord(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.log.Error("spool: cutting off a damaged tail", "offset", off, "err", err)
			break
		}
		off += n
		s.depth++
	}
	if err := s.f.Truncate(off); err != nil {
		return fmt.Errorf("spool: truncate: %w", err)
	}
	if _, err := s.f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.size, s.syncTo = off, off
	s.written, s.synced = int64(s.depth), int64(s.depth)
	return nil
}

func readRecord(r io.Reader) ([]byte, int64, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, 0, fmt.Errorf("short header: %w", err)
		}
		return nil, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n > 64<<20 {
		return nil, 0, fmt.Errorf("record of %d bytes", n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, 0, fmt.Errorf("short record: %w", err)
	}
	if crc32.Checksum(data, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, 0, errors.New("checksum mismatch")
	}
	return data, int64(8 + n), nil
}

// Apply stores ev: directly while the store answers within DirectTimeout,
// else durably in the spool. It returns applied=false only for an event
// the store knew already. It returns an error wrapping
// callstate.ErrInvalidEvent for an event the store refuses for good,
// ErrFull when the spool has no room for it, and a wrapped I/O error when
// the spool cannot be written; the event is not accepted then.
func (s *Spool) Apply(ctx context.Context, ev callstate.Event) (bool, error) {
	if err := ev.Validate(); err != nil {
		return false, err
	}
	if !s.down.Load() {
		// The write goes on if the caller gives up (a webhook client that
		// hung up): the event arrived, and storing it twice changes nothing.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.DirectTimeout)
		applied, err := s.next.Apply(dctx, ev)
		cancel()
		if err == nil {
			return applied, nil
		}
		if errors.Is(err, callstate.ErrInvalidEvent) {
			return false, err
		}
		s.mu.Lock()
		s.dbErrors++
		s.mu.Unlock()
		if s.down.CompareAndSwap(false, true) {
			s.log.Warn("database write failed; spooling events until it answers", "source", ev.Source, "type", ev.Type, "call", ev.Update.Key, "err", err)
			s.signal()
		}
	}
	if err := s.append(ev); err != nil {
		return false, err
	}
	s.mu.Lock()
	s.spooled++
	s.mu.Unlock()
	return true, nil
}

// StartsCall reports whether ev may use the spool's reserve: it is the
// first news of a call (sipgate's newCall, a ringing dialog), without which
// the call's later events have nothing to complete.
func StartsCall(ev callstate.Event) bool { return ev.Update.State == callstate.StateRinging }

// append writes ev to the file and returns once it is on disk. Concurrent
// appends share one fsync.
func (s *Spool) append(ev callstate.Event) error {
	return s.appendAll([]callstate.Event{ev})
}

// Keep writes evs to the spool file and returns once they are on disk;
// the runner (Run) applies them to the store soon after, without the
// caller waiting for it. It is for a source that must answer at once and
// has many events to keep together, such as the dialogs one NOTIFY
// changes: all of evs are kept, or none. Concurrent calls share one
// fsync. A batch with an event that starts a call may use the reserve.
// Keep returns an error wrapping callstate.ErrInvalidEvent for an
// incomplete event, ErrFull when the spool has no room for the batch, and
// a wrapped I/O error when the spool cannot be written; nothing is kept
// then.
func (s *Spool) Keep(ctx context.Context, evs []callstate.Event) error {
	for _, ev := range evs {
		if err := ev.Validate(); err != nil {
			return err
		}
	}
	if len(evs) == 0 {
		return nil
	}
	if err := s.appendAll(evs); err != nil {
		return err
	}
	s.mu.Lock()
	s.kept += int64(len(evs))
	s.mu.Unlock()
	return nil
}

// appendAll writes evs to the file, all or none, and returns once they are
// on disk. Concurrent appends share one fsync.
func (s *Spool) appendAll(evs []callstate.Event) error {
	var buf []byte
	starts := false
	for _, ev := range evs {
		data, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("spool: encode: %w", err)
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(data)))
		buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(data, crcTable))
		buf = append(buf, data...)
		starts = starts || StartsCall(ev)
	}
	rec := buf

	limit := s.opts.MaxBytes
	if !starts {
		limit -= s.opts.Reserve
	}
	s.mu.Lock()
	if s.size-s.readOff+int64(len(rec)) > limit {
		s.full = true
		s.refused += int64(len(evs))
		s.mu.Unlock()
		return ErrFull
	}
	if s.writeErr != nil && !starts {
		// The disk is full: what room there is (the ballast's) is for
		// new calls, until a probe finds the disk writable again.
		err := s.writeErr
		s.refused += int64(len(evs))
		s.mu.Unlock()
		return fmt.Errorf("spool: write: %w", err)
	}
	_, err := s.f.Write(rec)
	if err != nil && errors.Is(err, syscall.ENOSPC) && starts && s.freeBallast() {
		// The disk is full: from now on only events that start a call
		// get the ballast's room, until a probe finds the disk has room
		// again (probeDisk).
		if s.writeErr == nil {
			s.log.Error("spool's disk is full; only new calls are kept now", "dir", s.opts.Dir, "err", err)
		}
		s.writeErr = err
		_ = s.f.Truncate(s.size)
		_, _ = s.f.Seek(s.size, io.SeekStart)
		_, err = s.f.Write(rec)
	}
	if err != nil {
		// A partial write leaves a torn record; cut it off so later
		// records stay readable.
		_ = s.f.Truncate(s.size)
		_, _ = s.f.Seek(s.size, io.SeekStart)
		s.failedWrite(err, len(evs))
		s.mu.Unlock()
		return fmt.Errorf("spool: write: %w", err)
	}
	s.size += int64(len(rec))
	s.written += int64(len(evs))
	s.depth += len(evs) // counted from now: even if the fsync fails, the records may be applied
	seq, size := s.written, s.size
	s.mu.Unlock()

	if err := s.sync(seq, size); err != nil {
		s.mu.Lock()
		s.failedWrite(err, len(evs))
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	if !s.released { // written into the ballast's room: the disk is still full
		s.writeErr = nil
	}
	s.mu.Unlock()
	s.signal()
	return nil
}

// ballastName is the file that holds disk space for events that start a
// call: when the disk is full, it is removed to make room for them.
const ballastName = "reserve"

// makeBallast allocates the ballast file, of the reserve's size but at
// most 64 MiB and a tenth of the free space, unless it is there. Without it (no room, or a file system that
// cannot allocate ahead) the reserve is kept within MaxBytes only.
func (s *Spool) makeBallast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ballast {
		return
	}
	defer func() { s.released = s.released && !s.ballast }()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(s.opts.Dir, &fs); err != nil {
		return
	}
	size := min(s.opts.Reserve, 64<<20, int64(fs.Bavail)*fs.Bsize/10)
	if size < 64<<10 {
		return
	}
	path := filepath.Join(s.opts.Dir, ballastName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o600)
	if err == nil {
		err = syscall.Fallocate(int(f.Fd()), 0, 0, size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		os.Remove(path)
		s.log.Debug("spool: no disk space set aside for new calls", "err", err)
		return
	}
	s.ballast = true
}

// freeBallast removes the ballast file and reports whether there was one.
// Called with mu held.
func (s *Spool) freeBallast() bool {
	if !s.ballast {
		return false
	}
	s.ballast, s.released = false, true
	if err := os.Remove(filepath.Join(s.opts.Dir, ballastName)); err != nil {
		return false
	}
	s.log.Warn("spool's disk is full; the space set aside for new calls is in use now", "dir", s.opts.Dir)
	return true
}

// failedWrite records a failed append of n events. Called with mu held.
func (s *Spool) failedWrite(err error, n int) {
	if s.writeErr == nil {
		s.log.Error("spool cannot write; events that the database cannot take now are lost", "dir", s.opts.Dir, "err", err)
	}
	s.writeErr = err
	s.writeErrs++
	s.refused += int64(n)
}

func (s *Spool) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sync makes sure record seq is on disk; whoever syncs covers everything
// written before it (group commit).
func (s *Spool) sync(seq, size int64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced >= seq {
		return nil
	}
	s.mu.Lock()
	upTo, upToSize := s.written, s.size
	s.mu.Unlock()
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("spool: fsync: %w", err)
	}
	s.synced, s.syncTo = upTo, max(upToSize, size)
	return nil
}

// Stats returns the spool's current state.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Records: s.depth, Bytes: s.size - s.readOff, MaxBytes: s.opts.MaxBytes, Reserve: s.opts.Reserve,
		Rejected: s.rejected, DBErrors: s.dbErrors, Spooled: s.spooled, Kept: s.kept, Drained: s.drained,
		Refused: s.refused, WriteErrors: s.writeErrs, StoreDown: s.down.Load(),
	}
}

// Err reports why the spool cannot take every event now, or nil: its last
// append failed on the disk (until an append or a probe of the disk
// succeeds), or it is so full that only events that start a call fit.
func (s *Spool) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return fmt.Errorf("spool cannot write: %w", s.writeErr)
	}
	if s.full {
		return fmt.Errorf("spool full: %d of %d bytes used, %d of them kept for new calls", s.size-s.readOff, s.opts.MaxBytes, s.opts.Reserve)
	}
	return nil
}

// isolateAfter is how many batches in a row may fail while the store
// answers before the drain applies events one at a time and sets aside
// the one that fails.
const isolateAfter = 3

// Run probes the store while it is down, drains the backlog while it is
// up, and, after a failed append, probes the disk, until ctx is done.
func (s *Spool) Run(ctx context.Context) error {
	var (
		draining   bool // a backlog is being applied
		drainStart time.Time
		drainedAt  int64 // Stats().Drained when the drain started
		failures   int   // batches in a row that failed while the store answered
		backlog    bool  // the drain is of what waited for the store (an outage, an earlier run), not only of what Keep keeps
	)
	if s.Stats().Records > 0 {
		draining, drainStart, backlog = true, time.Now(), true
	}
	for ctx.Err() == nil {
		s.mu.Lock()
		diskBad := s.writeErr != nil
		s.mu.Unlock()
		if diskBad {
			s.probeDisk()
		}
		if s.down.Load() {
			pctx, cancel := context.WithTimeout(ctx, max(s.opts.DirectTimeout, time.Second))
			err := s.next.Ping(pctx)
			cancel()
			if err != nil {
				s.pause(ctx, s.opts.ProbeEvery)
				continue
			}
			st := s.Stats()
			s.down.Store(false)
			s.log.Info("database answers again; new events go straight to it", "spooled_events", st.Records)
			if st.Records > 0 {
				backlog = true
				if !draining {
					draining, drainStart, drainedAt = true, time.Now(), st.Drained
				}
			}
		}
		if s.Stats().Records == 0 {
			s.makeBallast()
			if draining && backlog {
				st := s.Stats()
				s.log.Info("spool drained", "applied", st.Drained-drainedAt, "took", time.Since(drainStart).Round(time.Millisecond))
			}
			draining, backlog = false, false
			s.pause(ctx, time.Second)
			continue
		}
		if !draining {
			draining, drainStart, drainedAt = true, time.Now(), s.Stats().Drained
		}
		_, err := s.drainOnce(ctx, failures >= isolateAfter)
		if err == nil || ctx.Err() != nil {
			failures = 0
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		perr := s.next.Ping(pctx)
		cancel()
		if perr != nil {
			failures = 0
			if s.down.CompareAndSwap(false, true) {
				st := s.Stats()
				s.log.Warn("database unavailable; events wait in the spool", "events", st.Records, "bytes", st.Bytes, "err", err)
			}
			continue
		}
		// The store answers, yet the batch failed: try again a little
		// later, and after a few tries one event at a time, setting
		// aside one that fails on its own, so that it cannot hold the
		// spool up for ever.
		failures++
		s.log.Warn("applying spooled events failed while the database answers; trying again", "tries", failures, "err", err)
		s.pause(ctx, min(100*time.Millisecond<<failures, 5*time.Second))
	}
	return nil
}

// pause waits d, or less if an append or a failed write signals.
func (s *Spool) pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-s.wake:
	case <-t.C:
	}
}

// probeDisk finds out whether the spool can write again after a failed
// append: it sets the ballast aside again if it was given up, or else
// writes and syncs a small file beside the spool.
func (s *Spool) probeDisk() {
	s.mu.Lock()
	released := s.released
	s.mu.Unlock()
	var err error
	if released {
		s.makeBallast()
		s.mu.Lock()
		if !s.ballast {
			err = errors.New("no room for the ballast")
		}
		s.mu.Unlock()
	} else {
		path := filepath.Join(s.opts.Dir, "probe")
		err = func() error {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			defer os.Remove(path)
			defer f.Close()
			if _, err := f.Write(make([]byte, 4<<10)); err != nil {
				return err
			}
			return f.Sync()
		}()
	}
	if err == nil {
		s.mu.Lock()
		if s.writeErr != nil {
			s.log.Info("spool can write again")
		}
		s.writeErr = nil
		s.mu.Unlock()
	}
}

// Drain applies what the spool holds until it is empty, the store fails,
// or ctx is done; it is what shutdown calls after the listeners have
// stopped. It returns how many events remain.
func (s *Spool) Drain(ctx context.Context) int {
	if s.down.Load() {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := s.next.Ping(pctx)
		cancel()
		if err != nil {
			return s.Stats().Records
		}
	}
	for ctx.Err() == nil && s.Stats().Records > 0 {
		if _, err := s.drainOnce(ctx, false); err != nil {
			break
		}
	}
	return s.Stats().Records
}

// drainOnce applies up to DrainBatch records from the read offset on, in
// DrainParallel lanes side by side (a call's events in one lane, one after
// the other), so that the store's writers commit many of them together,
// and truncates the file when it is empty. Isolating, it applies them one
// at a time and sets aside (rejected.jsonl) one that fails while the store
// answers. Records of different calls are
// applied in no particular order. If any write fails in a way that may pass (the
// store is down), the read offset stays where it was: the whole batch is
// applied again later, and what was stored already is a repeat. It returns
// how many records it applied.
func (s *Spool) drainOnce(ctx context.Context, isolate bool) (int, error) {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	s.syncMu.Lock()
	end := s.syncTo
	s.syncMu.Unlock()
	s.mu.Lock()
	start := s.readOff
	s.mu.Unlock()
	if start >= end {
		s.truncateIfDrained()
		return 0, nil
	}
	r := bufio.NewReaderSize(io.NewSectionReader(s.f, start, end-start), 256<<10)
	var recs [][]byte
	off := start
	for off < end && len(recs) < s.opts.DrainBatch {
		data, n, err := readRecord(r)
		if err != nil {
			return 0, fmt.Errorf("spool: read at %d: %w", off, err)
		}
		recs = append(recs, data)
		off += n
	}

	apply := s.next.Apply
	if b, ok := s.next.(BacklogApplier); ok {
		apply = b.ApplyBacklog
	}
	// One lane a call: a call's events are applied one after the other,
	// so that two of the store's transactions never wait for each other
	// on the same call's row, and the lanes run side by side. Isolating,
	// one lane: an event that fails while the store answers is set aside.
	type rec struct {
		data []byte
		ev   callstate.Event
	}
	type refused struct {
		data  []byte
		cause error
	}
	var (
		mu       sync.Mutex
		rejects  []refused // kept only once the whole batch is through
		firstErr error
	)
	nLanes := s.opts.DrainParallel
	if isolate {
		nLanes = 1
	}
	lanes := make([][]rec, nLanes)
	for _, data := range recs {
		var ev callstate.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			rejects = append(rejects, refused{data, err})
			continue
		}
		h := fnv.New32a()
		h.Write([]byte(ev.Source))
		h.Write([]byte(ev.Update.Key))
		i := h.Sum32() % uint32(len(lanes))
		lanes[i] = append(lanes[i], rec{data, ev})
	}
	var wg sync.WaitGroup
	for _, lane := range lanes {
		if len(lane) == 0 {
			continue
		}
		wg.Go(func() {
			for _, r := range lane {
				actx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := apply(actx, r.ev)
				cancel()
				if err != nil && !errors.Is(err, callstate.ErrInvalidEvent) && isolate {
					pctx, cancel := context.WithTimeout(ctx, time.Second)
					if s.next.Ping(pctx) == nil {
						err = fmt.Errorf("%w (the database answers, yet this event failed again and again)", err)
						err = errors.Join(callstate.ErrInvalidEvent, err)
					}
					cancel()
				}
				mu.Lock()
				switch {
				case errors.Is(err, callstate.ErrInvalidEvent):
					rejects = append(rejects, refused{r.data, err})
				case err != nil && firstErr == nil:
					firstErr = err
				}
				failed := firstErr != nil
				mu.Unlock()
				if failed {
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	for _, r := range rejects {
		s.reject(r.data, r.cause)
	}
	s.mu.Lock()
	s.readOff = off
	s.full = false
	s.depth -= len(recs)
	s.drained += int64(len(recs))
	s.mu.Unlock()
	s.truncateIfDrained()
	return len(recs), nil
}

// truncateIfDrained empties the file once everything in it was applied.
func (s *Spool) truncateIfDrained() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readOff == 0 || s.readOff != s.size || s.synced != s.written {
		return
	}
	if err := s.f.Truncate(0); err != nil {
		s.log.Error("spool: truncate", "err", err)
		return
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		s.log.Error("spool: seek", "err", err)
		return
	}
	s.size, s.readOff, s.syncTo = 0, 0, 0
}

// reject keeps an event the store refused for good in rejected.jsonl, so
// that it blocks nothing and can still be looked at.
func (s *Spool) reject(data []byte, cause error) {
	s.mu.Lock()
	s.rejected++
	s.mu.Unlock()
	s.log.Error("spooled event refused by the database; kept in rejected.jsonl", "err", cause)
	s.rejectMu.Lock()
	defer s.rejectMu.Unlock()
	f, err := os.OpenFile(filepath.Join(s.opts.Dir, "rejected.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		s.log.Error("spool: keep rejected event", "err", err)
		return
	}
	defer f.Close()
	if _, err := f.Write(append(data, '\n')); err != nil {
		s.log.Error("spool: keep rejected event", "err", err)
	}
}

// Close syncs and closes the spool file. Events still in it are applied
// after the next Open.
func (s *Spool) Close() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.f.Sync(); err != nil {
		s.f.Close()
		return fmt.Errorf("spool: %w", err)
	}
	return s.f.Close()
}
