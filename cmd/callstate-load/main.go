// Command callstate-load drives sipgate-like webhook traffic at a running
// callstate (or any sipgate.io webhook target) and reports events per second
// and latency percentiles.
//
// Every simulated call posts newCall, answer and hangup with its own callId.
// Closed loop (-rate 0): -c workers send as fast as answers come. Fixed rate
// (-rate N): events are scheduled N per second and each latency is measured
// from its scheduled time, so a stalled server shows up in the numbers
// instead of slowing the load down.
//
// With -key the bodies are signed like sipgate signs them (RSA PKCS#1 v1.5,
// SHA-256); -genkey writes a fresh 4096-bit key pair whose public half the
// service takes as SIPGATE_PUBLIC_KEY_FILE. -replay sends one captured
// request (headers and body, as in handlers/testdata/captured-newcall.http)
// again and again, for servers that check sipgate's real key. -expect
// counts a 2xx answer as failed unless its body holds the given text:
// sipgate's Node server answers a failed signature check with 200.
//
// -interval prints an INTERVAL line for every interval of the run (the
// requests answered in it: ok, failed, p50, p99, max), and -requests writes
// every request's send time, latency and status to a file, so that a
// script can compute exact percentiles over any window of a long run. The
// final RESULT line is the same with or without them.
//
// It only targets loopback addresses unless -any-host is given, and stops
// after -d or -n, whichever comes first, or on SIGINT or SIGTERM (it then
// waits for the requests in flight and prints its results as usual).
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "callstate-load:", err)
		os.Exit(1)
	}
}

type options struct {
	target   string
	workers  int
	duration time.Duration
	maxEv    int
	rate     float64
	keyFile  string
	genKey   string
	signOnly bool
	replay   string
	label    string
	anyHost  bool
	prefix   string
	signed   string
	expect   string
	perCall  bool
	interval time.Duration
	interOut string
	reqLog   string
}

func run(args []string, out io.Writer) error {
	var o options
	fl := flag.NewFlagSet("callstate-load", flag.ContinueOnError)
	fl.StringVar(&o.target, "url", "http://127.0.0.1:8080/webhooks/sipgate", "webhook URL")
	fl.IntVar(&o.workers, "c", 32, "concurrent requests")
	fl.DurationVar(&o.duration, "d", 15*time.Second, "how long to send")
	fl.IntVar(&o.maxEv, "n", 0, "stop after this many events (0: no limit but -d)")
	fl.Float64Var(&o.rate, "rate", 0, "events per second to schedule (0: as fast as answers come)")
	fl.StringVar(&o.keyFile, "key", "", "PEM RSA private key to sign bodies with (X-Sipgate-Signature)")
	fl.StringVar(&o.genKey, "genkey", "", "write a new 4096-bit key pair to this folder (private.pem, public.pem) and exit")
	fl.StringVar(&o.replay, "replay", "", "send this captured request (headers, blank line, body) again and again")
	fl.StringVar(&o.label, "label", "run", "name of this run in the result line")
	fl.BoolVar(&o.anyHost, "any-host", false, "allow a target that is not a loopback address")
	fl.StringVar(&o.prefix, "prefix", "", "callId prefix (default: a random one, so runs never collide)")
	fl.StringVar(&o.signed, "signed", "", "with -key: file of pre-signed events, made (-n of them) if missing; signing 4096-bit is ~5 ms a body, too slow to do while sending")
	fl.BoolVar(&o.signOnly, "sign-only", false, "with -key, -signed and -n: make the file of pre-signed events if missing, and exit without sending (so that a measured run does not sign)")
	fl.BoolVar(&o.perCall, "per-call", false, "closed loop: each worker posts a call's newCall, answer and hangup one after the other, as sipgate does (default: every request is the next event, so a call's three events are in flight at once)")
	fl.StringVar(&o.expect, "expect", "", "count a 2xx answer as failed unless its body contains this (sipgate's Node server answers a bad signature with 200 and <Error …/>)")
	fl.DurationVar(&o.interval, "interval", 0, "print an INTERVAL line (t_s ok failed p50_ms p99_ms max_ms, of the requests answered in it) every this long; 0: none")
	fl.StringVar(&o.interOut, "interval-out", "", "with -interval: append the INTERVAL lines to this file instead of stdout")
	fl.StringVar(&o.reqLog, "requests", "", "write one line per request to this file: send time (Unix µs; with -rate the scheduled time), latency µs, HTTP status (0: no answer, or a body without -expect's text)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fl.Arg(0))
	}
	if o.interval < 0 || (o.interval > 0 && o.interval < time.Millisecond) {
		return errors.New("-interval: give 1ms or more, or 0")
	}
	if o.genKey != "" {
		return writeKeyPair(o.genKey, out)
	}
	if err := checkTarget(o.target, o.anyHost); err != nil {
		return err
	}
	src, err := newSource(o)
	if err != nil {
		return err
	}
	if o.signOnly {
		if src.signed == nil {
			return errors.New("-sign-only: give -key, -signed and -n")
		}
		fmt.Fprintf(out, "%d signed events in %s\n", len(src.signed), o.signed)
		return nil
	}
	interOut := out
	if o.interOut != "" {
		f, err := os.OpenFile(o.interOut, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		interOut = f
	}
	var reqLog *bufio.Writer
	if o.reqLog != "" {
		f, err := os.Create(o.reqLog)
		if err != nil {
			return err
		}
		defer f.Close()
		reqLog = bufio.NewWriterSize(f, 1<<16)
	}
	// SIGINT or SIGTERM ends the run like -d does; a second one kills.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	defer stop()
	res := drive(ctx, o, src, interOut, reqLog)
	if reqLog != nil {
		if err := reqLog.Flush(); err != nil {
			return fmt.Errorf("-requests: %w", err)
		}
	}
	res.print(out, o)
	if res.ok == 0 {
		return errors.New("no request succeeded")
	}
	return nil
}

// checkTarget refuses anything but loopback unless allowed.
func checkTarget(target string, anyHost bool) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("bad -url %q", target)
	}
	if anyHost {
		return nil
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-url %s is not a loopback address (use -any-host for a server you run elsewhere)", target)
}

// request is one event to send.
type request struct {
	body   []byte
	sig    string
	header http.Header // replay: the captured headers, sent as they were
}

// source makes the i-th request of a run.
type source struct {
	prefix string
	key    *rsa.PrivateKey
	replay *request
	signed []request // pre-signed events, sent in order
	ctype  string
}

func newSource(o options) (*source, error) {
	s := &source{prefix: o.prefix, ctype: "application/x-www-form-urlencoded"}
	if s.prefix == "" {
		b := make([]byte, 4)
		rand.Read(b)
		s.prefix = fmt.Sprintf("load-%x", b)
	}
	if o.keyFile != "" {
		k, err := readKey(o.keyFile)
		if err != nil {
			return nil, err
		}
		s.key = k
	}
	if s.key != nil && o.signed != "" {
		if o.prefix == "" {
			s.prefix = "signed" // the file is reused: its callIds must not depend on the run
		}
		reqs, err := loadOrSign(o.signed, s, o.maxEv)
		if err != nil {
			return nil, err
		}
		s.signed = reqs
	}
	if o.replay != "" {
		r, ctype, err := readCapture(o.replay)
		if err != nil {
			return nil, err
		}
		s.replay, s.ctype = r, ctype
	}
	return s, nil
}

// event returns request i: call i/3, event i%3 (newCall, answer, hangup).
func (s *source) event(i int64) request {
	if s.replay != nil {
		return *s.replay
	}
	if s.signed != nil {
		return s.signed[i]
	}
	id := fmt.Sprintf("%s-%d", s.prefix, i/3)
	var body string
	switch i % 3 {
	case 0:
		body = "event=newCall&direction=in&from=4917012345678&to=4930123456789&callId=" + id +
			"&origCallId=" + id + "&user%5B%5D=Alice&userId%5B%5D=w0&fullUserId%5B%5D=1234567w0&xcid=x" + id
	case 1:
		body = "event=answer&direction=in&from=4917012345678&to=4930123456789&callId=" + id +
			"&user=Alice&userId=w0&fullUserId=1234567w0&answeringNumber=4930123456789"
	default:
		body = "event=hangup&direction=in&from=4917012345678&to=4930123456789&callId=" + id +
			"&cause=normalClearing&answeringNumber=4930123456789"
	}
	r := request{body: []byte(body)}
	if s.key != nil {
		sum := sha256.Sum256(r.body)
		sig, _ := rsa.SignPKCS1v15(nil, s.key, crypto.SHA256, sum[:])
		r.sig = base64.StdEncoding.EncodeToString(sig)
	}
	return r
}

type result struct {
	ok, failed int64
	codes      map[int]int64
	errs       map[string]int64
	lat        []time.Duration
	elapsed    time.Duration
}

// window gathers the requests answered in one -interval.
type window struct {
	ok, failed int64
	lat        []time.Duration
}

// print writes the window's INTERVAL line, t seconds into the run, and
// empties it.
func (w *window) print(out io.Writer, t time.Duration) {
	slices.Sort(w.lat)
	fmt.Fprintf(out, "INTERVAL t_s=%.1f ok=%d failed=%d p50_ms=%s p99_ms=%s max_ms=%s\n",
		t.Seconds(), w.ok, w.failed, msStr(pctOf(w.lat, .5)), msStr(pctOf(w.lat, .99)), msStr(pctOf(w.lat, 1)))
	w.ok, w.failed, w.lat = 0, 0, w.lat[:0]
}

// pctOf returns the p-th quantile of sorted latencies (0 when empty).
func pctOf(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(p*float64(len(sorted))), len(sorted)-1)]
}

func msStr(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

// drive sends requests until the duration or count is reached, or parent
// is done. Every -interval it writes an INTERVAL line to interOut; with
// reqLog set, a line per request.
func drive(parent context.Context, o options, src *source, interOut io.Writer, reqLog *bufio.Writer) *result {
	tr := &http.Transport{MaxIdleConnsPerHost: o.workers, MaxConnsPerHost: o.workers, IdleConnTimeout: 30 * time.Second}
	client := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	defer tr.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(parent, o.duration)
	defer cancel()
	var next atomic.Int64
	type sample struct {
		at   time.Time // sent, or with -rate scheduled
		d    time.Duration
		code int
		err  string
	}
	samples := make(chan sample, 4096)
	res := &result{codes: map[int]int64{}, errs: map[string]int64{}}
	start := time.Now()
	var collect sync.WaitGroup
	collect.Go(func() {
		var tick <-chan time.Time
		if o.interval > 0 {
			t := time.NewTicker(o.interval)
			defer t.Stop()
			tick = t.C
		}
		var win window
		for {
			select {
			case now := <-tick:
				win.print(interOut, now.Sub(start))
				continue
			case s, more := <-samples:
				if !more {
					if o.interval > 0 && (win.ok > 0 || win.failed > 0) {
						win.print(interOut, time.Since(start))
					}
					return
				}
				ok := s.err == "" && s.code/100 == 2
				switch {
				case s.err != "":
					res.failed++
					res.errs[s.err]++
				case ok:
					res.ok++
					res.lat = append(res.lat, s.d)
				default:
					res.failed++
				}
				if s.code != 0 {
					res.codes[s.code]++
				}
				if o.interval > 0 {
					if ok {
						win.ok++
						win.lat = append(win.lat, s.d)
					} else {
						win.failed++
					}
				}
				if reqLog != nil {
					code := s.code
					if s.err != "" {
						code = 0
					}
					fmt.Fprintf(reqLog, "%d %d %d\n", s.at.UnixMicro(), s.d.Microseconds(), code)
				}
			}
		}
	})

	send := func(i int64, scheduled time.Time) {
		r := src.event(i)
		req, _ := http.NewRequest(http.MethodPost, o.target, bytes.NewReader(r.body))
		for k, v := range r.header {
			req.Header[k] = v
		}
		req.Header.Set("Content-Type", src.ctype)
		if r.sig != "" {
			req.Header.Set("X-Sipgate-Signature", r.sig)
		}
		resp, err := client.Do(req)
		d := time.Since(scheduled)
		if err != nil {
			if ctx.Err() == nil {
				samples <- sample{at: scheduled, d: d, err: shortErr(err)}
			}
			return
		}
		if o.expect == "" {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			samples <- sample{at: scheduled, d: d, code: resp.StatusCode}
			return
		}
		var body bytes.Buffer
		io.Copy(&body, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 == 2 && !bytes.Contains(body.Bytes(), []byte(o.expect)) {
			samples <- sample{at: scheduled, d: d, code: resp.StatusCode, err: fmt.Sprintf("body without %q", o.expect)}
			return
		}
		samples <- sample{at: scheduled, d: d, code: resp.StatusCode}
	}
	limit := int64(o.maxEv)
	if src.signed != nil && (limit == 0 || limit > int64(len(src.signed))) {
		limit = int64(len(src.signed)) // each pre-signed event once: a repeat is a duplicate
	}
	var wg sync.WaitGroup
	if o.rate <= 0 {
		perWorker := int64(1) // events a worker takes at once, and sends in order
		if o.perCall && src.replay == nil {
			perWorker = 3
		}
		for range o.workers {
			wg.Go(func() {
				for ctx.Err() == nil {
					first := (next.Add(1) - 1) * perWorker
					for i := first; i < first+perWorker && ctx.Err() == nil; i++ {
						if limit > 0 && i >= limit {
							return
						}
						send(i, time.Now())
					}
				}
			})
		}
	} else {
		type slot struct {
			i  int64
			at time.Time
		}
		slots := make(chan slot, o.workers*4)
		for range o.workers {
			wg.Go(func() {
				for s := range slots {
					send(s.i, s.at)
				}
			})
		}
		interval := time.Duration(float64(time.Second) / o.rate)
		for i := int64(0); limit == 0 || i < limit; i++ {
			at := start.Add(time.Duration(i) * interval)
			if d := time.Until(at); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
			if ctx.Err() != nil {
				break
			}
			slots <- slot{i, at}
		}
		close(slots)
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	close(samples)
	collect.Wait()
	return res
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

func (r *result) print(w io.Writer, o options) {
	slices.Sort(r.lat)
	pct := func(p float64) time.Duration { return pctOf(r.lat, p) }
	ms := msStr
	perSec := float64(r.ok) / r.elapsed.Seconds()
	mode := "closed loop"
	if o.perCall {
		mode += ", a call's events in order"
	}
	if o.rate > 0 {
		mode = fmt.Sprintf("fixed rate %.0f/s", o.rate)
	}
	fmt.Fprintf(w, "%s: %s, %d workers, %s\n", o.label, mode, o.workers, r.elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "  ok %d, failed %d: %.0f events/s\n", r.ok, r.failed, perSec)
	fmt.Fprintf(w, "  latency ms: p50 %s  p90 %s  p99 %s  max %s\n", ms(pct(.5)), ms(pct(.9)), ms(pct(.99)), ms(pct(1)))
	codes := make([]int, 0, len(r.codes))
	for c := range r.codes {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		fmt.Fprintf(w, "  status %d: %d\n", c, r.codes[c])
	}
	for e, n := range r.errs {
		fmt.Fprintf(w, "  error %q: %d\n", e, n)
	}
	fmt.Fprintf(w, "RESULT label=%s ok=%d failed=%d seconds=%.1f events_per_s=%.0f p50_ms=%s p90_ms=%s p99_ms=%s max_ms=%s\n",
		o.label, r.ok, r.failed, r.elapsed.Seconds(), perSec, ms(pct(.5)), ms(pct(.9)), ms(pct(.99)), ms(pct(1)))
}

// loadOrSign returns n signed events from path, signing them (on every
// core) and saving them there first if the file does not hold enough.
// Lines are the base64 signature, a tab, and the body.
func loadOrSign(path string, s *source, n int) ([]request, error) {
	if b, err := os.ReadFile(path); err == nil {
		var reqs []request
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			sig, body, ok := strings.Cut(line, "\t")
			if ok {
				reqs = append(reqs, request{body: []byte(body), sig: sig})
			}
		}
		if n == 0 || len(reqs) >= n {
			return reqs, nil
		}
	}
	if n <= 0 {
		return nil, errors.New("-signed: give -n, the number of events to sign")
	}
	reqs := make([]request, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				reqs[i] = s.event(i)
			}
		})
	}
	wg.Wait()
	var b strings.Builder
	for _, r := range reqs {
		b.WriteString(r.sig)
		b.WriteByte('\t')
		b.Write(r.body)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return reqs, nil
}

// readCapture reads a request as handlers/testdata/captured-newcall.http
// keeps it: request line, headers, blank line, body.
func readCapture(path string) (*request, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	req, err := http.ReadRequest(bufio.NewReader(f))
	if err != nil {
		return nil, "", fmt.Errorf("-replay %s: %w", path, err)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, "", fmt.Errorf("-replay %s: %w", path, err)
	}
	h := req.Header.Clone()
	h.Del("Content-Length")
	h.Del("Accept-Encoding")
	return &request{body: body, sig: req.Header.Get("X-Sipgate-Signature"), header: h}, req.Header.Get("Content-Type"), nil
}

func readKey(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("-key %s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("-key %s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("-key %s: not an RSA key", path)
	}
	return rk, nil
}

func writeKeyPair(dir string, out io.Writer) error {
	k, err := rsa.GenerateKey(rand.Reader, 4096)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(filepath.Join(dir, "private.pem"), priv, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "public.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s/private.pem and %s/public.pem (RSA 4096)\n", dir, dir)
	return nil
}
