package presence

import (
	"context"
	"strconv"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// expire ends the subscriptions whose time is up.
func (a *Agent) expire(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.subs {
		if s.final == "" && now.After(s.expires) {
			a.finishLocked(s, "timeout")
		}
	}
}

// finishLocked marks s to end with a NOTIFY saying reason.
func (a *Agent) finishLocked(s *agentSub, reason string) {
	if s.final == "" {
		s.final = reason
	}
	a.kickLocked(s)
}

// kickLocked makes sure a NOTIFY with s's current state goes out.
func (a *Agent) kickLocked(s *agentSub) {
	if s.gone {
		return
	}
	if s.running {
		s.dirty = true
		return
	}
	s.running = true
	a.sending.Add(1)
	go a.notifyLoop(s)
}

// removeLocked takes s out of the tables.
func (a *Agent) removeLocked(s *agentSub) {
	if s.gone {
		return
	}
	s.gone = true
	delete(a.subs, s.key)
	for _, ref := range s.refs() {
		if m := a.byLamp[ref]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(a.byLamp, ref)
			}
		}
	}
	if a.perOwner[s.owner]--; a.perOwner[s.owner] <= 0 {
		delete(a.perOwner, s.owner)
	}
}

// missingLocked reports whether a lamp of refs is not known.
func (a *Agent) missingLocked(refs []LampRef) bool {
	for _, r := range refs {
		if a.views[r] == nil {
			return true
		}
	}
	return false
}

// refs returns the lamps s watches.
func (s *agentSub) refs() []LampRef {
	if s.list != nil {
		return s.list
	}
	return []LampRef{s.ref}
}

// listBodyLocked renders s's next resource-list NOTIFY: every member the
// first time and after a refresh, else the members that changed.
func (a *Agent) listBodyLocked(s *agentSub) []byte {
	full := s.listFull || s.version == 1
	var parts []rlmiPart
	for _, ref := range s.list {
		ended, changed := s.changed[ref]
		if !full && !changed {
			continue
		}
		v := a.views[ref]
		if v == nil {
			continue
		}
		uri := "sip:" + ref.Extension + "@" + a.domain
		p := rlmiPart{uri: uri, name: cmpOr(v.name, ref.Extension)}
		if s.event == pkgPresence {
			p.ct, p.body = ctPIDF, pidfBody(uri, v)
		} else {
			if full {
				ended = nil
			}
			p.ct, p.body = ctDialogInfo, dialogInfoBody(uri, s.versions[ref], v, ended)
			s.versions[ref]++
		}
		parts = append(parts, p)
	}
	clear(s.changed)
	s.listFull = false
	return rlmiBody(s.listURI, s.version-1, full, parts)
}

// notifyLoop sends s's NOTIFYs, one at a time, until none is due.
func (a *Agent) notifyLoop(s *agentSub) {
	defer a.sending.Done()
	for {
		a.sem <- struct{}{}
		a.mu.Lock()
		s.dirty = false
		s.cseq++
		s.version++
		final := s.final
		state := "active;expires=" + strconv.Itoa(max(0, int(time.Until(s.expires).Seconds())))
		if final != "" {
			state = "terminated;reason=" + final
		}
		var body []byte
		ct := ctDialogInfo
		if s.list != nil {
			body, ct = a.listBodyLocked(s), ctRLMI
		} else if v := a.views[s.ref]; v != nil {
			if s.event == pkgPresence {
				body, ct = pidfBody(s.entity, v), ctPIDF
			} else {
				body = dialogInfoBody(s.entity, s.version-1, v, s.ended)
			}
		}
		s.ended = nil
		req := a.notifyRequest(s, state, ct, body)
		a.mu.Unlock()

		code, err := a.send(req)
		<-a.sem
		ok := err == nil && code/100 == 2
		if ok {
			a.notifies.Add(1)
		} else {
			a.notifyErrs.Add(1)
		}
		a.mu.Lock()
		if !ok {
			if final == "" {
				a.log.Info("presence agent: subscriber did not take a NOTIFY; subscription ended",
					"resource", s.entity, "subscriber", s.owner, "code", code, "err", err)
			}
			a.removeLocked(s)
		} else if final != "" {
			a.removeLocked(s)
		}
		if s.gone || !s.dirty {
			s.running = false
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
	}
}

// notifyRequest builds s's next NOTIFY.
func (a *Agent) notifyRequest(s *agentSub, state, ct string, body []byte) *sipmsg.Request {
	req := sipmsg.NewRequest(sipmsg.NOTIFY, s.target)
	req.SetTransport(s.transport)
	req.SetDestination(s.dest)
	if s.transport == "UDP" {
		req.Laddr = a.laddr
	}
	from := &sipmsg.FromHeader{Address: s.from, Params: sipmsg.NewParams()}
	from.Params.Add("tag", s.localTag)
	to := &sipmsg.ToHeader{DisplayName: s.toName, Address: s.to, Params: sipmsg.NewParams()}
	if s.remoteTag != "" {
		to.Params.Add("tag", s.remoteTag)
	}
	callID := sipmsg.CallIDHeader(s.callID)
	mf := sipmsg.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: s.cseq, MethodName: sipmsg.NOTIFY})
	req.AppendHeader(&mf)
	for _, r := range s.routes {
		req.AppendHeader(sipmsg.NewHeader("Route", r))
	}
	req.AppendHeader(a.contact.Clone())
	req.AppendHeader(sipmsg.NewHeader("Event", s.eventHdr))
	req.AppendHeader(sipmsg.NewHeader("Subscription-State", state))
	req.AppendHeader(sipmsg.NewHeader("User-Agent", a.cfg.UserAgent))
	if body != nil {
		req.AppendHeader(sipmsg.NewHeader("Content-Type", ct))
	}
	if s.list != nil {
		req.AppendHeader(sipmsg.NewHeader("Require", "eventlist"))
	}
	req.SetBody(body)
	return req
}

// send runs one NOTIFY transaction and returns the final status code.
func (a *Agent) send(req *sipmsg.Request) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.NotifyTimeout)
	defer cancel()
	tx, err := a.cli.TransactionRequest(ctx, req)
	if err != nil {
		return 0, err
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return int(res.StatusCode), nil
		case <-tx.Done():
			return 0, tx.Err()
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}
