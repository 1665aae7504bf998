// Package spool keeps accepted events safe on local disk while the database
// cannot take them, and applies them, in order, once it can.
//
// A Spool sits between the adapters (webhooks, SIP) and the store. Apply
// writes an event straight to the store when the spool is empty and the
// store answers within DirectTimeout; otherwise it appends the event to the
// spool file, fsyncs it, and reports it accepted. A drainer applies spooled
// events in order when the store is back. Because every event carries a
// dedup key, an event that reached the store and the spool both (a write
// that timed out but committed) is applied once in effect.
//
// The file is a sequence of records: 4-byte big-endian length, 4-byte
// CRC-32C of the data, then the event as JSON. A torn record at the end
// (a crash during a write, never acknowledged) is cut off at open. After a
// restart the whole file is applied again from the start; repeats are
// harmless. The file is truncated whenever it has been drained.
package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/callstate/callstate"
)

// Applier is what the spool writes to: the store.
type Applier interface {
	Apply(ctx context.Context, ev callstate.Event) (applied bool, err error)
}

// ErrFull is returned by Apply when the spool holds MaxBytes already: the
// event is not accepted.
var ErrFull = errors.New("spool: full")

// Options configure a Spool.
type Options struct {
	Dir           string        // folder of the spool file; created if missing
	MaxBytes      int64         // bound on the spool file; 0 means 256 MiB
	DirectTimeout time.Duration // how long a direct store write may take before the event is spooled; 0 means 500ms
	RetryMax      time.Duration // longest pause between drain attempts while the store is down; 0 means 10s
	Logger        *slog.Logger  // nil means slog.Default()
}

// Stats describe the spool for logs, metrics and /readyz.
type Stats struct {
	Records  int   // events waiting to be applied
	Bytes    int64 // size of those events on disk
	MaxBytes int64 // the bound
	Rejected int64 // events the store refused for good since start (kept in rejected.jsonl)
	DBErrors int64 // direct writes that failed and were spooled instead, since start
	Spooled  int64 // events accepted into the spool since start, instead of straight into the store
}

// Spool is safe for concurrent use.
type Spool struct {
	next Applier
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	f        *os.File
	size     int64 // bytes in the file
	readOff  int64 // bytes already applied
	depth    int   // records not yet applied
	written  int64 // records ever written (sync sequence)
	spooled  int64 // records appended since start
	rejected int64
	dbErrors int64
	wake     chan struct{} // signalled after an append

	syncMu sync.Mutex
	synced int64 // records known to be on disk
	syncTo int64 // file size known to be on disk

	drainMu sync.Mutex // one drainer at a time
}

const fileName = "events.spool"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Open opens (or creates) the spool in opts.Dir in front of next. Events
// left by an earlier run are kept and will be applied by Run.
func Open(opts Options, next Applier) (*Spool, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 256 << 20
	}
	if opts.DirectTimeout <= 0 {
		opts.DirectTimeout = 500 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 10 * time.Second
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

// Apply stores ev: directly when the spool is empty and the store answers
// within DirectTimeout, else durably in the spool. It returns applied=false
// only for an event the store knew already. It returns an error wrapping
// callstate.ErrInvalidEvent for an event the store refuses for good,
// ErrFull when the spool is full, and a wrapped I/O error when the spool
// cannot be written; the event is not accepted then.
func (s *Spool) Apply(ctx context.Context, ev callstate.Event) (bool, error) {
	if err := ev.Validate(); err != nil {
		return false, err
	}
	if s.Stats().Records == 0 {
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
		s.log.Warn("database write failed; spooling", "source", ev.Source, "type", ev.Type, "call", ev.Update.Key, "err", err)
	}
	if err := s.append(ev); err != nil {
		return false, err
	}
	return true, nil
}

// append writes ev to the file and returns once it is on disk. Concurrent
// appends share one fsync.
func (s *Spool) append(ev callstate.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("spool: encode: %w", err)
	}
	rec := make([]byte, 8+len(data))
	binary.BigEndian.PutUint32(rec[:4], uint32(len(data)))
	binary.BigEndian.PutUint32(rec[4:8], crc32.Checksum(data, crcTable))
	copy(rec[8:], data)

	s.mu.Lock()
	if s.size-s.readOff+int64(len(rec)) > s.opts.MaxBytes {
		s.mu.Unlock()
		return ErrFull
	}
	if _, err := s.f.Write(rec); err != nil {
		// A partial write leaves a torn record; cut it off so later
		// records stay readable.
		_ = s.f.Truncate(s.size)
		_, _ = s.f.Seek(s.size, io.SeekStart)
		s.mu.Unlock()
		return fmt.Errorf("spool: write: %w", err)
	}
	s.size += int64(len(rec))
	s.written++
	s.spooled++
	s.depth++ // counted from now: even if the fsync fails, the record may be applied
	seq, size := s.written, s.size
	s.mu.Unlock()

	if err := s.sync(seq, size); err != nil {
		return err
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
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

// Stats returns the spool's current depth.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Records: s.depth, Bytes: s.size - s.readOff, MaxBytes: s.opts.MaxBytes, Rejected: s.rejected, DBErrors: s.dbErrors, Spooled: s.spooled}
}

// Run applies spooled events in order until ctx is done, waiting with
// backoff while the store is unavailable.
func (s *Spool) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	down := false
	for {
		n, err := s.drainOnce(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			if !down {
				st := s.Stats()
				s.log.Warn("database unavailable; events wait in the spool", "events", st.Records, "bytes", st.Bytes, "err", err)
				down = true
			}
			pause := backoff/2 + rand.N(backoff/2+1)
			backoff = min(backoff*2, s.opts.RetryMax)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pause):
			}
			continue
		case n > 0:
			if down {
				s.log.Info("database back; spool drained", "applied", n)
				down = false
			}
			backoff = 100 * time.Millisecond
		}
		if n == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-s.wake:
			case <-time.After(time.Second):
			}
		}
	}
}

// Drain applies what the spool holds until it is empty or ctx is done; it
// is what shutdown calls after the listeners have stopped. It returns how
// many events remain.
func (s *Spool) Drain(ctx context.Context) int {
	for ctx.Err() == nil {
		if s.Stats().Records == 0 {
			return 0
		}
		if _, err := s.drainOnce(ctx); err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return s.Stats().Records
}

// drainOnce applies the records on disk from the read offset on, in order,
// and truncates the file when it is empty. It stops at the first failure
// that may pass (the store is down) and returns how many it applied.
func (s *Spool) drainOnce(ctx context.Context) (int, error) {
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
	r := bufio.NewReader(io.NewSectionReader(s.f, start, end-start))
	applied := 0
	for off := start; off < end; {
		data, n, err := readRecord(r)
		if err != nil {
			return applied, fmt.Errorf("spool: read at %d: %w", off, err)
		}
		var ev callstate.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			s.reject(data, err)
		} else {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := s.next.Apply(actx, ev)
			cancel()
			if errors.Is(err, callstate.ErrInvalidEvent) {
				s.reject(data, err)
			} else if err != nil {
				return applied, err
			}
		}
		off += n
		applied++
		s.mu.Lock()
		s.readOff = off
		s.depth--
		s.mu.Unlock()
	}
	s.truncateIfDrained()
	return applied, nil
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
