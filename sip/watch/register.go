package watch

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/google/uuid"
)

// registerLoop keeps Username registered at the PBX with our Contact until
// ctx is done, then un-registers. Subscriptions start after the first
// attempt, whether it succeeded or not: a PBX that needs no REGISTER still
// serves them.
func (s *Subscriber) registerLoop(ctx context.Context) {
	callID := uuid.NewString()
	tag := sipmsg.GenerateTagN(16)
	var cseq uint32
	first := true
	failures := 0
	registered := false
	send := func(ctx context.Context, expires time.Duration) (*sipmsg.Response, error) {
		recipient := sipmsg.Uri{Scheme: "sip", Host: s.domain}
		req := sipmsg.NewRequest(sipmsg.REGISTER, recipient)
		req.SetDestination(s.cfg.PBXAddr)
		req.SetTransport(s.transport)
		aor := sipmsg.Uri{Scheme: "sip", User: s.cfg.Username, Host: s.domain}
		from := &sipmsg.FromHeader{Address: aor, Params: sipmsg.NewParams()}
		from.Params.Add("tag", tag)
		cseq++
		cid := sipmsg.CallIDHeader(callID)
		req.AppendHeader(from)
		req.AppendHeader(&sipmsg.ToHeader{Address: aor})
		req.AppendHeader(&cid)
		req.AppendHeader(&sipmsg.CSeqHeader{SeqNo: cseq, MethodName: sipmsg.REGISTER})
		req.AppendHeader(&sipmsg.ContactHeader{Address: s.contact})
		exp := sipmsg.ExpiresHeader(uint32(expires / time.Second))
		req.AppendHeader(&exp)
		req.AppendHeader(sipmsg.NewHeader("User-Agent", s.cfg.UserAgent))
		res, err := s.do(ctx, req)
		if h := req.CSeq(); h != nil {
			cseq = max(cseq, h.SeqNo)
		}
		return res, err
	}
	defer func() {
		if first {
			close(s.registered)
		}
		if registered {
			ctx, cancel := context.WithTimeout(context.Background(), min(s.cfg.RequestTimeout, 5*time.Second))
			defer cancel()
			if _, err := send(ctx, 0); err == nil {
				s.log.Info("sip: un-registered", "user", s.cfg.Username)
			}
		}
	}()
	for ctx.Err() == nil {
		wait := backoff(s.cfg.RetryMin, s.cfg.RetryMax, failures)
		res, err := send(ctx, s.expiry())
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			s.checkPBX("REGISTER got no answer")
			s.log.Warn("sip: REGISTER got no answer; retrying", "err", err, "retry_in", wait)
		case res.StatusCode/100 == 2:
			failures, registered = 0, true
			granted := s.expiry()
			if c := res.Contact(); c != nil {
				if v, ok := c.Params.Get("expires"); ok {
					if n := atoi(v); n > 0 {
						granted = min(granted, seconds(n))
					}
				}
			}
			if h := res.GetHeader("Expires"); h != nil {
				if n := atoi(h.Value()); n > 0 {
					granted = min(granted, seconds(n))
				}
			}
			wait = granted - refreshLead(granted, rand.Float64())
			s.log.Info("sip: registered", "user", s.cfg.Username, "expires", granted)
		default:
			failures++
			s.log.Warn("sip: REGISTER refused; retrying", "status", res.StatusCode, "reason", res.Reason, "retry_in", wait)
		}
		if first {
			first = false
			close(s.registered)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-s.reregister:
			// The PBX restarted: it has forgotten the registration.
			t.Stop()
			failures = 0
		}
	}
}

// lampMessage is the JSON body of the MESSAGE sent after a lamp change.
type lampMessage struct {
	Entity string `json:"entity"`
	Status string `json:"status"`
}

// queueMessage hands a lamp change to the MESSAGE sender; when it is too far
// behind the change is dropped with a warning.
func (s *Subscriber) queueMessage(ext, lamp string) {
	m := lampMessage{Entity: "sip:" + ext + "@" + s.domain, Status: lamp}
	select {
	case s.messages <- m:
	default:
		s.log.Warn("sip: MESSAGE queue full; dropping a lamp change", "extension", ext, "status", lamp)
	}
}

// sendMessages sends queued lamp changes as SIP MESSAGEs to MessageURI, in
// order, until ctx is done.
func (s *Subscriber) sendMessages(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.messages:
			body, _ := json.Marshal(m)
			req := sipmsg.NewRequest(sipmsg.MESSAGE, *s.message)
			req.SetTransport(s.transport)
			if s.message.Port == 0 {
				req.SetDestination(s.cfg.PBXAddr)
			}
			from := &sipmsg.FromHeader{Address: sipmsg.Uri{Scheme: "sip", User: s.cfg.Username, Host: s.domain}, Params: sipmsg.NewParams()}
			from.Params.Add("tag", sipmsg.GenerateTagN(16))
			req.AppendHeader(from)
			req.AppendHeader(&sipmsg.ToHeader{Address: *s.message})
			ct := sipmsg.ContentTypeHeader("application/json")
			req.AppendHeader(&ct)
			req.AppendHeader(sipmsg.NewHeader("User-Agent", s.cfg.UserAgent))
			req.SetBody(body)
			res, err := s.do(ctx, req)
			switch {
			case err != nil:
				s.log.Warn("sip: MESSAGE got no answer", "uri", s.message.String(), "err", err)
			case res.StatusCode/100 != 2:
				s.log.Warn("sip: MESSAGE refused", "uri", s.message.String(), "status", res.StatusCode, "reason", res.Reason)
			}
		}
	}
}

// atoi reads a number a peer sent; 0 for anything else.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
