package testpbx

import (
	"strconv"
	"testing"
	"time"
)

// registration lifetime of the sipp peers; they are unregistered after the
// call anyway.
const peerExpires = 5 * time.Minute

// PlaceCall places an answered call through Kamailio with two sipp
// processes: a UAS registered as extension to, which rings for ring and then
// answers, and a UAC registered as extension from, which calls to, talks for
// talk and hangs up (BYE from the caller). Both extensions are unregistered
// afterwards. PlaceCall blocks until both sipp processes have finished and
// fails tb (Fatal, with sipp's traces) if either did not complete its
// scenario, so it must be called from the goroutine running the test.
//
// Watchers subscribed to either extension with Event: dialog see the dialog
// go early (the caller may see trying first), confirmed and terminated.
func (k *Kamailio) PlaceCall(tb testing.TB, from, to string, ring, talk time.Duration) {
	tb.Helper()
	k.call(tb, from, to, "uac-call.xml", "uas-answer.xml", ring, talk)
}

// PlaceUnansweredCall places a call that is never answered: the UAC
// registered as from calls the UAS registered as to, which rings; after ring
// the caller sends CANCEL and the callee answers 487. Watchers see the
// dialog go early and terminated. Errors fail tb as in PlaceCall.
func (k *Kamailio) PlaceUnansweredCall(tb testing.TB, from, to string, ring time.Duration) {
	tb.Helper()
	k.call(tb, from, to, "uac-cancel.xml", "uas-ring.xml", ring, ring)
}

// PlaceRejectedCall places a call that the callee rejects: the UAS
// registered as to rings for ring and answers 486 Busy Here. Watchers see the
// dialog go early and terminated. Errors fail tb as in PlaceCall.
func (k *Kamailio) PlaceRejectedCall(tb testing.TB, from, to string, ring time.Duration) {
	tb.Helper()
	k.call(tb, from, to, "uac-rejected.xml", "uas-busy.xml", ring, 0)
}

// call runs one call between a sipp UAC (from) and a sipp UAS (to). The UAS
// runs uas with -d ring, the UAC runs uac with -d callerPause.
func (k *Kamailio) call(tb testing.TB, from, to, uac, uas string, ring, callerPause time.Duration) {
	tb.Helper()
	keys := []string{"-key", "caller", from, "-key", "callee", to, "-key", "domain", k.domain}

	callee := RunSipp(tb, uas, append([]string{"-m", "1", "-d", millis(ring)}, keys...)...)
	k.Register(tb, to, "sip:"+to+"@"+callee.Addr(), peerExpires)
	defer k.unregister(tb, to, "sip:"+to+"@"+callee.Addr())

	// The caller's port is chosen first so that it can be registered before
	// it starts calling.
	callerPort := FreePort(tb)
	callerContact := "sip:" + from + "@127.0.0.1:" + strconv.Itoa(callerPort)
	k.Register(tb, from, callerContact, peerExpires)
	defer k.unregister(tb, from, callerContact)

	caller := RunSipp(tb, uac, append([]string{
		"-m", "1", "-d", millis(callerPause), "-p", strconv.Itoa(callerPort), "-s", to, k.Addr(),
	}, keys...)...)

	// Whichever side fails first: report it without waiting for the other
	// to time out (both are killed in cleanup).
	select {
	case <-caller.Done():
		if caller.Err() != nil {
			caller.Wait(tb)
		}
	case <-callee.Done():
		if callee.Err() != nil {
			callee.Wait(tb)
		}
	}
	caller.Wait(tb)
	callee.Wait(tb)
}

// unregister removes a binding made for a call; it only logs errors, as it
// runs deferred, possibly while the test is already failing.
func (k *Kamailio) unregister(tb testing.TB, ext, contact string) {
	tb.Helper()
	if err := k.register(ext, contact, 0); err != nil {
		tb.Logf("testpbx: unregister: %v", err)
	}
}

func millis(d time.Duration) string {
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// Call is a call StartCall placed, going on in the background.
type Call struct {
	k                    *Kamailio
	tb                   testing.TB
	from, to             string
	callerURI, calleeURI string
	caller, callee       *SippProcess
}

// StartCall is PlaceCall without waiting: it registers both extensions,
// starts the callee and the caller and returns at once. Call Err to wait
// for the call to finish; unlike PlaceCall's, its failures are returned,
// not fatal, for calls a test expects to be disturbed (by Restart, say).
func (k *Kamailio) StartCall(tb testing.TB, from, to string, ring, talk time.Duration) *Call {
	tb.Helper()
	keys := []string{"-key", "caller", from, "-key", "callee", to, "-key", "domain", k.domain}
	c := &Call{k: k, tb: tb, from: from, to: to}
	c.callee = RunSipp(tb, "uas-answer.xml", append([]string{"-m", "1", "-d", millis(ring)}, keys...)...)
	c.calleeURI = "sip:" + to + "@" + c.callee.Addr()
	k.Register(tb, to, c.calleeURI, peerExpires)
	callerPort := FreePort(tb)
	c.callerURI = "sip:" + from + "@127.0.0.1:" + strconv.Itoa(callerPort)
	k.Register(tb, from, c.callerURI, peerExpires)
	c.caller = RunSipp(tb, "uac-call.xml", append([]string{
		"-m", "1", "-d", millis(talk), "-p", strconv.Itoa(callerPort), "-s", to, k.Addr(),
	}, keys...)...)
	return c
}

// Err waits for both sipp processes of the call and returns the first
// failure, after removing the registrations StartCall made.
func (c *Call) Err() error {
	callerErr, calleeErr := c.caller.Err(), c.callee.Err()
	c.k.unregister(c.tb, c.to, c.calleeURI)
	c.k.unregister(c.tb, c.from, c.callerURI)
	if callerErr != nil {
		return callerErr
	}
	return calleeErr
}
