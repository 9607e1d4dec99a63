package nbd

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds per-export Prometheus collectors. Create it with
// NewMetrics on a registry you own and pass it in Options.Metrics.
type Metrics struct {
	requests     *prometheus.CounterVec
	errors       *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	bytesRead    *prometheus.CounterVec
	bytesWritten *prometheus.CounterVec
	conns        *prometheus.GaugeVec
	refused      *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg:
//
//	nbd_requests_total{export,op}            requests answered
//	nbd_request_errors_total{export,op}      requests answered with an error
//	nbd_request_duration_seconds{export,op}  time executing a request
//	nbd_read_bytes_total{export}             bytes sent to clients by READ
//	nbd_written_bytes_total{export}          bytes stored by WRITE
//	nbd_connections{export}                  connections in transmission
//	nbd_peer_refused_total{export}           asks by a peer the export is not bound to
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nbd_requests_total", Help: "NBD requests answered, by export and command.",
		}, []string{"export", "op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nbd_request_errors_total", Help: "NBD requests answered with an error, by export and command.",
		}, []string{"export", "op"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nbd_request_duration_seconds",
			Help:    "Time spent executing an NBD request (backend I/O, before the reply is sent).",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10), // 10µs .. 2.6s
		}, []string{"export", "op"}),
		bytesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nbd_read_bytes_total", Help: "Bytes returned by successful NBD reads.",
		}, []string{"export"}),
		bytesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nbd_written_bytes_total", Help: "Bytes stored by successful NBD writes.",
		}, []string{"export"}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nbd_connections", Help: "NBD connections in the transmission phase.",
		}, []string{"export"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nbd_peer_refused_total", Help: "Times a peer asked for an export bound to other vsock CIDs and was refused.",
		}, []string{"export"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.errors, m.latency, m.bytesRead, m.bytesWritten, m.conns, m.refused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("nbd: register metrics: %w", err)
		}
	}
	return m, nil
}

// exportMetrics caches one export's label lookups for the request path.
type exportMetrics struct {
	requests, errors  [len(commands)]prometheus.Counter
	latency           [len(commands)]prometheus.Observer
	bytesRead, bytesW prometheus.Counter
	conns             prometheus.Gauge
	refusals          prometheus.Counter
}

func (m *Metrics) forExport(name string) *exportMetrics {
	em := &exportMetrics{
		bytesRead: m.bytesRead.WithLabelValues(name),
		bytesW:    m.bytesWritten.WithLabelValues(name),
		conns:     m.conns.WithLabelValues(name),
		refusals:  m.refused.WithLabelValues(name),
	}
	for i, op := range commands {
		em.requests[i] = m.requests.WithLabelValues(name, op)
		em.errors[i] = m.errors.WithLabelValues(name, op)
		em.latency[i] = m.latency.WithLabelValues(name, op)
	}
	return em
}

// observe records one answered request; nil receivers record nothing.
func (em *exportMetrics) observe(op int, n int64, errno uint32, d time.Duration) {
	if em == nil {
		return
	}
	em.requests[op].Inc()
	if errno != 0 {
		em.errors[op].Inc()
		return
	}
	em.latency[op].Observe(d.Seconds())
	switch op {
	case 0:
		em.bytesRead.Add(float64(n))
	case 1:
		em.bytesW.Add(float64(n))
	}
}

func (em *exportMetrics) connected(delta float64) {
	if em != nil {
		em.conns.Add(delta)
	}
}

// refused counts one ask by a peer the export is not bound to.
func (em *exportMetrics) refused() {
	if em != nil {
		em.refusals.Inc()
	}
}
