package testpbx

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

// TestFakePBXNotifier plays fakepbx-notifier.xml against a sipgo subscriber
// that does what the scenario expects: digest authentication, a refresh
// within the expiry and a fresh subscription after the PBX terminated the
// first one.
func TestFakePBXNotifier(t *testing.T) {
	t.Parallel()
	pbx := RunSipp(t, "fakepbx-notifier.xml", "-m", "2", "-key", "user", "100", "-key", "password", "secret")
	w := newWatcher(t)
	creds := sipgo.DigestAuth{Username: "100", Password: "secret"}

	subscribe := func() (*sipmsg.Request, *sipmsg.Response) {
		t.Helper()
		req := w.newSubscribe(DefaultDomain, "101", pbx.Addr(), 5)
		res := w.do(req)
		if res.StatusCode != sipmsg.StatusUnauthorized {
			t.Fatalf("first SUBSCRIBE: got %d %s, want 401", res.StatusCode, res.Reason)
		}
		res, err := w.cli.DoDigestAuth(t.Context(), req, res, creds)
		if err != nil {
			t.Fatalf("authenticated SUBSCRIBE: %v", err)
		}
		if res.StatusCode != sipmsg.StatusOK {
			t.Fatalf("authenticated SUBSCRIBE: got %d %s, want 200", res.StatusCode, res.Reason)
		}
		if got := expiresOf(res); got != "5" {
			t.Errorf("200 to SUBSCRIBE: Expires = %q, want 5", got)
		}
		return req, res
	}

	// First subscription: early (full), confirmed (partial).
	req, res := subscribe()
	callID := req.CallID().Value()
	ns := w.waitCallID(callID, 2, 5*time.Second)
	wantDocs := []struct {
		version int
		state   string
		dialog  string
	}{{0, "full", "early"}, {1, "partial", "confirmed"}}
	for i, want := range wantDocs {
		var di dialogInfo
		if err := xml.Unmarshal(ns[i].Body(), &di); err != nil {
			t.Fatalf("NOTIFY %d: %v\n%s", i, err, ns[i].Body())
		}
		if di.Version != want.version || di.State != want.state || len(di.Dialogs) != 1 || di.Dialogs[0].State != want.dialog {
			t.Errorf("NOTIFY %d: version %d state %s dialogs %+v, want version %d state %s dialog %s",
				i, di.Version, di.State, di.Dialogs, want.version, want.state, want.dialog)
		}
		if di.Entity != "sip:101@"+DefaultDomain {
			t.Errorf("NOTIFY %d: entity %q", i, di.Entity)
		}
	}

	// Refresh within the dialog before the 5s run out.
	refresh := sipmsg.NewRequest(sipmsg.SUBSCRIBE, res.Contact().Address)
	refresh.SetDestination(pbx.Addr())
	refresh.AppendHeader(req.From())
	refresh.AppendHeader(res.To())
	refresh.AppendHeader(req.CallID())
	refresh.AppendHeader(&sipmsg.CSeqHeader{SeqNo: req.CSeq().SeqNo + 1, MethodName: sipmsg.SUBSCRIBE})
	w.addSubscribeHeaders(refresh, 5)
	time.Sleep(1 * time.Second)
	if res := w.do(refresh); res.StatusCode != sipmsg.StatusOK {
		t.Fatalf("refresh SUBSCRIBE: got %d %s", res.StatusCode, res.Reason)
	}

	ns = w.waitCallID(callID, 3, 5*time.Second)
	if got := header(ns[2], "Subscription-State"); !strings.HasPrefix(got, "terminated") {
		t.Fatalf("third NOTIFY: Subscription-State %q, want terminated", got)
	}

	// Fresh subscription with a new Call-ID: one full document, no dialogs.
	req2, _ := subscribe()
	if req2.CallID().Value() == callID {
		t.Fatal("fresh SUBSCRIBE reused the Call-ID")
	}
	ns = w.waitCallID(req2.CallID().Value(), 1, 5*time.Second)
	var di dialogInfo
	if err := xml.Unmarshal(ns[0].Body(), &di); err != nil {
		t.Fatalf("fresh NOTIFY: %v\n%s", err, ns[0].Body())
	}
	if di.Version != 0 || di.State != "full" || len(di.Dialogs) != 0 {
		t.Errorf("fresh NOTIFY: version %d state %s %d dialogs, want version 0, full, none", di.Version, di.State, len(di.Dialogs))
	}

	pbx.Wait(t)
}

func expiresOf(res *sipmsg.Response) string {
	if h := res.GetHeader("Expires"); h != nil {
		return h.Value()
	}
	return ""
}
