package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callstate/callstate/store/storetest"
)

// TestGroupCommit: DATABASE_BATCH_WAIT reaches the writers, and the
// metrics show events sharing commits. Forty newCalls coming 2 ms apart
// (each webhook on its own connection, as sipgate sends them) with a wait
// of 100 ms share a few transactions; written apart they would take
// twenty or more.
func TestGroupCommit(t *testing.T) {
	base, _, _ := startService(t, map[string]string{
		"DATABASE_URL": storetest.NewDatabase(t), "SIPGATE_VERIFY_SIGNATURE": "false",
		"DATABASE_BATCH_WAIT": "100ms",
	})
	read := func() (tx, events float64) {
		t.Helper()
		tx, ok, err := metric(base, "callstate_database_transactions_total", nil)
		if err != nil || !ok {
			t.Fatalf("callstate_database_transactions_total: %v, found %v", err, ok)
		}
		events, ok, err = metric(base, "callstate_database_events_written_total", nil)
		if err != nil || !ok {
			t.Fatalf("callstate_database_events_written_total: %v, found %v", err, ok)
		}
		return tx, events
	}
	tx0, ev0 := read()

	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			body := hook("newCall", fmt.Sprint("group-", i)).Encode()
			resp, err := http.Post(base+"/webhooks/sipgate", "application/x-www-form-urlencoded", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Errorf("newCall %d: %s", i, resp.Status)
			}
		})
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	tx1, ev1 := read()
	if ev1-ev0 != n {
		t.Fatalf("events written: %v, want %d", ev1-ev0, n)
	}
	t.Logf("%d newCalls in %v transactions", n, tx1-tx0)
	if tx := tx1 - tx0; tx > 10 {
		t.Errorf("%d newCalls coming 2 ms apart took %v transactions with DATABASE_BATCH_WAIT=100ms, want 10 at most", n, tx)
	}
}
