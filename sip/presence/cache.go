package presence

import (
	"context"
	"slices"
	"time"

	"github.com/callstate/callstate"
)

// The agent's lamps come from the durable feed (callstate.FeedEvent), read
// as every consumer reads it (store.Store.FollowFeed, wired in
// cmd/callstate): Snapshot reads every lamp and live call once, then Apply
// gets the feed's events from the id read just before it. A lamp's colour
// is what the feed's lamp.changed says (the lamp view's rule, in the
// database); which calls a lamp shows as dialogs follows from the calls
// the feed's call events carry, as each transition left them. Nothing is
// read again per change, and no lamp is worked out here.

// lampCache is the agent's lamps as the feed told them, guarded by
// Agent.mu.
type lampCache struct {
	loaded  bool
	views   map[LampRef]*lampView
	live    map[int64]callstate.Call // the calls that light lamps, by store id
	aliases map[string]LampRef
	res     *resolver
}

func newLampCache() lampCache {
	return lampCache{views: map[LampRef]*lampView{}, live: map[int64]callstate.Call{}, res: newResolver(nil, nil)}
}

// lampRemoved is the colour of a lamp.changed event whose lamp is gone.
const lampRemoved = "removed"

// reloadAccounts reads the accounts and aliases again.
func (a *Agent) reloadAccounts(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	accts, err := a.cfg.Source.AgentAccounts(rctx, a.cfg.Realm)
	if err != nil {
		a.log.Warn("presence agent: reading accounts failed; keeping the previous ones", "err", err)
	} else {
		for u, p := range a.cfg.Accounts {
			accts[u] = HA1(u, a.cfg.Realm, p)
		}
		a.mu.Lock()
		a.accounts = accts
		a.mu.Unlock()
	}
	defer a.accountsOnce.Do(func() { close(a.accountsRead) })
	aliases, err := a.cfg.Source.AgentAliases(rctx)
	if err != nil {
		a.log.Warn("presence agent: reading aliases failed; keeping the previous ones", "err", err)
		return
	}
	for k, v := range a.cfg.Aliases {
		aliases[k] = v
	}
	a.mu.Lock()
	a.aliases = aliases
	a.res = newResolver(a.views, aliases)
	a.mu.Unlock()
}

// Snapshot reads every lamp and live call, and the feed's head just before
// them, and returns that head: the position to read the feed on from
// (store.FeedFollow.Start). Whatever commits after the snapshot has a feed
// id above the head (ids are given after commit, in commit order), and
// events from before the snapshot that are applied again leave every lamp
// as the last of them says. The agent serves subscriptions once it has
// its first snapshot, which waits for Run to have read the accounts. While
// the database is away it tries again every second; it returns only ctx's
// error.
func (a *Agent) Snapshot(ctx context.Context) (int64, error) {
	select {
	case <-a.accountsRead:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	for {
		if head, ok := a.load(ctx); ok {
			return head, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Apply takes a chunk of the feed's events, in id order, into the lamps
// and notifies the subscribers of each lamp whose documents changed
// (store.FeedFollow.Apply). It never fails.
func (a *Agent) Apply(_ context.Context, evs []callstate.FeedEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applyLocked(evs)
	if len(evs) > 0 {
		a.feedID.Store(evs[len(evs)-1].ID)
	}
	return nil
}

// load is one try of Snapshot. The subscribers of lamps that changed since
// the last load are notified.
func (a *Agent) load(ctx context.Context) (int64, bool) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w, err := a.cfg.Source.FeedWindow(rctx)
	if err != nil {
		if ctx.Err() == nil && a.feedLog.due(time.Now(), time.Minute) {
			a.log.Warn("presence agent: reading the feed failed; trying again", "err", err)
		}
		return 0, false
	}
	lamps, calls, err := a.cfg.Source.LampsAndCalls(rctx)
	if err != nil {
		if ctx.Err() == nil && a.feedLog.due(time.Now(), time.Minute) {
			a.log.Warn("presence agent: reading lamps failed; trying again", "err", err)
		}
		return 0, false
	}
	views := buildViews(lamps, calls, a.domain)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.loaded {
		close(a.ready)
	}
	old := a.views
	a.views, a.loaded = views, true
	a.res = newResolver(views, a.aliases)
	clear(a.live)
	for _, c := range calls {
		if live(&c) {
			a.live[c.ID] = c
		}
	}
	for ref, subs := range a.byLamp {
		if views[ref] == nil {
			for s := range subs {
				if s.list == nil { // a list goes on without the member
					a.finishLocked(s, "noresource")
				}
			}
			continue
		}
		a.notifyChangeLocked(ref, old[ref])
	}
	a.feedID.Store(w.Head)
	return w.Head, true
}

// applyLocked takes one chunk of feed events into the lamps and notifies
// the subscribers of each lamp whose documents changed, once for the
// chunk, with its state after the last event.
func (a *Agent) applyLocked(evs []callstate.FeedEvent) {
	before := map[LampRef]*lampView{} // the lamps the chunk touches, as they were
	touch := func(r LampRef) *lampView {
		v := a.views[r]
		if _, ok := before[r]; !ok {
			if v != nil {
				c := *v
				before[r] = &c
			} else {
				before[r] = nil
			}
		}
		return v
	}
	calls := map[LampRef]bool{} // lamps whose calls changed
	ahead := map[LampRef]bool{} // whether the last event of a lamp was one of its calls'
	told := map[LampRef]int64{} // calls counted by a lamp event that came while its calls were ahead
	names := false              // a lamp came, went or was renamed: resolve again
	for _, ev := range evs {
		switch {
		case ev.Call != nil:
			c := *ev.Call
			if old, ok := a.live[c.ID]; ok {
				for _, r := range callRefs(&old) {
					touch(r)
					calls[r], ahead[r] = true, true
				}
			}
			if live(&c) {
				a.live[c.ID] = c
			} else {
				delete(a.live, c.ID)
			}
			for _, r := range callRefs(&c) {
				touch(r)
				calls[r], ahead[r] = true, true
			}
		case ev.Lamp != nil:
			l := ev.Lamp
			r := LampRef{Source: l.Source, Extension: l.Extension}
			v := touch(r)
			if ahead[r] || v != nil && v.callsAhead {
				told[r] = l.ActiveCalls
			} else {
				delete(told, r)
			}
			ahead[r] = false
			if l.Lamp == lampRemoved {
				delete(a.views, r)
				names = true
				continue
			}
			if v == nil {
				v = &lampView{ref: r}
				a.views[r] = v
				calls[r] = true // its calls may be known already
				names = true
			}
			names = names || v.name != l.Name
			// The view is now as the feed says, calls included.
			*v = lampView{ref: r, name: l.Name, lamp: l.Lamp, dialogs: v.dialogs}
		}
	}
	if len(calls) > 0 {
		a.redialLocked(calls)
	}
	for r, ahead := range ahead {
		// A lamp's calls that changed after the feed last told its colour:
		// until the lamp event that follows every change of its calls (its
		// count of calls changes), the colour may be behind them. A lamp
		// event can itself be behind a call event before it in the feed:
		// the lamps are compared from a snapshot, and a call's write that
		// commits after that snapshot but before the comparison's commit
		// is numbered first. Such an event counts calls the lamp no longer
		// has (a busy lamp after its call ended), so its calls stay ahead.
		if v := a.views[r]; v != nil {
			v.callsAhead = ahead || told[r] > int64(len(v.dialogs))
		}
	}
	if names {
		a.res = newResolver(a.views, a.aliases)
	}
	for r, old := range before {
		if a.views[r] == nil {
			for s := range a.byLamp[r] {
				if s.list == nil { // a list goes on without the member
					a.finishLocked(s, "noresource")
				}
			}
			continue
		}
		a.notifyChangeLocked(r, old)
	}
}

// redialLocked lists again the dialogs of the lamps refs from the live
// calls that light them, in one pass over the live calls.
func (a *Agent) redialLocked(refs map[LampRef]bool) {
	var lives []callstate.Call
	for _, c := range a.live {
		for _, r := range callRefs(&c) {
			if refs[r] {
				lives = append(lives, c)
				break
			}
		}
	}
	slices.SortFunc(lives, func(x, y callstate.Call) int { return int(x.ID - y.ID) })
	ls := make([]callstate.LampStatus, 0, len(refs))
	for r := range refs {
		if v := a.views[r]; v != nil {
			ls = append(ls, callstate.LampStatus{Source: r.Source, Extension: r.Extension, Name: v.name, Lamp: v.lamp})
		}
	}
	for r, v := range buildViews(ls, lives, a.domain) {
		a.views[r].dialogs = v.dialogs
	}
}

// notifyChangeLocked notifies the subscribers of ref whose documents
// changed from old's, the ended dialogs sent once as terminated.
func (a *Agent) notifyChangeLocked(ref LampRef, old *lampView) {
	v := a.views[ref]
	subs := a.byLamp[ref]
	if v == nil || len(subs) == 0 {
		return
	}
	dialogSame, presenceSame := v.sameDialogs(old), old != nil && v.lamp == old.lamp
	if dialogSame && presenceSame {
		return
	}
	var ended []agentDialog
	if old != nil {
		for _, d := range old.dialogs {
			if !hasDialog(v.dialogs, d.id) {
				ended = append(ended, d)
			}
		}
	}
	for s := range subs {
		if s.event == pkgPresence && presenceSame || s.event != pkgPresence && dialogSame {
			continue
		}
		if s.list != nil {
			s.changed[ref] = append(s.changed[ref], ended...)
		} else {
			s.ended = append(s.ended, ended...)
		}
		a.kickLocked(s)
	}
}

func hasDialog(ds []agentDialog, id string) bool {
	for _, d := range ds {
		if d.id == id {
			return true
		}
	}
	return false
}
