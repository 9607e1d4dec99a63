package vsockproxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds a proxy's Prometheus collectors. Create it with NewMetrics
// on a registry you own and set it in Proxy.Metrics; a nil *Metrics counts
// nothing.
type Metrics struct {
	conns   *prometheus.CounterVec
	activeG prometheus.Gauge
	bytesV  *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg:
//
//	vsockproxy_connections_total{result}  forwarded, rejected (over MaxConns), dial_failed
//	vsockproxy_active_connections         connections being forwarded
//	vsockproxy_bytes_total{direction}     to_target, from_target
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vsockproxy_connections_total", Help: "Connections accepted by the forwarder, by result.",
		}, []string{"result"}),
		activeG: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vsockproxy_active_connections", Help: "Connections being forwarded.",
		}),
		bytesV: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vsockproxy_bytes_total", Help: "Bytes forwarded, by direction.",
		}, []string{"direction"}),
	}
	for _, c := range []prometheus.Collector{m.conns, m.activeG, m.bytesV} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("vsockproxy: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) count(result string) {
	if m != nil {
		m.conns.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) active(d float64) {
	if m != nil {
		m.activeG.Add(d)
	}
}

func (m *Metrics) bytes(direction string) prometheus.Counter {
	if m == nil {
		return nil
	}
	return m.bytesV.WithLabelValues(direction)
}
