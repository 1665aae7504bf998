package main

// Every metric the service registers, in one place. Each function adds
// one part's metrics to m; a nil m (METRICS_ENABLED=false) takes none.
// The HTTP and event metrics are the handlers' own (metrics.Metrics).

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/callstate/callstate/handlers"
	"github.com/callstate/callstate/metrics"
	"github.com/callstate/callstate/sip/presence"
	"github.com/callstate/callstate/sip/watch"
	"github.com/callstate/callstate/spool"
	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/webhook"
)

// registerServiceMetrics adds the build's, the spool's and the event
// writers' metrics.
func registerServiceMetrics(m *metrics.Metrics, sp *spool.Spool, st *store.Store) {
	m.BuildInfo(strings.TrimSuffix(version(), " "+runtime.Version()), runtime.Version())
	m.GaugeFunc("callstate_spool_events", "Events waiting in the local spool for the database.",
		func() float64 { return float64(sp.Stats().Records) })
	m.GaugeFunc("callstate_spool_bytes", "Size of the local spool.",
		func() float64 { return float64(sp.Stats().Bytes) })
	m.CounterFunc("callstate_spool_rejected_total", "Spooled events the database refused for good.",
		func() float64 { return float64(sp.Stats().Rejected) })
	m.CounterFunc("callstate_database_errors_total", "Database writes that failed and went to the spool.",
		func() float64 { return float64(sp.Stats().DBErrors) })
	m.CounterFunc("callstate_spool_appended_total", "Events accepted into the local spool instead of straight into the database.",
		func() float64 { return float64(sp.Stats().Spooled) })
	m.CounterFunc("callstate_spool_kept_total", "Events of NOTIFYs kept in the local spool before the answer, applied to the database from there.",
		func() float64 { return float64(sp.Stats().Kept) })
	m.CounterFunc("callstate_spool_drained_total", "Spooled events applied to the database.",
		func() float64 { return float64(sp.Stats().Drained) })
	m.CounterFunc("callstate_spool_refused_total", "Events the spool could not take: full, or its disk failed.",
		func() float64 { return float64(sp.Stats().Refused) })
	m.CounterFunc("callstate_spool_write_errors_total", "Appends to the spool that failed on the disk.",
		func() float64 { return float64(sp.Stats().WriteErrors) })
	m.CounterFunc("callstate_database_transactions_total", "Transactions of events committed by this instance (events_written over this: events a commit).",
		func() float64 { return float64(st.WriteStats().Transactions) })
	m.CounterFunc("callstate_database_events_written_total", "Events written in those transactions, repeats included.",
		func() float64 { return float64(st.WriteStats().Events) })
	m.GaugeFunc("callstate_database_up", "1 while events go straight to the database, 0 while they go to the spool.",
		func() float64 {
			if sp.Stats().StoreDown {
				return 0
			}
			return 1
		})
}

// registerStreamMetrics adds the live stream's metrics.
func registerStreamMetrics(m *metrics.Metrics, stream *handlers.Stream) {
	m.GaugeFunc("callstate_stream_clients", "Live stream clients connected to this instance.",
		func() float64 { return float64(stream.Clients()) })
	m.CounterFunc("callstate_stream_events_total", "Events handed to live stream clients (one event to ten clients counts ten).",
		func() float64 { n, _ := stream.Sent(); return float64(n) })
	m.CounterFunc("callstate_stream_dropped_clients_total", "Live stream clients dropped for falling behind.",
		func() float64 { _, n := stream.Sent(); return float64(n) })
}

// registerSIPMetrics adds the PBX subscriber's metrics.
func registerSIPMetrics(m *metrics.Metrics, sub *watch.Subscriber) {
	m.GaugeFunc("callstate_sip_extensions_watched", "Extensions this instance watches (holds a lease on).",
		func() float64 { return float64(sub.Stats().Watched) })
	m.GaugeFunc("callstate_sip_subscriptions_active", "Subscriptions the PBX has granted and not ended.",
		func() float64 { return float64(sub.Stats().Active) })
	m.CounterFunc("callstate_sip_stray_requests_total", "SIP requests that belonged to no subscription (answered 481).",
		func() float64 { return float64(sub.Stats().Stray) })
	m.CounterFunc("callstate_sip_notifies_answered_early_total", "NOTIFYs answered 200 before their changes were on the spool's disk, which took longer than SIP_NOTIFY_ANSWER_WITHIN.",
		func() float64 { return float64(sub.Stats().AnsweredEarly) })
}

// registerAgentMetrics adds the presence agent's metrics.
func registerAgentMetrics(m *metrics.Metrics, a *presence.Agent) {
	m.GaugeFunc("callstate_agent_subscriptions", "Subscriptions phones hold with the presence agent of this instance.",
		func() float64 { return float64(a.Stats().Subscriptions) })
	m.CounterFunc("callstate_agent_notifies_total", "NOTIFYs of the presence agent answered 2xx.",
		func() float64 { return float64(a.Stats().Notifies) })
	m.CounterFunc("callstate_agent_notify_errors_total", "NOTIFYs of the presence agent not answered, or answered with an error.",
		func() float64 { return float64(a.Stats().NotifyErrors) })
	m.CounterFunc("callstate_agent_refused_total", "SUBSCRIBEs the presence agent answered with an error.",
		func() float64 { return float64(a.Stats().Refused) })
	m.GaugeFunc("callstate_agent_feed_id", "The feed id up to which the presence agent of this instance has applied the lamps (compare the feed's head).",
		func() float64 { return float64(a.Stats().FeedID) })
}

// registerRoutingMetrics adds the routing rules' metrics.
func registerRoutingMetrics(m *metrics.Metrics, b *ruleBook) {
	m.GaugeFunc("callstate_routing_rules", "Routing rules in force (menus' included).",
		func() float64 { return float64(b.Rules().Len()) })
}

// registerWebhookMetrics adds the webhooks' delivery metrics.
func registerWebhookMetrics(m *metrics.Metrics, s *webhook.Sender) {
	m.CounterVecFunc("callstate_webhook_deliveries_total", "Webhook tries by endpoint and outcome (delivered, failed) on this instance.",
		[]string{"endpoint", "outcome"}, func(emit func(value float64, labels ...string)) {
			for _, id := range s.Endpoints() {
				st := s.Stats(id)
				e := fmt.Sprint(id)
				emit(float64(st.Delivered.Load()), e, "delivered")
				emit(float64(st.Failed.Load()), e, "failed")
			}
		})
	m.CounterVecFunc("callstate_webhook_disabled_total", "Webhook endpoints disabled by this instance (410 Gone, or a message failing every try), by endpoint.",
		[]string{"endpoint"}, func(emit func(value float64, labels ...string)) {
			for _, id := range s.Endpoints() {
				emit(float64(s.Stats(id).Disabled.Load()), fmt.Sprint(id))
			}
		})
}

// registerReconcileMetrics adds the reconciler's metrics.
func registerReconcileMetrics(m *metrics.Metrics, r *reconciler) {
	m.GaugeFunc("callstate_reconcile_last_success_timestamp_seconds",
		"When reconciliation with sipgate's record last succeeded, on any instance (Unix seconds); the start of this instance before the first round.",
		func() float64 { return float64(r.lastSuccess.Load()) / 1e9 })
	for _, c := range []struct {
		name, help string
		n          *atomic.Int64
	}{
		{"callstate_reconcile_calls_ended_total", "Calls whose lost end reconciliation filled (from sipgate's history or its live calls).", &r.ended},
		{"callstate_reconcile_calls_created_total", "Calls whose webhooks never came, learned from sipgate's history.", &r.created},
		{"callstate_reconcile_calls_disagreeing_total", "Calls whose history entry contradicts their webhooks (the webhooks' account stands).", &r.disagreeing},
		{"callstate_reconcile_entries_unmatched_total", "History entries that could not be matched to a call.", &r.unmatched},
		{"callstate_reconcile_failures_total", "Reconciliation rounds that failed (sipgate unreachable, a token refused, the database).", &r.failures},
	} {
		m.CounterFunc(c.name, c.help, func() float64 { return float64(c.n.Load()) })
	}
	m.CounterFunc("callstate_reconcile_requests_total", "Requests made to sipgate's REST API.", func() float64 { return float64(r.api.Requests()) })
}
