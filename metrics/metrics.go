// Package metrics holds callstate's Prometheus metrics. The adapters record
// into a *Metrics; a nil *Metrics records nothing, so tests and tools can
// leave it out.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of an event, the "outcome" label of callstate_events_total.
const (
	OutcomeApplied   = "applied"   // stored (or spooled) and acknowledged
	OutcomeDuplicate = "duplicate" // seen before; acknowledged, nothing changed
	OutcomeRejected  = "rejected"  // bad input; answered 4xx
	OutcomeFailed    = "failed"    // could not be kept; answered 5xx, so the sender knows
	OutcomeShed      = "shed"      // refused under overload; answered 503
	OutcomeLost      = "lost"      // could not be kept, yet answered 2xx: a newCall gets its XML all the same, so that the call's later events still come
)

// Metrics are the service's collectors in their own registry.
type Metrics struct {
	reg      *prometheus.Registry
	events   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
	last     *prometheus.GaugeVec

	routed        *prometheus.CounterVec
	routeFailures *prometheus.CounterVec
	reloads       *prometheus.CounterVec

	wake *wakeMetrics
}

// New returns the metrics, registered with Go runtime and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		reg: reg,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstate_events_total",
			Help: "Events received, by source (sipgate, sip), type (newCall, answer, hangup, dtmf, dialog, presence) and outcome (applied, duplicate, rejected, failed, lost, shed).",
		}, []string{"source", "type", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callstate_http_request_duration_seconds",
			Help:    "HTTP request latency by route and status class.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstate_http_inflight_requests",
			Help: "HTTP requests being served, by class (webhook, api).",
		}, []string{"class"}),
	}
	m.last = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "callstate_last_event_timestamp_seconds",
		Help: "When the last event of a source was taken (applied or a repeat), in Unix seconds: a source that went quiet shows.",
	}, []string{"source"})
	m.routed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callstate_routing_decisions_total",
		Help: "newCalls and menu answers routed, by the rule that decided (\"\" when none matched and the default answer went out).",
	}, []string{"rule"})
	m.routeFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callstate_routing_failures_total",
		Help: "Routing that failed and was answered with the default answer, by reason (evaluation, menu_signature, menu_unknown).",
	}, []string{"reason"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callstate_routing_reloads_total",
		Help: "Loads of ROUTING_FILE after the start, by outcome (ok; failed: the previous rules stay).",
	}, []string{"outcome"})
	reg.MustRegister(m.events, m.latency, m.inflight, m.last, m.routed, m.routeFailures, m.reloads)
	m.wake = newWakeMetrics(reg)
	return m
}

// BuildInfo registers callstate_build_info, 1 with the version as a label.
func (m *Metrics) BuildInfo(version, goVersion string) {
	if m == nil {
		return
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "callstate_build_info",
		Help: "1, with the build's version and Go version as labels.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version, goVersion).Set(1)
	m.reg.MustRegister(g)
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Event counts one event by source, type and outcome.
func (m *Metrics) Event(source, typ, outcome string) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(source, typ, outcome).Inc()
	if outcome == OutcomeApplied || outcome == OutcomeDuplicate {
		m.last.WithLabelValues(source).SetToCurrentTime()
	}
}

// Routed counts one routing decision by the rule that made it ("" for
// none).
func (m *Metrics) Routed(rule string) {
	if m == nil {
		return
	}
	m.routed.WithLabelValues(rule).Inc()
}

// Reasons of callstate_routing_failures_total.
const (
	RouteFailEvaluation = "evaluation"     // the rules gave no valid answer
	RouteFailSignature  = "menu_signature" // a menu's dtmf with a bad or missing signature
	RouteFailMenu       = "menu_unknown"   // a menu's dtmf for a menu the rules no longer have
)

// RouteFailed counts routing that failed and fell back to the default
// answer.
func (m *Metrics) RouteFailed(reason string) {
	if m == nil {
		return
	}
	m.routeFailures.WithLabelValues(reason).Inc()
}

// RoutingReload counts one load of the rules file after the start.
func (m *Metrics) RoutingReload(ok bool) {
	if m == nil {
		return
	}
	outcome := "ok"
	if !ok {
		outcome = "failed"
	}
	m.reloads.WithLabelValues(outcome).Inc()
}

// Request records one HTTP request's latency; code is the status code.
// Long-lived requests (the live stream) are not requests in this sense:
// leave them out.
func (m *Metrics) Request(route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.latency.WithLabelValues(route, statusClass(code)).Observe(d.Seconds())
}

// Inflight adds delta to the requests in flight of a class.
func (m *Metrics) Inflight(class string, delta float64) {
	if m == nil {
		return
	}
	m.inflight.WithLabelValues(class).Add(delta)
}

// GaugeFunc registers a gauge whose value f reads when scraped, e.g. the
// spool's depth or the subscriptions by state.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter whose value f reads when scraped.
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

func statusClass(code int) string {
	switch {
	case code >= 500:
		return "5xx"
	case code >= 400:
		return "4xx"
	case code >= 300:
		return "3xx"
	default:
		return "2xx"
	}
}
