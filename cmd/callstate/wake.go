package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/webpush"
)

// wakeConfig holds the settings of waking phones before they ring
// (docs/wake.md).
type wakeConfig struct {
	Wait      time.Duration `env:"WAKE_WAIT" envDefault:"2s" validate:"min=0s,max=4s"`
	Subject   string        `env:"WAKE_VAPID_SUBJECT" validate:"omitempty,vapidsubject"`
	AllowHTTP bool          `env:"WAKE_ALLOW_HTTP" envDefault:"false"`
	EnrollTTL time.Duration `env:"WAKE_ENROLL_TTL" envDefault:"24h" validate:"min=1m,max=720h"`
	TTL       time.Duration `env:"WAKE_PUSH_TTL" envDefault:"30s" validate:"min=0s,max=10m"`
}

// wakeSendTimeout bounds one round of pushes (a call's devices).
const wakeSendTimeout = 5 * time.Second

// clearResendAfter is how long after it was recorded a clear never marked
// sent is taken for lost (its instance died before sending it) and sent
// again by any instance: well past wakeSendTimeout.
const clearResendAfter = 30 * time.Second

// wakeKeep is how long pushes and ready answers are kept.
const wakeKeep = 24 * time.Hour

// waker wakes devices: it pushes on newCall (the webhook holds the answer
// until a ready arrives here) and on the feed's events (clears, PBX
// extensions' early dialogs).
type waker struct {
	st    *store.Store
	cfg   wakeConfig
	log   *slog.Logger
	m     *metrics.Metrics
	names phonebook // names and formats numbers in the payload

	client  atomic.Pointer[webpush.Client] // nil until the VAPID key is read
	targets atomic.Pointer[callstate.WakeTargets]
	reload  chan struct{} // the devices changed
	feed    chan struct{} // the feed grew
	recheck chan struct{} // the listener reconnected: readies may have been missed

	mu   sync.Mutex
	held map[string]*holdEntry // by call id
}

// holdEntry is one held newCall.
type holdEntry struct {
	ch   chan string // HoldReady or HoldNone, once
	at   time.Time   // when it was pushed
	once sync.Once
}

func (e *holdEntry) end(outcome string) bool {
	first := false
	e.once.Do(func() {
		first = true
		e.ch <- outcome
	})
	return first
}

// phonebook is what the waker needs of handlers.Phonebook: the caller's
// name and the number as the board formats it.
type phonebook interface {
	Name(number string) string
	Format(number string) string
}

func newWaker(cfg wakeConfig, st *store.Store, names phonebook, m *metrics.Metrics, log *slog.Logger) *waker {
	return &waker{st: st, cfg: cfg, log: log, m: m, names: names,
		reload: make(chan struct{}, 1), feed: make(chan struct{}, 1), recheck: make(chan struct{}, 1),
		held: map[string]*holdEntry{}}
}

// caller returns a payload's from, fromFormatted and fromName for the
// caller's number: all empty for a caller who withholds it (sipgate's
// "anonymous"), whom the board shows as Anonymous.
func (w *waker) caller(number string) (from, formatted, name string) {
	if strings.EqualFold(number, "anonymous") {
		return "", "", ""
	}
	return number, w.names.Format(number), w.names.Name(number)
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// changed takes the database's change notifications.
func (w *waker) changed(c store.Change) {
	switch c.Kind {
	case store.ChangeReady:
		w.readied(c.Ref)
	case store.ChangeDevices:
		poke(w.reload)
	case store.ChangeCall:
		poke(w.feed)
	case store.ChangeListening:
		poke(w.reload)
		poke(w.recheck)
		poke(w.feed)
	}
}

// readied ends the hold of callID, if this instance holds it.
func (w *waker) readied(callID string) {
	w.mu.Lock()
	e := w.held[callID]
	w.mu.Unlock()
	if e != nil && e.end(metrics.HoldReady) {
		w.m.WakeTimeToReady(time.Since(e.at))
	}
}

// Wake implements handlers.Waker.
func (w *waker) Wake(ctx context.Context, c handlers.WakeCall) (<-chan string, func()) {
	users := w.targets.Load().WakeUsers(c.UserIDs)
	cl := w.client.Load()
	if len(users) == 0 || cl == nil {
		return nil, nil
	}
	e := &holdEntry{ch: make(chan string, 1), at: time.Now()}
	w.mu.Lock()
	w.held[c.CallID] = e
	w.mu.Unlock()
	go w.pushNewCall(context.WithoutCancel(ctx), cl, c, users, e)
	return e.ch, func() {
		w.mu.Lock()
		if w.held[c.CallID] == e {
			delete(w.held, c.CallID)
		}
		w.mu.Unlock()
	}
}

// pushNewCall claims c's journey and pushes to its users' devices; the
// hold ends at once when nothing went out.
func (w *waker) pushNewCall(ctx context.Context, cl *webpush.Client, c handlers.WakeCall, users []string, e *holdEntry) {
	ctx, cancel := context.WithTimeout(ctx, wakeSendTimeout)
	defer cancel()
	first, err := w.st.ClaimWakePush(ctx, c.JourneyID, c.CallID, users, "")
	if err != nil {
		w.log.Warn("wake: could not record the push; none sent", "call_id", c.CallID, "err", err)
		e.end(metrics.HoldNone)
		return
	}
	if !first {
		// Another leg of the journey (a forward, the voicemail) was
		// pushed: one push per journey.
		e.end(metrics.HoldNone)
		return
	}
	names := map[string]string{}
	for i, id := range c.UserIDs {
		if i < len(c.Users) {
			names[id] = c.Users[i]
		}
	}
	msg := callstate.WakeMessage{Kind: callstate.WakeIncoming, Call: c.CallID, Journey: c.JourneyID,
		To: c.To, At: c.At.UTC().Format(time.RFC3339)}
	msg.From, msg.FromFormatted, msg.FromName = w.caller(c.From)
	if w.sendAll(ctx, cl, callstate.WakePush{Message: msg, UserIDs: users}, names) == 0 {
		e.end(metrics.HoldNone)
	}
}

// sendAll sends p to the devices of its users and extension, at once, and
// returns how many push services took it.
func (w *waker) sendAll(ctx context.Context, cl *webpush.Client, p callstate.WakePush, names map[string]string) int {
	devices, err := w.st.DevicesFor(ctx, p.UserIDs, p.Extension)
	if err != nil {
		w.log.Warn("wake: devices could not be read; no push sent", "call_id", p.Message.Call, "kind", p.Message.Kind, "err", err)
		return 0
	}
	var sent atomic.Int32
	var wg sync.WaitGroup
	for _, d := range devices {
		msg := p.Message
		msg.User, msg.Extension = d.UserID, d.Extension
		if msg.Kind == callstate.WakeIncoming {
			msg.ToName = names[d.UserID]
			msg.Ready = handlers.DevicesPath + "/" + d.ID + "/ready?call=" + url.QueryEscape(msg.Call)
		}
		wg.Go(func() {
			if w.send(ctx, cl, d, msg) {
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	return int(sent.Load())
}

// send pushes msg to d: a log line for each failure, the device removed
// when its push service says the subscription is gone.
func (w *waker) send(ctx context.Context, cl *webpush.Client, d callstate.Device, msg callstate.WakeMessage) bool {
	fail := func(outcome string, err error, args ...any) bool {
		w.m.WakePush(msg.Kind, outcome)
		w.log.Warn("wake: push failed", append([]any{"device", d.ID, "user", d.UserID, "extension", d.Extension,
			"call_id", msg.Call, "kind", msg.Kind, "outcome", outcome, "err", err}, args...)...)
		return false
	}
	p256dh, auth, err := d.Subscription.PushKeys()
	if err != nil {
		return fail(metrics.PushFailed, err)
	}
	payload, err := msg.Payload()
	if err != nil {
		return fail(metrics.PushFailed, err)
	}
	res, err := cl.Send(ctx, webpush.Message{Endpoint: d.Subscription.Endpoint, P256dh: p256dh, Auth: auth,
		Payload: payload, TTL: w.cfg.TTL, Urgency: webpush.UrgencyHigh, Topic: callstate.WakeTopic(msg.Journey)})
	switch {
	case err == nil:
		w.m.WakePush(msg.Kind, metrics.PushSent)
		return true
	case res.Gone:
		derr := w.st.DeleteDevice(context.WithoutCancel(ctx), d.ID)
		if errors.Is(derr, callstate.ErrNotFound) {
			derr = nil
		}
		return fail(metrics.PushGone, err, "status", res.Status, "removed", derr == nil, "remove_err", derr)
	case errors.Is(err, webpush.ErrThrottled):
		return fail(metrics.PushThrottled, err, "retry_after", res.RetryAfter)
	default:
		return fail(metrics.PushFailed, err, "status", res.Status)
	}
}

// run reads the VAPID key (making it on the first start), keeps the set
// of users and extensions with devices, and sends the feed's pushes,
// until ctx is done.
func (w *waker) run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-w.st.Ready():
	}
	for w.client.Load() == nil {
		if err := w.loadKey(ctx); err != nil {
			w.log.Warn("wake: VAPID key could not be read; no pushes until it is, trying again in 5s", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
	}
	w.loadTargets(ctx)
	refresh := time.NewTicker(30 * time.Second)
	defer refresh.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	hourly := time.NewTicker(time.Hour)
	defer hourly.Stop()
	w.forget(ctx)
	w.resendClears(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.reload:
			w.loadTargets(ctx)
		case <-refresh.C:
			w.loadTargets(ctx)
			w.resendClears(ctx)
		case <-w.recheck:
			w.recheckHeld(ctx)
		case <-w.feed:
			w.readFeed(ctx)
		case <-tick.C:
			w.readFeed(ctx)
		case <-hourly.C:
			w.forget(ctx)
		}
	}
}

func (w *waker) loadKey(ctx context.Context) error {
	key, err := w.st.WakeVAPIDKey(ctx, webpush.NewVAPIDKey)
	if err != nil {
		return err
	}
	v, err := webpush.ParseVAPID(key, w.cfg.Subject)
	if err != nil {
		return err
	}
	w.client.Store(webpush.New(v, webpush.Options{AllowHTTP: w.cfg.AllowHTTP, Throttle: w.st}))
	w.log.Info("wake: VAPID key ready", "public_key", v.PublicKey())
	return nil
}

func (w *waker) loadTargets(ctx context.Context) {
	t, err := w.st.WakeTargets(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("wake: could not read who has devices; keeping the last known", "err", err)
		}
		return
	}
	w.targets.Store(t)
}

// recheckHeld ends the holds whose ready came while the listener was
// away.
func (w *waker) recheckHeld(ctx context.Context) {
	w.mu.Lock()
	ids := make([]string, 0, len(w.held))
	for id := range w.held {
		ids = append(ids, id)
	}
	w.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	ready, err := w.st.ReadyCalls(ctx, ids)
	if err != nil {
		w.log.Warn("wake: could not check the held calls' readies", "err", err)
		return
	}
	for _, id := range ready {
		w.readied(id)
	}
}

// readFeed sends the pushes the feed's new events make: clears, and PBX
// extensions' early dialogs.
func (w *waker) readFeed(ctx context.Context) {
	cl := w.client.Load()
	t := w.targets.Load()
	if cl == nil {
		return
	}
	for {
		pushes, more, err := w.st.WakeFeed(ctx, t)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("wake: reading the feed failed; trying again in a second", "err", err)
			}
			return
		}
		for _, p := range pushes {
			if p.Message.Kind == callstate.WakeIncoming {
				p.Message.From, p.Message.FromFormatted, p.Message.FromName = w.caller(p.Message.From)
			}
			go func() {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wakeSendTimeout)
				defer cancel()
				w.sendAll(sctx, cl, p, nil)
				if p.Message.Kind == callstate.WakeClear {
					if err := w.st.ClearSent(context.WithoutCancel(sctx), p.Message.Journey); err != nil {
						w.log.Warn("wake: marking a clear sent failed; it may be sent again", "journey_id", p.Message.Journey, "err", err)
					}
				}
			}()
		}
		if !more {
			return
		}
	}
}

// resendClears sends the clears that an instance recorded and died before
// sending.
func (w *waker) resendClears(ctx context.Context) {
	cl := w.client.Load()
	if cl == nil {
		return
	}
	pushes, err := w.st.UnsentClears(ctx, time.Now().Add(-clearResendAfter), 100)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("wake: reading clears left unsent failed; trying again in 30s", "err", err)
		}
		return
	}
	for _, p := range pushes {
		w.log.Info("wake: sending a clear again: it was recorded, and its instance stopped before sending it",
			"journey_id", p.Message.Journey, "call_id", p.Message.Call, "reason", p.Message.Reason)
		go func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wakeSendTimeout)
			defer cancel()
			w.sendAll(sctx, cl, p, nil)
		}()
	}
}

func (w *waker) forget(ctx context.Context) {
	n, err := w.st.ForgetWake(ctx, time.Now().Add(-wakeKeep))
	switch {
	case ctx.Err() != nil:
	case err != nil:
		w.log.Warn("wake: forgetting old pushes failed; trying again in an hour", "err", err)
	case n > 0:
		w.log.Info("wake: forgot old pushes, readies and expired enrollment links", "rows", n)
	}
}

// vapidKey is the public key, "" until it is read.
func (w *waker) vapidKey() string {
	if cl := w.client.Load(); cl != nil {
		return cl.VAPID().PublicKey()
	}
	return ""
}

// deviceOptions serve /api/devices with w.
func (w *waker) deviceOptions(publicURL string) *handlers.DeviceOptions {
	o := &handlers.DeviceOptions{
		Store:         w.st,
		VAPIDKey:      w.vapidKey,
		CheckEndpoint: func(e string) error { return webpush.CheckEndpoint(e, w.cfg.AllowHTTP) },
		Readied:       w.readied,
	}
	if u, err := url.Parse(publicURL); err == nil && u.Scheme != "" && u.Host != "" {
		o.Origins = []string{u.Scheme + "://" + u.Host}
	}
	return o
}

// devicesCommand runs "callstate devices [list]", "callstate devices
// enroll USER" and "callstate devices remove ID".
func devicesCommand(ctx context.Context, args []string, cfg Config, log *slog.Logger) error {
	return withStore(ctx, cfg, log, "nothing done", func(st *store.Store) error {
		switch {
		case len(args) == 0 || args[0] == "list":
			ds, err := st.Devices(ctx)
			if err != nil {
				return err
			}
			if len(ds) == 0 {
				fmt.Fprintln(stdout, "no devices; register one with: callstate devices enroll USER")
				return nil
			}
			fmt.Fprintf(stdout, "%-18s %-10s %-10s %-20s %-20s %-20s %s\n", "ID", "USER", "EXTENSION", "NAME", "CREATED", "LAST SEEN", "PUSH SERVICE")
			for _, d := range ds {
				host := d.Subscription.Endpoint
				if u, err := url.Parse(host); err == nil {
					host = u.Host
				}
				fmt.Fprintf(stdout, "%-18s %-10s %-10s %-20s %-20s %-20s %s\n", d.ID, dash(d.UserID), dash(d.Extension), dash(d.Name),
					d.CreatedAt.Local().Format(time.DateTime), d.LastSeenAt.Local().Format(time.DateTime), host)
			}
			return nil
		case args[0] == "enroll":
			token, hash := handlers.NewEnrollToken()
			expires := time.Now().Add(cfg.Wake.EnrollTTL)
			if err := st.AddEnrollment(ctx, hash, args[1], expires); err != nil {
				return err
			}
			// The board sends the user with the token (which refuses any
			// other), and says whose calls the device will show.
			fmt.Fprintf(stdout, "%s/board/?enroll=%s&user=%s#wake\n", strings.TrimSuffix(cfg.PublicURL, "/"), token, url.QueryEscape(args[1]))
			log.Info("one-time link made: open it on the device and enable call notifications",
				"user", args[1], "valid_until", expires.Local().Format(time.DateTime))
			return nil
		default: // remove
			if err := st.DeleteDevice(ctx, args[1]); errors.Is(err, callstate.ErrNotFound) {
				return exitError{1, fmt.Errorf("no device %s", args[1])}
			} else if err != nil {
				return err
			}
			fmt.Fprintln(stdout, "removed device", args[1])
			return nil
		}
	})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
