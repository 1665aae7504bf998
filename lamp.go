package callstate

// The lamp rule of a PBX extension: what a busy-lamp field shows for the
// calls it watches. The database computes every lamp it serves (the
// sip_lamp and user_lamp views, store/schema.sql); ExtensionLamp is the
// same rule for the SIP watcher, which keeps its dialogs in memory. The
// conformance suite (store/order_test.go) holds the two together on the
// same generated calls; a sipgate user's lamp is computed in the database
// only (internal/reference.UserLamp for the tests).

// ExtensionLamp is the lamp of a PBX extension watched and available, from
// the states of its live calls: hold when every answered call is on hold,
// busy when one is answered, ringing when one rings, else idle. (Whether
// the extension is watched at all, and the presence it publishes, the
// sip_lamp view adds from sip_extension.)
func ExtensionLamp(calls []Call) string {
	var answered, held, ringing int
	for _, c := range calls {
		switch c.State {
		case StateAnswered:
			answered++
			if c.OnHold {
				held++
			}
		case StateRinging:
			ringing++
		}
	}
	switch {
	case answered > 0 && answered == held:
		return LampHold
	case answered > 0:
		return LampBusy
	case ringing > 0:
		return LampRinging
	}
	return LampIdle
}
