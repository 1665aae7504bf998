package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/callstate/callstate"
	"github.com/callstate/callstate/store"
)

// importContactsCommand runs "callstate contacts import FILE": the
// contacts of a CSV or vCard file into the phonebook, numbers read in
// PHONE_REGION. It reports what it added and what it skipped, and stores
// nothing when the file is not one it can read.
func importContactsCommand(ctx context.Context, path string, cfg Config, log *slog.Logger) error {
	plan, err := callstate.NewNumberPlan(cfg.Dashboard.PhoneRegion)
	if err != nil {
		return exitError{2, fmt.Errorf("PHONE_REGION: %w", err)}
	}
	f, err := os.Open(path)
	if err != nil {
		return exitError{2, fmt.Errorf("contacts import: %w", err)}
	}
	defer f.Close()
	file, err := callstate.ParseContacts(f, plan)
	for _, s := range file.Skipped {
		fmt.Fprintf(stdout, "skipped %s\n", s)
	}
	if err != nil {
		return exitError{2, fmt.Errorf("contacts import %s: %w; nothing imported", path, err)}
	}
	return withStore(ctx, cfg, log, "nothing imported", func(st *store.Store) error {
		_, n, err := st.AddContacts(ctx, file.Contacts)
		if err != nil {
			return fmt.Errorf("contacts import %s: %w; nothing imported", path, err)
		}
		fmt.Fprintf(stdout, "imported %s (%s, numbers read in %s): %d new, %d with new numbers, %d unchanged, %d skipped\n",
			path, file.Format, plan.Region(), n.Added, n.Updated, n.Unchanged, len(file.Skipped))
		return nil
	})
}
