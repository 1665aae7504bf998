package presence

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/callstate/callstate/sip"
)

// onOptions answers OPTIONS with what the agent takes.
func (a *Agent) onOptions(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if !a.allow(req, tx) {
		return
	}
	res := sipmsg.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(sipmsg.NewHeader("Allow", "SUBSCRIBE, OPTIONS"))
	res.AppendHeader(sipmsg.NewHeader("Allow-Events", allowEvents))
	_ = tx.Respond(res)
}

// onOther answers every other method 405.
func (a *Agent) onOther(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if req.IsAck() || !a.allow(req, tx) {
		return
	}
	res := sipmsg.NewResponseFromRequest(req, 405, "Method Not Allowed", nil)
	res.AppendHeader(sipmsg.NewHeader("Allow", "SUBSCRIBE, OPTIONS"))
	_ = tx.Respond(res)
}

// allow applies the rate limit to req's source. Over the limit it answers
// 503 with Retry-After and returns false.
func (a *Agent) allow(req *sipmsg.Request, tx sipmsg.ServerTransaction) bool {
	host, _, _ := net.SplitHostPort(req.Source())
	if a.limiter.allow(host, time.Now()) {
		return true
	}
	a.limited.Add(1)
	if a.authLog.due(time.Now(), time.Minute) {
		a.log.Warn("presence agent: requests over the rate limit answered 503", "source", host,
			"limited_total", a.limited.Load())
	}
	res := sipmsg.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
	res.AppendHeader(sipmsg.NewHeader("Retry-After", "5"))
	_ = tx.Respond(res)
	return false
}

// refuse answers req with code and counts it.
func (a *Agent) refuse(req *sipmsg.Request, tx sipmsg.ServerTransaction, code int, reason string, hdrs ...sipmsg.Header) {
	a.refused.Add(1)
	res := sipmsg.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

// parseEvent returns the package of an Event header value and the value
// to echo in NOTIFYs (with its id parameter, RFC 6665 section 8.2.1).
func parseEvent(v string) (pkg, echo string) {
	pkg, params, _ := strings.Cut(strings.TrimSpace(v), ";")
	pkg = strings.ToLower(strings.TrimSpace(pkg))
	if !validToken(pkg) {
		return "", ""
	}
	echo = pkg
	for _, p := range strings.Split(params, ";") {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "id") && validToken(strings.TrimSpace(val)) {
			echo += ";id=" + strings.TrimSpace(val)
		}
	}
	return pkg, echo
}

func validToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-.!%*_+`'~", r)) {
			return false
		}
	}
	return true
}

var errExpires = errors.New("bad Expires")

// parseExpires reads an Expires value: seconds. A number too large for an
// int is taken as the longest there is (and cut to the maximum after).
func parseExpires(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 64 {
		return 0, errExpires
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return 0, errExpires
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > int64(100*365*24*3600) {
		return 100 * 365 * 24 * time.Hour, nil
	}
	return time.Duration(n) * time.Second, nil
}

// acceptsType reports whether an Accept header value (empty: none sent)
// takes ct.
func acceptsType(accept, ct string) bool {
	if strings.TrimSpace(accept) == "" {
		return true
	}
	for _, t := range strings.Split(accept, ",") {
		t, _, _ = strings.Cut(strings.TrimSpace(t), ";")
		t = strings.ToLower(strings.TrimSpace(t))
		if t == ct || t == "*/*" || t == "application/*" {
			return true
		}
	}
	return false
}

func (a *Agent) onSubscribe(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if !a.allow(req, tx) {
		return
	}
	pkg, echo := parseEvent(sip.HeaderValue(req, "Event"))
	if pkg != pkgDialog && pkg != pkgPresence {
		a.refuse(req, tx, 489, "Bad Event", sipmsg.NewHeader("Allow-Events", allowEvents))
		return
	}
	expires := a.cfg.DefaultExpires
	if v := sip.HeaderValue(req, "Expires"); v != "" {
		d, err := parseExpires(v)
		if err != nil {
			a.refuse(req, tx, 400, "Bad Expires")
			return
		}
		expires = d
	}
	if expires != 0 && expires < a.cfg.MinExpires {
		a.refuse(req, tx, 423, "Interval Too Brief",
			sipmsg.NewHeader("Min-Expires", strconv.Itoa(int(a.cfg.MinExpires.Seconds()))))
		return
	}
	expires = min(expires, a.cfg.MaxExpires)
	from, to, callID := req.From(), req.To(), req.CallID()
	if from == nil || to == nil || callID == nil {
		a.refuse(req, tx, 400, "Missing From, To or Call-ID")
		return
	}
	fromTag, _ := from.Params.Get("tag")
	key := string(*callID) + "\x00" + fromTag
	if toTag, ok := to.Params.Get("tag"); ok && toTag != "" {
		a.refreshSub(req, tx, key, toTag, pkg, expires)
		return
	}
	ct := ctDialogInfo
	if pkg == pkgPresence {
		ct = ctPIDF
	}
	if !acceptsType(sip.HeaderValue(req, "Accept"), ct) {
		a.refuse(req, tx, 406, "Not Acceptable", sipmsg.NewHeader("Accept", ct))
		return
	}
	contact := req.Contact()
	if contact == nil || contact.Address.Host == "" {
		a.refuse(req, tx, 400, "Missing Contact")
		return
	}
	select {
	case <-a.ready:
	default:
		a.refuse(req, tx, 503, "Lamps Not Read Yet", sipmsg.NewHeader("Retry-After", "5"))
		return
	}
	owner, ok := a.authenticate(req, tx)
	if !ok {
		return
	}
	list, isList := a.cfg.Lists[req.Recipient.User]
	a.mu.Lock()
	if _, known := a.res.resolve(req.Recipient.User); !known && !isList || isList && a.missingLocked(list) {
		a.mu.Unlock()
		a.rereadNow()
		a.mu.Lock()
	}
	if isList && !hasOption(req, "Supported", "eventlist") {
		a.mu.Unlock()
		a.refuse(req, tx, 421, "Extension Required", sipmsg.NewHeader("Require", "eventlist"))
		return
	}
	ref, found := a.res.resolve(req.Recipient.User)
	if isList {
		ref, found = LampRef{}, true
	}
	if !found {
		a.mu.Unlock()
		a.log.Info("presence agent: SUBSCRIBE for an unknown resource answered 404", "user", sip.Clip(req.Recipient.User), "subscriber", owner)
		a.refuse(req, tx, 404, "Not Found")
		return
	}
	if a.closing || len(a.subs) >= a.cfg.MaxSubscriptions || a.perOwner[owner] >= a.cfg.MaxPerSubscriber {
		a.mu.Unlock()
		if a.authLog.due(time.Now(), time.Minute) {
			a.log.Warn("presence agent: too many subscriptions; SUBSCRIBE answered 503", "subscriber", owner,
				"total", len(a.subs))
		}
		a.refuse(req, tx, 503, "Too Many Subscriptions", sipmsg.NewHeader("Retry-After", "60"))
		return
	}
	if old := a.subs[key]; old != nil {
		// A repeat of the SUBSCRIBE (a retransmission outlived its
		// transaction): the subscription stands.
		a.mu.Unlock()
		a.respondOK(req, tx, old.localTag, expires)
		return
	}
	s := &agentSub{
		key: key, event: pkg, eventHdr: echo, ref: ref, owner: owner, callID: string(*callID),
		localTag: sipmsg.GenerateTagN(16), from: uriOnly(to.Address), to: uriOnly(from.Address), toName: from.DisplayName,
		remoteTag: fromTag, target: contact.Address, dest: req.Source(), transport: req.Transport(),
		expires: time.Now().Add(expires),
	}
	entity := uriOnly(req.Recipient)
	s.entity = entity.String()
	for _, h := range req.GetHeaders("Record-Route") {
		s.routes = append(s.routes, h.Value())
	}
	if isList {
		s.list, s.listURI = list, s.entity
		s.changed, s.versions = map[LampRef][]agentDialog{}, map[LampRef]uint32{}
	}
	if expires > 0 {
		a.subs[key] = s
		for _, r := range s.refs() {
			if a.byLamp[r] == nil {
				a.byLamp[r] = map[*agentSub]struct{}{}
			}
			a.byLamp[r][s] = struct{}{}
		}
		a.perOwner[owner]++
	} else {
		s.final = "timeout" // a fetch (RFC 6665 section 4.4.3): one NOTIFY
		a.perOwner[owner]++
	}
	a.mu.Unlock()
	a.respondOK(req, tx, s.localTag, expires)
	a.log.Debug("presence agent: subscription", "resource", s.entity, "lamp", ref.String(), "event", pkg,
		"subscriber", owner, "expires", expires)
	a.mu.Lock()
	a.kickLocked(s)
	a.mu.Unlock()
}

// refreshSub handles a SUBSCRIBE within a subscription's dialog: a refresh,
// or with Expires: 0 the end of it. Either is followed by a NOTIFY with
// the full state.
func (a *Agent) refreshSub(req *sipmsg.Request, tx sipmsg.ServerTransaction, key, toTag, pkg string, expires time.Duration) {
	a.mu.Lock()
	s := a.subs[key]
	if s == nil || s.localTag != toTag || s.event != pkg || s.final != "" {
		a.mu.Unlock()
		a.refuse(req, tx, 481, "Subscription Does Not Exist")
		return
	}
	if expires == 0 {
		s.final = "timeout"
	} else {
		s.expires = time.Now().Add(expires)
	}
	a.mu.Unlock()
	a.respondOK(req, tx, toTag, expires)
	a.mu.Lock()
	s.ended = nil
	s.listFull = true
	a.kickLocked(s)
	a.mu.Unlock()
}

// rereadNow reads every lamp again before a SUBSCRIBE for a resource not
// known is answered 404: a user sipgate told of a moment ago, an
// extension just added. It does so at most once a second, so that a flood
// of unknown names costs one read a second, and waits two seconds at most.
func (a *Agent) rereadNow() {
	now := time.Now().UnixNano()
	last := a.rereadAt.Load()
	if now-last < int64(time.Second) || !a.rereadAt.CompareAndSwap(last, now) {
		return
	}
	done := make(chan struct{})
	select {
	case a.reread <- done:
	case <-time.After(2 * time.Second):
		return
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
}

// hasOption reports whether the option tag opt is in req's header name
// (Supported, Require), case-insensitively.
func hasOption(req *sipmsg.Request, name, opt string) bool {
	for _, h := range req.GetHeaders(name) {
		for _, o := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(o), opt) {
				return true
			}
		}
	}
	return false
}

func (a *Agent) respondOK(req *sipmsg.Request, tx sipmsg.ServerTransaction, tag string, expires time.Duration) {
	res := sipmsg.NewResponseFromRequest(req, 200, "OK", nil)
	if to := res.To(); to != nil { // sipgo put a tag of its own there
		if to.Params == nil {
			to.Params = sipmsg.NewParams()
		}
		to.Params.Remove("tag")
		to.Params.Add("tag", tag)
	}
	res.AppendHeader(sipmsg.NewHeader("Expires", strconv.Itoa(int(expires.Seconds()))))
	res.AppendHeader(a.contact.Clone())
	_ = tx.Respond(res)
}

// authenticate checks req's credentials. It returns the subscriber's name
// for the limits and the log (the account, or the source address when
// anonymous), or answers 401 (or 403) and returns false.
func (a *Agent) authenticate(req *sipmsg.Request, tx sipmsg.ServerTransaction) (string, bool) {
	host, _, _ := net.SplitHostPort(req.Source())
	if a.cfg.AllowAnonymous {
		return host, true
	}
	now := time.Now()
	h := req.GetHeader("Authorization")
	if h == nil {
		a.challenge(req, tx, false)
		return "", false
	}
	c, err := parseDigest(h.Value())
	if err != nil {
		a.authFailed(req, tx, host, "", "malformed credentials")
		return "", false
	}
	valid, stale := a.nonces.check(c.nonce, now)
	if !valid {
		a.challenge(req, tx, false)
		return "", false
	}
	a.mu.Lock()
	ha1, known := a.accounts[c.username]
	a.mu.Unlock()
	if !known || c.realm != a.cfg.Realm || !digestOK(c, string(req.Method), ha1) {
		a.authFailed(req, tx, host, c.username, "wrong user name or password")
		return "", false
	}
	if stale {
		a.challenge(req, tx, true)
		return "", false
	}
	return c.username, true
}

func (a *Agent) challenge(req *sipmsg.Request, tx sipmsg.ServerTransaction, stale bool) {
	v := `Digest realm="` + a.cfg.Realm + `", nonce="` + a.nonces.make(time.Now()) + `", algorithm=MD5, qop="auth"`
	if stale {
		v += ", stale=true"
	}
	res := sipmsg.NewResponseFromRequest(req, 401, "Unauthorized", nil)
	res.AppendHeader(sipmsg.NewHeader("WWW-Authenticate", v))
	_ = tx.Respond(res)
}

// authFailed answers 403 and logs the attempt (never the credentials'
// response, let alone a password), at most once a minute per reason.
func (a *Agent) authFailed(req *sipmsg.Request, tx sipmsg.ServerTransaction, host, user, why string) {
	if a.authLog.due(time.Now(), 10*time.Second) {
		a.log.Warn("presence agent: SUBSCRIBE with bad credentials answered 403", "source", host,
			"user", sip.Clip(user), "why", why)
	}
	a.refuse(req, tx, 403, "Forbidden")
}

// uriOnly returns u without URI parameters or headers other than those of
// the address itself.
func uriOnly(u sipmsg.Uri) sipmsg.Uri {
	return sipmsg.Uri{Scheme: cmpOr(u.Scheme, "sip"), User: u.User, Host: u.Host, Port: u.Port}
}
