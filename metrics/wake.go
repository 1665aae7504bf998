package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a push, the "outcome" label of callstate_wake_pushes_total.
const (
	PushSent      = "sent"      // the push service took it (2xx)
	PushGone      = "gone"      // 404 or 410: the subscription was removed
	PushThrottled = "throttled" // 429/503 with Retry-After, or sent within one
	PushFailed    = "failed"    // any other failure
)

// Outcomes of a held newCall answer, the "outcome" label of
// callstate_wake_holds_total.
const (
	HoldReady   = "ready"   // a device reported ready in time
	HoldTimeout = "timeout" // WAKE_WAIT passed
	HoldNone    = "none"    // nothing to wait for: no push went out, or another leg of the journey had it
	HoldGone    = "gone"    // sipgate went away while it was held
)

type wakeMetrics struct {
	pushes  *prometheus.CounterVec
	holds   *prometheus.CounterVec
	readies prometheus.Counter
	toReady prometheus.Histogram
}

func newWakeMetrics(reg *prometheus.Registry) *wakeMetrics {
	w := &wakeMetrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstate_wake_pushes_total",
			Help: "Web Push messages to devices, by kind (incoming, clear) and outcome (sent, gone, throttled, failed).",
		}, []string{"kind", "outcome"}),
		holds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstate_wake_holds_total",
			Help: "newCall answers held for a device to wake, by how the hold ended (ready, timeout, none, gone).",
		}, []string{"outcome"}),
		readies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callstate_wake_readies_total",
			Help: "Devices' ready reports taken by this instance.",
		}),
		toReady: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "callstate_wake_ready_seconds",
			Help:    "From a held newCall's arrival (its push going out) to the first device's ready, as the holding instance saw it.",
			Buckets: []float64{.05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 4},
		}),
	}
	reg.MustRegister(w.pushes, w.holds, w.readies, w.toReady)
	return w
}

// WakePush counts one push to one device by kind and outcome.
func (m *Metrics) WakePush(kind, outcome string) {
	if m == nil {
		return
	}
	m.wake.pushes.WithLabelValues(kind, outcome).Inc()
}

// WakeHold counts one held newCall answer by how the hold ended.
func (m *Metrics) WakeHold(outcome string) {
	if m == nil {
		return
	}
	m.wake.holds.WithLabelValues(outcome).Inc()
}

// WakeReadyReport counts one device's ready report.
func (m *Metrics) WakeReadyReport() {
	if m == nil {
		return
	}
	m.wake.readies.Inc()
}

// WakeTimeToReady records how long a held call waited for its ready.
func (m *Metrics) WakeTimeToReady(d time.Duration) {
	if m == nil {
		return
	}
	m.wake.toReady.Observe(d.Seconds())
}
