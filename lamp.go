package callstate

// The lamp rules: what a busy-lamp field shows for the calls it watches.
// The database computes every lamp it serves (the sip_lamp and user_lamp
// views, store/schema.sql); these functions are the same rules for the
// places that keep calls in memory (the SIP watcher's dialogs, the
// presence agent's calls). The conformance suite (store/order_test.go)
// holds the two together on the same generated calls.

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
	return ExtensionLampOf(answered, held, ringing)
}

// ExtensionLampOf is ExtensionLamp from the counts of an extension's live
// calls: answered, of those on hold, and ringing.
func ExtensionLampOf(answered, held, ringing int) string {
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

// ConcernsUser reports whether the sipgate call c lights the lamp of user
// id userID: it is live and its extension is the user's (pinned to who
// answered), or it rings and is offered to the user.
func ConcernsUser(c Call, userID string) bool {
	if c.Source != SourceSipgate || !c.Active() || userID == "" {
		return false
	}
	if c.Extension == userID {
		return true
	}
	if c.State == StateRinging {
		for _, u := range c.UserIDs {
			if u == userID {
				return true
			}
		}
	}
	return false
}

// UserLamp is the lamp of sipgate user userID from calls (any calls: those
// that do not concern the user are left out). sipgate tells neither hold
// nor registration: busy with an answered call, else ringing with a
// ringing one, else idle.
func UserLamp(userID string, calls []Call) string {
	var answered, ringing int
	for _, c := range calls {
		if !ConcernsUser(c, userID) {
			continue
		}
		if c.State == StateAnswered {
			answered++
		} else {
			ringing++
		}
	}
	return UserLampOf(answered, ringing)
}

// UserLampOf is UserLamp from the counts of the user's live calls:
// answered and ringing.
func UserLampOf(answered, ringing int) string {
	switch {
	case answered > 0:
		return LampBusy
	case ringing > 0:
		return LampRinging
	}
	return LampIdle
}
