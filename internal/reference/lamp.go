package reference

import "github.com/callstate/callstate"

// The lamp of a sipgate user, as the user_lamp view computes it.

// ConcernsUser reports whether the sipgate call c lights the lamp of user
// id userID: it is live and its extension is the user's (pinned to who
// answered), or it rings and is offered to the user.
func ConcernsUser(c callstate.Call, userID string) bool {
	if c.Source != callstate.SourceSipgate || !c.Active() || userID == "" {
		return false
	}
	if c.Extension == userID {
		return true
	}
	if c.State == callstate.StateRinging {
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
func UserLamp(userID string, calls []callstate.Call) string {
	var answered, ringing int
	for _, c := range calls {
		if !ConcernsUser(c, userID) {
			continue
		}
		if c.State == callstate.StateAnswered {
			answered++
		} else {
			ringing++
		}
	}
	switch {
	case answered > 0:
		return callstate.LampBusy
	case ringing > 0:
		return callstate.LampRinging
	}
	return callstate.LampIdle
}
