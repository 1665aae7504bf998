package metrics

import "github.com/prometheus/client_golang/prometheus"

// CounterVecFunc registers counters with labels whose values f emits,
// each with its label values, when scraped.
func (m *Metrics) CounterVecFunc(name, help string, labels []string, f func(emit func(value float64, labelValues ...string))) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&funcVec{desc: prometheus.NewDesc(name, help, labels, nil), f: f})
}

type funcVec struct {
	desc *prometheus.Desc
	f    func(emit func(value float64, labelValues ...string))
}

func (c *funcVec) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *funcVec) Collect(ch chan<- prometheus.Metric) {
	c.f(func(v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, v, lv...)
	})
}
