package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/sip/watch"
	"github.com/callstate/callstate/spool"
	"github.com/callstate/callstate/store"
)

// readiness is /readyz's check: the spool can take events, the database
// answers, and, with the SIP subscriber on, the extensions this instance
// watches have a subscription up. Each answer says which.
type readiness struct {
	st  *store.Store
	sp  *spool.Spool
	sip func() watch.Stats // set by startSIP before the server starts
}

func (r *readiness) Ping(ctx context.Context) error {
	var errs []error
	if err := r.sp.Err(); err != nil {
		if errors.Is(err, spool.ErrFull) {
			errs = append(errs, &handlers.NotReady{Check: "spool", Reason: "spool full: only new calls are kept", Err: err})
		} else {
			errs = append(errs, &handlers.NotReady{Check: "spool", Reason: "spool cannot write to its disk", Err: err})
		}
	}
	if r.sp.Stats().StoreDown {
		errs = append(errs, &handlers.NotReady{Check: "database", Reason: "database unreachable: events are kept in the spool",
			Err: errors.New("a write failed; the spool probes the database until it answers")})
	} else if err := r.st.Ping(ctx); err != nil {
		errs = append(errs, &handlers.NotReady{Check: "database", Reason: "database unreachable", Err: err})
	}
	if r.sip != nil {
		if st := r.sip(); st.Watched > 0 && st.Active == 0 {
			errs = append(errs, &handlers.NotReady{Check: "sip", Reason: "no SIP subscription up",
				Err: fmt.Errorf("none of the %d watched extensions has a subscription up", st.Watched)})
		}
	}
	return errors.Join(errs...)
}
