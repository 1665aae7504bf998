package callstate_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

// randomEvents makes the events of one call with everything that can make
// a merge depend on order: several DTMF presses (some of them copies of
// one request), hold stated back and forth, two causes, a hang-up received
// before the answer, parties that only some events carry, a first guess
// of the extension and the one who answered.
func randomEvents(r *rand.Rand, key string) []step {
	var steps []step
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	add := func(u callstate.Update, t time.Time) {
		u.Key = key
		steps = append(steps, step{u, t})
	}
	add(callstate.Update{CallID: key, Direction: callstate.DirectionIn, From: "491701", To: "4930",
		Users: []string{"Alice", "Bob"}, UserIDs: []string{"w0", "w1"}, Extension: "w0", State: callstate.StateRinging}, ms(r.IntN(50)))
	if r.IntN(2) == 0 { // newCall again, routed by another rule (a reload between them): the first wins
		add(callstate.Update{CallID: key, Direction: callstate.DirectionIn, State: callstate.StateRinging,
			Rule: []string{"vip", "after hours"}[r.IntN(2)]}, ms(r.IntN(50)))
	}
	if r.IntN(3) > 0 {
		add(callstate.Update{CallID: key, State: callstate.StateRinging, Rule: "block list"}, ms(r.IntN(50)))
	}
	answered := r.IntN(3) > 0 // else the answer was lost
	if answered {
		add(callstate.Update{CallID: key, Extension: fmt.Sprintf("w%d", r.IntN(2)), PinExtension: true,
			AnsweredBy: "Bob", Answering: "4930", State: callstate.StateAnswered}, ms(1000+r.IntN(5000)))
	}
	for i := range 1 + r.IntN(4) {
		digits := string("0123456789*#"[r.IntN(12)])
		t := ms(2000 + 1000*i + r.IntN(3000))
		u := callstate.Update{DTMF: digits, DTMFDigest: "d" + digits}
		add(u, t)
		if r.IntN(3) == 0 { // a copy of the same request
			add(u, t.Add(time.Duration(r.IntN(2500))*time.Millisecond))
		}
	}
	for range r.IntN(4) * b2i(answered) { // hold, said of an answered call
		add(callstate.Update{State: callstate.StateAnswered, OnHold: ptr(r.IntN(2) == 0)}, ms(3000+r.IntN(3000)))
	}
	if r.IntN(4) > 0 { // else the hangup was lost
		add(callstate.Update{Cause: "normalClearing", State: callstate.StateEnded}, ms(4000+r.IntN(4000)))
	}
	if r.IntN(2) == 0 {
		add(callstate.Update{Cause: "cancel", State: callstate.StateEnded, Answering: "4930"}, ms(4000+r.IntN(4000)))
	}
	for _, l := range reconciledUpdates(r) {
		add(l.u, l.at)
	}
	return steps
}

// reconciledUpdates makes what reconciliation may add to a call: a
// timeout end (a guess), and ends learned from sipgate's history, with
// and without an answer, stating their own times, learned at any time.
func reconciledUpdates(r *rand.Rand) []step {
	var steps []step
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	if r.IntN(2) == 0 {
		steps = append(steps, step{callstate.Update{State: callstate.StateEnded, Cause: callstate.CauseTimeout, Guessed: true}, ms(1_800_000 + r.IntN(60_000))})
	}
	for range r.IntN(3) {
		u := callstate.Update{Learned: true, State: callstate.StateEnded, StartedAt: ms(r.IntN(100)),
			Cause: []string{"normalClearing", "noAnswer", "busy", "cancel"}[r.IntN(4)]}
		if r.IntN(2) == 0 {
			u.AnsweredAt = ms(500 + r.IntN(5000))
		}
		u.EndedAt = ms(6000 + r.IntN(4000))
		steps = append(steps, step{u, ms(r.IntN(3_000_000))})
	}
	return steps
}

// TestApplyOrderIndependentLearnedOnly: a call known only from sipgate's
// history (its webhooks never came), with a late webhook or not.
func TestApplyOrderIndependentLearnedOnly(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := range 200 {
		var steps []step
		for _, l := range reconciledUpdates(r) {
			if l.u.Learned {
				l.u.Key, l.u.CallID, l.u.From, l.u.To, l.u.Direction = "h", "h", "491701", "4930", callstate.DirectionIn
				steps = append(steps, l)
			}
		}
		if len(steps) == 0 {
			continue
		}
		want := fold(steps...)
		if !want.Learned {
			t.Fatalf("call %d: only learned updates, yet not Learned: %+v", n, want)
		}
		if r.IntN(2) == 0 {
			steps = append(steps, step{callstate.Update{Key: "h", CallID: "h", State: callstate.StateRinging}, t0.Add(time.Second)})
			want = fold(steps...)
			if want.Learned {
				t.Fatalf("call %d: a webhook came, yet Learned", n)
			}
		}
		for range 10 {
			r.Shuffle(len(steps), func(i, j int) { steps[i], steps[j] = steps[j], steps[i] })
			if got := fold(steps...); !equalCalls(got, want) {
				t.Fatalf("call %d: another order gives another call\ngot  %+v\nwant %+v", n, got, want)
			}
		}
	}
}

// TestApplyOrderIndependent: any order of a call's events, with any of
// them repeated, gives the identical call, and its times are in order.
func TestApplyOrderIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		steps := randomEvents(r, fmt.Sprintf("c%d", n))
		want := fold(steps...)
		if !want.AnsweredAt.IsZero() && (want.AnsweredAt.Before(want.StartedAt) || (!want.EndedAt.IsZero() && want.EndedAt.Before(want.AnsweredAt))) {
			t.Fatalf("times out of order: started %v answered %v ended %v", want.StartedAt, want.AnsweredAt, want.EndedAt)
		}
		for range 20 {
			shuffled := slices.Clone(steps)
			for range r.IntN(3) { // repeats
				shuffled = append(shuffled, shuffled[r.IntN(len(shuffled))])
			}
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got := fold(shuffled...); !equalCalls(got, want) {
				t.Fatalf("call %d: another order gives another call\ngot  %+v\nwant %+v", n, got, want)
			}
		}
	}
}

func TestDTMFRepeats(t *testing.T) {
	press := func(ms int, digest, digits string) step {
		return step{callstate.Update{Key: "c", DTMF: digits, DTMFDigest: digest}, t0.Add(time.Duration(ms) * time.Millisecond)}
	}
	tests := []struct {
		name  string
		steps []step
		want  string
	}{
		{"InOrderReceived", []step{press(5000, "b", "2"), press(1000, "a", "4")}, "42"},
		{"CopyOfOneRequest", []step{press(1000, "a", "5"), press(1300, "a", "5")}, "5"},
		{"SameKeyInNextMenu", []step{press(1000, "a", "5"), press(4000, "a", "5")}, "55"},
		{"JustOutsideTheWindow", []step{press(1000, "a", "5"), press(3000, "a", "5")}, "55"},
		{"OtherBytesWithinTheWindow", []step{press(1000, "a", "5"), press(1100, "b", "5")}, "55"},
		{"ChainOfCopies", []step{press(1000, "a", "5"), press(2500, "a", "5"), press(4000, "a", "5")}, "5"},
		{"NoDigestNeverARepeat", []step{press(1000, "", "5"), press(1100, "", "5")}, "55"},
		{"SamePressTwice", []step{press(1000, "a", "5"), press(1000, "a", "5")}, "5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fold(tt.steps...).DTMF; got != tt.want {
				t.Errorf("DTMF = %q, want %q", got, tt.want)
			}
			slices.Reverse(tt.steps)
			if got := fold(tt.steps...).DTMF; got != tt.want {
				t.Errorf("reversed: DTMF = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPressKey(t *testing.T) {
	p := callstate.Press{At: t0.Add(123 * time.Microsecond), Digest: "ab12", Digits: "4#"}
	got, err := callstate.ParsePress(p.Key())
	if err != nil || !got.At.Equal(p.At) || got.Digest != p.Digest || got.Digits != p.Digits {
		t.Fatalf("ParsePress(%q) = %+v, %v", p.Key(), got, err)
	}
	for _, bad := range []string{"", "x:a:1", "123", "123:a"} {
		if _, err := callstate.ParsePress(bad); err == nil {
			t.Errorf("ParsePress(%q) took it", bad)
		}
	}
}

// FuzzParsePress: whatever ParsePress takes, Key writes it back the same
// way it reads again.
func FuzzParsePress(f *testing.F) {
	f.Add("01796169255432917:ab12cd34:4#")
	f.Add("00000000000000001::5")
	f.Add("x:y:z")
	f.Fuzz(func(t *testing.T, key string) {
		p, err := callstate.ParsePress(key)
		if err != nil {
			return
		}
		again, err := callstate.ParsePress(p.Key())
		if err != nil || !again.At.Equal(p.At) || again.Digest != p.Digest || again.Digits != p.Digits {
			t.Fatalf("ParsePress(%q) = %+v, then ParsePress(Key()) = %+v, %v", key, p, again, err)
		}
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
