package handlers

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/callstate/callstate"
)

// PhonebookStore is what the phonebook needs from a store.
type PhonebookStore interface {
	// Contacts returns the whole phonebook, by name.
	Contacts(ctx context.Context) ([]callstate.Contact, error)
	// AddContacts adds contacts, merging each into one of the same name,
	// and returns them as they are now; an invalid one wraps
	// callstate.ErrInvalidContact.
	AddContacts(ctx context.Context, cs []callstate.Contact) ([]callstate.Contact, callstate.ContactsAdded, error)
	// ContactsVersion returns a value that changes with the phonebook.
	ContactsVersion(ctx context.Context) (string, error)
}

// PhonebookCheck is how often a Phonebook asks whether the phonebook
// changed (by the API of another instance, or an import), and reloads it
// if so.
const PhonebookCheck = 2 * time.Second

// Phonebook gives calls in the API, the stream and the board their
// callers' names and numbers fit for reading. It keeps the contacts in
// memory, so that naming a call costs no query: Run reloads them when they
// change.
type Phonebook struct {
	store PhonebookStore
	plan  callstate.NumberPlan
	log   *slog.Logger

	mu      sync.RWMutex
	names   map[string]string   // stored number -> name
	groups  map[string][]string // stored number -> its contact's groups
	version string
	loaded  bool

	fmu       sync.Mutex
	formatted map[string]string // number as a call carries it -> for reading
}

// NewPhonebook returns a phonebook of st's contacts, formatting numbers by
// plan. Call Run to load and keep it fresh. A nil log means slog.Default().
func NewPhonebook(st PhonebookStore, plan callstate.NumberPlan, log *slog.Logger) *Phonebook {
	if log == nil {
		log = slog.Default()
	}
	return &Phonebook{store: st, plan: plan, log: log, names: map[string]string{}, formatted: map[string]string{}}
}

// Run loads the phonebook and reloads it within PhonebookCheck of a
// change, until ctx is done; it returns nil then. A failed load is logged
// and tried again: calls show numbers meanwhile.
func (p *Phonebook) Run(ctx context.Context) error {
	t := time.NewTicker(PhonebookCheck)
	defer t.Stop()
	failing := false
	for {
		if err := p.Refresh(ctx); err != nil && ctx.Err() == nil {
			if !failing {
				p.log.Warn("phonebook: cannot load contacts; calls show numbers without names until it can", "err", err)
			}
			failing = true
		} else if failing && err == nil {
			failing = false
			p.log.Info("phonebook: contacts loaded again")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Refresh reloads the contacts if they changed since the last load.
func (p *Phonebook) Refresh(ctx context.Context) error {
	v, err := p.store.ContactsVersion(ctx)
	if err != nil {
		return err
	}
	p.mu.RLock()
	same := p.loaded && v == p.version
	p.mu.RUnlock()
	if same {
		return nil
	}
	cs, err := p.store.Contacts(ctx)
	if err != nil {
		return err
	}
	// Should two contacts share a number, the first added (lowest id)
	// names it, as in the contact_number view.
	byID := slices.SortedFunc(slices.Values(cs), func(a, b callstate.Contact) int { return cmp.Compare(a.ID, b.ID) })
	names := make(map[string]string, len(cs))
	groups := map[string][]string{}
	for _, c := range byID {
		for _, n := range c.Numbers {
			if _, ok := names[n]; !ok {
				names[n] = c.Name
				if len(c.Groups) > 0 {
					groups[n] = c.Groups
				}
			}
		}
	}
	p.mu.Lock()
	p.names, p.groups, p.version, p.loaded = names, groups, v, true
	p.mu.Unlock()
	p.log.Debug("phonebook loaded", "contacts", len(cs), "numbers", len(names))
	return nil
}

// Plan returns the number plan the phonebook formats with.
func (p *Phonebook) Plan() callstate.NumberPlan {
	if p == nil {
		plan, _ := callstate.NewNumberPlan("")
		return plan
	}
	return p.plan
}

// Name returns the contact name of a number as a call carries it, or "".
func (p *Phonebook) Name(number string) string {
	if p == nil {
		return ""
	}
	k := p.plan.Key(number)
	if k == "" {
		return ""
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.names[k]
}

// Contact returns the name and groups of the contact of a number as a
// call carries it; ok is false when the phonebook has none. The groups are
// shared: do not change them.
func (p *Phonebook) Contact(number string) (name string, groups []string, ok bool) {
	if p == nil {
		return "", nil, false
	}
	k := p.plan.Key(number)
	if k == "" {
		return "", nil, false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	name, ok = p.names[k]
	return name, p.groups[k], ok
}

// maxFormatted bounds the cache of formatted numbers.
const maxFormatted = 50_000

// Format returns number for reading (see callstate.NumberPlan.Format).
func (p *Phonebook) Format(number string) string {
	if number == "" {
		return ""
	}
	if p == nil {
		return defaultPlan.Format(number)
	}
	p.fmu.Lock()
	f, ok := p.formatted[number]
	p.fmu.Unlock()
	if ok {
		return f
	}
	f = p.plan.Format(number)
	p.fmu.Lock()
	if len(p.formatted) >= maxFormatted {
		clear(p.formatted)
	}
	p.formatted[number] = f
	p.fmu.Unlock()
	return f
}

var defaultPlan, _ = callstate.NewNumberPlan("")

// causeWords says why a call ended, in words a board shows: sipgate's
// hangup causes and the SIP dialog events (RFC 4235), and the causes
// callstate gives calls it ends itself.
var causeWords = map[string]string{
	callstate.CauseNormalClearing: "hung up",
	callstate.CauseBusy:           "busy",
	callstate.CauseCancel:         "caller hung up",
	callstate.CauseNoAnswer:       "no answer",
	callstate.CauseCongestion:     "network busy",
	callstate.CauseNotFound:       "number not found",
	callstate.CauseForwarded:      "forwarded",
	callstate.CauseCancelled:      "caller hung up",
	callstate.CauseRejected:       "rejected",
	callstate.CauseReplaced:       "transferred",
	callstate.CauseLocalBye:       "hung up",
	callstate.CauseRemoteBye:      "other side hung up",
	callstate.CauseError:          "failed",
	callstate.CauseTimeout:        "timed out",
	callstate.CauseVanished:       "ended (PBX no longer lists it)",
	callstate.CausePBXRestart:     "ended (PBX restarted)",
}

// sipStatusWords are the SIP final responses a PBX reports as a dialog's
// end when it gives no event.
var sipStatusWords = map[string]string{
	"404": "number not found", "408": "no answer", "480": "unavailable", "486": "busy",
	"487": "caller hung up", "500": "failed", "503": "failed", "600": "busy", "603": "declined",
}

// CauseText returns cause in words, "forwarded to <name or number>" for a
// call sipgate forwarded to a known number, a SIP status in words with its
// code, or the cause as it is when it has no words.
func (p *Phonebook) CauseText(c callstate.Call) string {
	w, ok := causeWords[c.Cause]
	if !ok {
		if w, ok := sipStatusWords[c.Cause]; ok {
			return w + " (" + c.Cause + ")"
		}
		return c.Cause
	}
	if c.Cause == "forwarded" && c.Answering != "" && c.Answering != c.To {
		to := p.Name(c.Answering)
		if to == "" {
			to = p.Format(c.Answering)
		}
		return "forwarded to " + to
	}
	return w
}

// callJSON is c as the API and the stream show it: with names from the
// phonebook, numbers for reading and the cause in words.
func (p *Phonebook) callJSON(c callstate.Call, seq int64) callstate.CallJSON {
	return callstate.NewCallJSON(c, seq, p)
}
