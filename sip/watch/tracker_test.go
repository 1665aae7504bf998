package watch

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/sip"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func readDoc(tb testing.TB, path string) sip.DialogInfo {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	di, err := sip.ParseDialogInfo(b)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return di
}

// TestTrackerKamailioCaptures replays the NOTIFY bodies Kamailio sent
// during real calls, one extension at a time, and checks the call each
// sequence builds. Kamailio states no cause in its terminated documents,
// so the call ends with none: the tracker makes none up. Other PBXs state
// one (Asterisk and FreeSWITCH an event, some only a SIP code); the rows
// with end set give the last capture's <state> those attributes, and the
// cause must follow them.
func TestTrackerKamailioCaptures(t *testing.T) {
	tests := []struct {
		call, ext string
		end       string // attributes for the terminated document's <state>
		dir       callstate.Direction
		from, to  string
		answered  bool
		cause     string
	}{
		{"answered", "100", "", callstate.DirectionOut, "100", "101", true, ""},
		{"answered", "101", "", callstate.DirectionIn, "100", "101", true, ""},
		{"cancelled", "100", "", callstate.DirectionOut, "100", "101", false, ""},
		{"rejected", "101", "", callstate.DirectionIn, "100", "101", false, ""},
		{"answered", "100", `event="local-bye"`, callstate.DirectionOut, "100", "101", true, "local-bye"},
		{"answered", "101", `event="Remote-Bye" code="200"`, callstate.DirectionIn, "100", "101", true, "remote-bye"},
		{"cancelled", "100", `event="cancelled" code="487"`, callstate.DirectionOut, "100", "101", false, "cancelled"},
		{"rejected", "101", `code="486"`, callstate.DirectionIn, "100", "101", false, "486"},
		{"rejected", "101", `event="rejected" code="603"`, callstate.DirectionIn, "100", "101", false, "rejected"},
	}
	for _, tt := range tests {
		name := tt.call + "-" + tt.ext
		if tt.end != "" {
			name += "-" + tt.cause
		}
		t.Run(name, func(t *testing.T) {
			files, _ := filepath.Glob(filepath.Join("..", "testdata", "kamailio", "kamailio-5.6-"+tt.call+"-"+tt.ext+"-*.xml"))
			if len(files) < 2 {
				t.Fatalf("only %d captures", len(files))
			}
			slices.Sort(files)
			tr := newTracker(tt.ext)
			var c callstate.Call
			keys := map[string]bool{}
			for i, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if tt.end != "" && i == len(files)-1 {
					if !bytes.Contains(b, []byte("<state>terminated</state>")) {
						t.Fatalf("%s: no <state>terminated</state> to give %s", f, tt.end)
					}
					b = bytes.Replace(b, []byte("<state>terminated</state>"), []byte("<state "+tt.end+">terminated</state>"), 1)
				}
				di, err := sip.ParseDialogInfo(b)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				for _, ch := range tr.document(di, t0.Add(time.Duration(i)*time.Second)) {
					keys[ch.update.Key] = true
					c = c.Apply(ch.update, t0.Add(time.Duration(i)*time.Second))
				}
			}
			if len(keys) != 1 {
				t.Fatalf("keys %v, want one call", keys)
			}
			if c.State != callstate.StateEnded || c.Direction != tt.dir || c.From != tt.from || c.To != tt.to || c.CallID == "" {
				t.Errorf("call %+v, want ended %s from %s to %s with a call id", c, tt.dir, tt.from, tt.to)
			}
			if tt.answered == c.AnsweredAt.IsZero() {
				t.Errorf("answered at %v, want answered=%v", c.AnsweredAt, tt.answered)
			}
			if c.Cause != tt.cause {
				t.Errorf("cause %q, want %q", c.Cause, tt.cause)
			}
			if len(tr.active) != 0 || tr.lamp() != callstate.LampIdle {
				t.Errorf("after the call: %d active, lamp %s", len(tr.active), tr.lamp())
			}
		})
	}
}

func doc(state sip.DocState, version uint64, dialogs ...sip.Dialog) sip.DialogInfo {
	return sip.DialogInfo{Entity: "sip:100@pbx", State: state, Version: version, HasVersion: true, Dialogs: dialogs}
}

func TestTrackerDocuments(t *testing.T) {
	early := sip.Dialog{ID: "d1", CallID: "c1", Direction: sip.DirectionRecipient, State: sip.DialogEarly,
		LocalIdentity: "sip:100@pbx", RemoteIdentity: "<sip:200@pbx>"}
	confirmed := early
	confirmed.State = sip.DialogConfirmed
	held := confirmed
	held.RemoteHeld = true
	ended := sip.Dialog{ID: "d1", CallID: "c1", State: sip.DialogTerminated, Event: "remote-bye"}
	asterisk := sip.Dialog{ID: "100", State: sip.DialogConfirmed}
	k1 := "100/d1~" + callHash("c1")
	reused := early
	reused.CallID = "c9"
	k9 := "100/d1~" + callHash("c9")
	otherTags := confirmed
	otherTags.LocalTag, otherTags.RemoteTag = "l2", "r2"
	tagged := confirmed
	tagged.LocalTag, tagged.RemoteTag = "l1", "r1"
	taggedEnd := ended
	taggedEnd.LocalTag, taggedEnd.RemoteTag = "l1", "r1"
	asteriskIdle := sip.Dialog{ID: "100", State: sip.DialogTerminated}

	type step struct {
		doc   sip.DialogInfo
		want  []string // "key state cause hold"
		lamp  string
		after time.Duration
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"RingAnswerHoldHangUp", []step{
			{doc: doc(sip.DocFull, 1, early), want: []string{k1 + " ringing  -"}, lamp: callstate.LampRinging},
			{doc: doc(sip.DocFull, 2, confirmed), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc(sip.DocPartial, 3, held), want: []string{k1 + " answered  true"}, lamp: callstate.LampHold},
			{doc: doc(sip.DocPartial, 4, ended), want: []string{k1 + " ended remote-bye -"}, lamp: callstate.LampIdle},
		}},
		{"FullDocumentEndsVanishedDialog", []step{
			{doc: doc(sip.DocFull, 1, confirmed), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc(sip.DocFull, 2), want: []string{k1 + " ended vanished -"}, lamp: callstate.LampIdle},
		}},
		{"PartialDocumentKeepsUnlisted", []step{
			{doc: doc(sip.DocFull, 1, confirmed), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc(sip.DocPartial, 2, sip.Dialog{ID: "d2", CallID: "c2", State: sip.DialogEarly}), want: []string{"100/d2~" + callHash("c2") + " ringing  -"}, lamp: callstate.LampBusy},
		}},
		{"NoStateMeansFull", []step{
			{doc: doc(sip.DocFull, 1, confirmed), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc("", 2), want: []string{k1 + " ended vanished -"}, lamp: callstate.LampIdle},
		}},
		{"AsteriskIdleIsNoCall", []step{
			{doc: doc(sip.DocFull, 1, asteriskIdle), want: nil, lamp: callstate.LampIdle},
		}},
		{"AsteriskReusedIDIsANewCall", []step{
			{doc: doc(sip.DocFull, 1, asterisk), want: []string{"100/100@" + stamp(t0) + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc(sip.DocFull, 2, asteriskIdle), want: []string{"100/100@" + stamp(t0) + " ended  -"}, lamp: callstate.LampIdle},
			{doc: doc(sip.DocFull, 3, asterisk), after: time.Minute, want: []string{"100/100@" + stamp(t0.Add(time.Minute)) + " answered  false"}, lamp: callstate.LampBusy},
		}},
		{"ReusedIDAfterTheEndIsANewCall", []step{
			{doc: doc(sip.DocFull, 1, confirmed), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc(sip.DocPartial, 2, ended), want: []string{k1 + " ended remote-bye -"}, lamp: callstate.LampIdle},
			{doc: doc(sip.DocFull, 3, reused), want: []string{k9 + " ringing  -"}, lamp: callstate.LampRinging},
		}},
		{"ReusedIDWhileActiveEndsTheOldCall", []step{
			{doc: doc(sip.DocFull, 1, confirmed), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc(sip.DocPartial, 2, reused), want: []string{k1 + " ended vanished -", k9 + " ringing  -"}, lamp: callstate.LampRinging},
		}},
		{"SameCallIDOtherTagsIsANewCall", []step{
			{doc: doc(sip.DocFull, 1, tagged), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc(sip.DocPartial, 2, taggedEnd), want: []string{k1 + " ended remote-bye -"}, lamp: callstate.LampIdle},
			{doc: doc(sip.DocPartial, 3, otherTags), after: time.Second, want: []string{k1 + "@" + stamp(t0.Add(time.Second)) + " answered  false"}, lamp: callstate.LampBusy},
		}},
		{"TagsLearnedLaterAreTheSameCall", []step{
			{doc: doc(sip.DocFull, 1, early), want: []string{k1 + " ringing  -"}, lamp: callstate.LampRinging},
			{doc: doc(sip.DocFull, 2, tagged), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
		}},
		{"FullDocumentAfterTheEndChangesNothing", []step{
			{doc: doc(sip.DocFull, 1, confirmed), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc(sip.DocPartial, 2, ended), want: []string{k1 + " ended remote-bye -"}, lamp: callstate.LampIdle},
			{doc: doc(sip.DocFull, 3), want: nil, lamp: callstate.LampIdle},
		}},
		{"TerminatedDialogListedAgainStaysOver", []step{
			{doc: doc(sip.DocFull, 1, confirmed), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc(sip.DocFull, 2, ended), want: []string{k1 + " ended remote-bye -"}, lamp: callstate.LampIdle},
			{doc: doc(sip.DocFull, 3, ended), want: nil, lamp: callstate.LampIdle},
			{doc: doc(sip.DocFull, 4, confirmed), want: nil, lamp: callstate.LampIdle}, // known already: nothing to journal again
		}},
		{"RepeatsAreNotReturned", []step{
			{doc: doc(sip.DocFull, 1, confirmed), want: []string{k1 + " answered  false"}, lamp: callstate.LampBusy},
			{doc: doc(sip.DocFull, 2, confirmed), want: nil, lamp: callstate.LampBusy},
			{doc: doc(sip.DocFull, 3, held), want: []string{k1 + " answered  true"}, lamp: callstate.LampHold},
		}},
		{"DialogWithoutStateIsSkipped", []step{
			{doc: doc(sip.DocFull, 1, sip.Dialog{ID: "x"}), want: nil, lamp: callstate.LampIdle},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker("100")
			now := t0
			for i, s := range tt.steps {
				now = now.Add(s.after)
				var got []string
				for _, c := range tr.document(s.doc, now) {
					hold := "-"
					if c.update.OnHold != nil {
						hold = map[bool]string{true: "true", false: "false"}[*c.update.OnHold]
					}
					got = append(got, strings.Join([]string{c.update.Key, c.update.State.String(), c.update.Cause, hold}, " "))
				}
				if !slices.Equal(got, s.want) {
					t.Errorf("step %d: got %q, want %q", i, got, s.want)
				}
				if l := tr.lamp(); l != s.lamp {
					t.Errorf("step %d: lamp %s, want %s", i, l, s.lamp)
				}
			}
		})
	}
}

func stamp(at time.Time) string {
	return strings.TrimPrefix(newTracker("100").document(doc(sip.DocFull, 1, sip.Dialog{ID: "s", State: sip.DialogEarly}), at)[0].update.Key, "100/s@")
}

func TestTrackerLoad(t *testing.T) {
	tr := newTracker("100")
	tr.load([]callstate.Call{
		{Key: "100/d1", CallID: "c1", State: callstate.StateAnswered},
		{Key: "100/100@abc", State: callstate.StateRinging},
		{Key: "200/x", CallID: "x", State: callstate.StateRinging},
	}, t0)
	got := tr.document(doc(sip.DocFull, 1, sip.Dialog{ID: "100", State: sip.DialogConfirmed}), t0)
	if len(got) != 2 {
		t.Fatalf("got %+v, want the listed dialog and d1 vanished", got)
	}
	if got[0].update.Key != "100/100@abc" || got[0].update.State != callstate.StateAnswered {
		t.Errorf("listed dialog: %+v, want key 100/100@abc answered", got[0].update)
	}
	if got[1].update.Key != "100/d1" || got[1].update.Cause != callstate.CauseVanished {
		t.Errorf("unlisted dialog: %+v, want 100/d1 vanished", got[1].update)
	}
}

func TestTrackerStuck(t *testing.T) {
	tr := newTracker("100")
	tr.document(doc(sip.DocFull, 1, sip.Dialog{ID: "d", CallID: "c", State: sip.DialogEarly}), t0)
	if tr.stuck(t0.Add(time.Second), time.Minute) {
		t.Error("stuck after 1s")
	}
	if !tr.stuck(t0.Add(time.Minute), time.Minute) {
		t.Error("not stuck after the bound")
	}
	if tr.stuck(t0.Add(time.Minute+time.Second), time.Minute) {
		t.Error("asked twice within one bound")
	}
	if !tr.stuck(t0.Add(2*time.Minute), time.Minute) {
		t.Error("not asked again after another bound")
	}
	if tr.stuck(t0.Add(time.Hour), 0) {
		t.Error("a zero bound must disable the check")
	}
}

func TestParty(t *testing.T) {
	for in, want := range map[string]string{
		"sip:101@pbx":                  "101",
		"<sips:alice@example.com>":     "alice",
		"tel:+4930123;phone-context=x": "+4930123",
		"sip:pbx.example.com":          "pbx.example.com",
		"101":                          "101",
		"":                             "",
	} {
		if got := party(in); got != want {
			t.Errorf("party(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSubState(t *testing.T) {
	tests := []struct {
		in   string
		want subState
	}{
		{"active;expires=119", subState{state: "active", expires: 119}},
		{"Pending", subState{state: "pending", expires: -1}},
		{"terminated;reason=timeout", subState{state: "terminated", reason: "timeout", expires: -1}},
		{"terminated; reason=probation; retry-after=30", subState{state: "terminated", reason: "probation", expires: -1, retryAfter: 30 * time.Second}},
		{"terminated;retry-after=99999999", subState{state: "terminated", expires: -1, retryAfter: time.Hour}},
		{"active;expires=-5", subState{state: "active", expires: -1}},
	}
	for _, tt := range tests {
		if got := parseSubState(tt.in); got != tt.want {
			t.Errorf("parseSubState(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestTerminationReasons(t *testing.T) {
	sub := &subscription{}
	for reason, want := range map[string]outcome{
		"deactivated": {state: callstate.SubscriptionRetrying, now: true},
		"timeout":     {state: callstate.SubscriptionRetrying, now: true},
		"probation":   {state: callstate.SubscriptionRetrying},
		"giveup":      {state: callstate.SubscriptionRetrying},
		"":            {state: callstate.SubscriptionRetrying},
		"rejected":    {state: callstate.SubscriptionRefused, final: true},
		"noresource":  {state: callstate.SubscriptionRefused, final: true},
		"invariant":   {state: callstate.SubscriptionRefused, final: true},
	} {
		got := sub.terminated(&termination{reason: reason})
		if got.state != want.state || got.now != want.now || got.final != want.final {
			t.Errorf("reason %q: %+v, want %+v", reason, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for n := range 40 {
		d := backoff(time.Second, time.Minute, n)
		if d < 500*time.Millisecond || d > time.Minute {
			t.Fatalf("backoff(%d) = %v out of [0.5s, 1m]", n, d)
		}
	}
	if d := backoff(time.Second, time.Minute, 30); d < 30*time.Second {
		t.Errorf("backoff(30) = %v, want near the maximum", d)
	}
}

func TestTrackerLoadKeys(t *testing.T) {
	tr := newTracker("100")
	k1 := "100/d1~" + callHash("c1")
	tr.load([]callstate.Call{
		{Key: k1, CallID: "c1", State: callstate.StateAnswered},
		{Key: "100/d1", CallID: "c0", State: callstate.StateRinging}, // before call-ids were in keys
	}, t0)
	got := tr.apply(doc(sip.DocFull, 1, sip.Dialog{ID: "d1", CallID: "c1", State: sip.DialogConfirmed}), t0, callstate.CausePBXRestart)
	var keys []string
	for _, c := range got {
		keys = append(keys, c.update.Key+" "+c.update.State.String()+" "+c.update.Cause)
	}
	want := []string{k1 + " answered ", "100/d1 ended " + callstate.CausePBXRestart}
	if !slices.Equal(keys, want) {
		t.Errorf("got %q, want %q", keys, want)
	}
	if tr.lamp() != callstate.LampBusy {
		t.Errorf("lamp %s, want busy", tr.lamp())
	}
}

// TestTrackerLate checks what a document that arrives after newer ones
// changes: it still tells the answer, never reopens a call or resets hold.
func TestTrackerLate(t *testing.T) {
	confirmed := sip.Dialog{ID: "d1", CallID: "c1", State: sip.DialogConfirmed}
	held := confirmed
	held.LocalHeld = true
	ended := sip.Dialog{ID: "d1", CallID: "c1", State: sip.DialogTerminated}
	k1 := "100/d1~" + callHash("c1")
	tests := []struct {
		name     string
		applied  []sip.Dialog
		late     sip.Dialog
		want     string
		lamp     string
		tracking int
	}{
		{"AnswerAfterTheEnd", []sip.Dialog{{ID: "d1", CallID: "c1", State: sip.DialogEarly}, ended}, confirmed, k1 + " answered", callstate.LampIdle, 0},
		{"UnheldDoesNotResetHold", []sip.Dialog{held}, confirmed, "", callstate.LampHold, 1},
		{"UnknownDialogIsTracked", nil, confirmed, k1 + " answered", callstate.LampBusy, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker("100")
			for i, d := range tt.applied {
				tr.document(doc(sip.DocPartial, uint64(i+2), d), t0)
			}
			got := tr.late(doc(sip.DocFull, 1, tt.late), t0.Add(time.Second))
			switch {
			case tt.want == "" && len(got) != 0:
				t.Fatalf("got %+v, want none: a late document adds only progress", got)
			case tt.want != "" && (len(got) != 1 || got[0].update.Key+" "+got[0].update.State.String() != tt.want):
				t.Fatalf("got %+v, want one update %q", got, tt.want)
			}
			if tr.lamp() != tt.lamp || len(tr.active) != tt.tracking {
				t.Errorf("lamp %s with %d tracked, want %s with %d", tr.lamp(), len(tr.active), tt.lamp, tt.tracking)
			}
		})
	}
}

// TestCauseOfAnEndedCall checks that the end the subscriber adds itself
// (vanished, pbx-restart) never replaces the cause the PBX stated, in
// either order of applying.
func TestCauseOfAnEndedCall(t *testing.T) {
	bye := callstate.Update{Key: "k", State: callstate.StateEnded, Cause: "remote-bye"}
	gone := callstate.Update{Key: "k", State: callstate.StateEnded, Cause: callstate.CausePBXRestart}
	for name, c := range map[string]callstate.Call{
		"InOrder":  callstate.Call{}.Apply(bye, t0).Apply(gone, t0.Add(time.Second)),
		"Reversed": callstate.Call{}.Apply(gone, t0.Add(time.Second)).Apply(bye, t0),
	} {
		if c.Cause != "remote-bye" || !c.EndedAt.Equal(t0) {
			t.Errorf("%s: cause %q ended %v, want remote-bye at %v", name, c.Cause, c.EndedAt, t0)
		}
	}
}

func TestTrackerEndedMemory(t *testing.T) {
	tr := newTracker("100")
	for i := range endedMemory + 4 {
		d := sip.Dialog{ID: "d", CallID: "c" + strconv.Itoa(i), State: sip.DialogTerminated}
		tr.document(doc(sip.DocPartial, uint64(i+1), sip.Dialog{ID: "d", CallID: d.CallID, State: sip.DialogConfirmed}), t0)
		tr.document(doc(sip.DocPartial, uint64(i+1), d), t0)
	}
	if len(tr.ended) != endedMemory || len(tr.endedOrder) != endedMemory {
		t.Errorf("%d ended remembered (%d in order), want %d", len(tr.ended), len(tr.endedOrder), endedMemory)
	}
	tr.document(doc(sip.DocPartial, 99, sip.Dialog{ID: "x", CallID: "x", State: sip.DialogConfirmed}), t0)
	tr.document(doc(sip.DocPartial, 100, sip.Dialog{ID: "x", CallID: "x", State: sip.DialogTerminated}), t0.Add(endedKeep))
	if len(tr.ended) != 1 {
		t.Errorf("%d ended remembered after %v, want only the last", len(tr.ended), endedKeep)
	}
}

// BenchmarkKamailioBusyDocument works out what changed in a busy
// extension's full document as Kamailio sent it (52,759 bytes, 133
// dialogs; the sip package's benchmark of the same name parses it):
// "first" into an empty tracker (every dialog new), "again" into one that
// has seen it (nothing changed: what a busy extension costs per NOTIFY
// when one of its dialogs moved).
func BenchmarkKamailioBusyDocument(b *testing.B) {
	body, err := os.ReadFile(filepath.Join("..", "testdata", "kamailio", "kamailio-5.6-busy-101-full-53k.xml"))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.Run("first", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			di, _, err := sip.ParseDialogInfoRaw(body)
			if err != nil {
				b.Fatal(err)
			}
			if len(newTracker("101").document(di, now)) == 0 {
				b.Fatal("no changes")
			}
		}
	})
	b.Run("again", func(b *testing.B) {
		tr := newTracker("101")
		di, _, err := sip.ParseDialogInfoRaw(body)
		if err != nil {
			b.Fatal(err)
		}
		tr.document(di, now)
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			di, _, err := sip.ParseDialogInfoRaw(body)
			if err != nil {
				b.Fatal(err)
			}
			if n := len(tr.document(di, now)); n != 0 {
				b.Fatalf("%d changes, want none", n)
			}
		}
	})
}
