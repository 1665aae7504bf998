package presence

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/callstate/callstate"
)

// Changed tells the agent that lamps may have changed: it reads them all
// again and notifies the subscribers of those that did. It never blocks.
func (a *Agent) Changed() {
	a.pmu.Lock()
	a.pendingFull = true
	a.pmu.Unlock()
	a.poke()
}

// CallChanged tells the agent that the call with store id id was written:
// it reads that call and the lamps it lights. It never blocks.
func (a *Agent) CallChanged(id int64) {
	a.pmu.Lock()
	if len(a.pendingIDs) < 10000 {
		a.pendingIDs[id] = struct{}{}
	} else {
		a.pendingFull = true
	}
	a.pmu.Unlock()
	a.poke()
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// reloadAll reads accounts, aliases and lamps again.
func (a *Agent) reloadAll(ctx context.Context) {
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
	aliases, err := a.cfg.Source.AgentAliases(rctx)
	if err != nil {
		a.log.Warn("presence agent: reading aliases failed; keeping the previous ones", "err", err)
		aliases = nil
	} else {
		for k, v := range a.cfg.Aliases {
			aliases[k] = v
		}
	}
	a.refreshWith(rctx, aliases, err == nil)
}

// refresh reads every lamp and notifies the subscribers of those that
// changed.
func (a *Agent) refresh(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	a.refreshWith(rctx, nil, false)
}

func (a *Agent) refreshWith(ctx context.Context, aliases map[string]LampRef, newAliases bool) {
	lamps, calls, err := a.cfg.Source.LampsAndCalls(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("presence agent: reading lamps failed; trying again at the next change", "err", err)
		}
		return
	}
	views := buildViews(lamps, calls, a.domain)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.loaded {
		close(a.ready)
	}
	if !newAliases {
		aliases = a.res.aliases
	}
	a.res = newResolver(views, aliases)
	old := a.views
	a.views, a.loaded = views, true
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
}

// notifyChangeLocked notifies the subscribers of ref if its view changed
// from old, the ended dialogs sent once as terminated.
func (a *Agent) notifyChangeLocked(ref LampRef, old *lampView) {
	v := a.views[ref]
	subs := a.byLamp[ref]
	if v == nil || len(subs) == 0 || v.same(old) {
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
		if s.list != nil {
			s.changed[ref] = append(s.changed[ref], ended...)
		} else {
			s.ended = append(s.ended, ended...)
		}
		a.kickLocked(s)
	}
}

// refreshCalls reads the calls ids and the lamps they light or lit, and
// notifies the subscribers of those that changed: the cheap path for a
// change of one call, instead of reading every lamp. A sipgate user's lamp
// follows from its calls (the user_lamp view's rule); a PBX extension's
// lamp is read, for it depends on the subscription and presence too.
func (a *Agent) refreshCalls(ctx context.Context, ids map[int64]struct{}) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	list := make([]int64, 0, len(ids))
	for id := range ids {
		list = append(list, id)
	}
	calls, err := a.cfg.Source.CallsByID(rctx, list)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("presence agent: reading changed calls failed; reading every lamp instead", "err", err)
			a.Changed()
		}
		return
	}
	a.mu.Lock()
	affected := map[LampRef]bool{}
	for id := range ids {
		if old, ok := a.live[id]; ok {
			for _, r := range callRefs(&old) {
				affected[r] = true
			}
			delete(a.live, id)
		}
	}
	newUsers := false
	for _, c := range calls {
		for _, r := range callRefs(&c) {
			affected[r] = true
		}
		if c.Source == callstate.SourceSipgate {
			// A user not seen before has a lamp now, even when the call
			// that told of it has ended by the time it is read.
			for _, u := range append([]string{c.Extension}, c.UserIDs...) {
				if u != "" && a.views[LampRef{Source: c.Source, Extension: u}] == nil {
					newUsers = true
				}
			}
		}
		if live(&c) {
			a.live[c.ID] = c
		}
	}
	var exts []string
	for r := range affected {
		if r.Source == callstate.SourceSIP && a.views[r] != nil {
			exts = append(exts, r.Extension)
		}
	}
	a.mu.Unlock()
	if newUsers {
		// A user not seen before: read every lamp, which gives its name.
		a.refresh(ctx)
		return
	}
	sipLamps := map[string]string{}
	if len(exts) > 0 {
		ls, err := a.cfg.Source.SIPLamps(rctx, exts)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("presence agent: reading PBX lamps failed; reading every lamp instead", "err", err)
				a.Changed()
			}
			return
		}
		for _, l := range ls {
			sipLamps[l.Extension] = l.Lamp
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var lives []callstate.Call // the live calls of the affected lamps
	for _, c := range a.live {
		for _, r := range callRefs(&c) {
			if affected[r] {
				lives = append(lives, c)
				break
			}
		}
	}
	slices.SortFunc(lives, func(x, y callstate.Call) int { return cmp.Compare(x.ID, y.ID) })
	for r := range affected {
		old := a.views[r]
		if old == nil {
			continue
		}
		lamp := old.lamp
		if r.Source == callstate.SourceSIP {
			if l, ok := sipLamps[r.Extension]; ok {
				lamp = l
			}
		}
		v := buildViews([]callstate.LampStatus{{Source: r.Source, Extension: r.Extension, Name: old.name, Lamp: lamp}},
			lives, a.domain)[r]
		if r.Source == callstate.SourceSipgate {
			v.lamp = sipgateLamp(v.dialogs)
		}
		a.views[r] = v
		a.notifyChangeLocked(r, old)
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
