package supervisor

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The enclave's states, as enclave_state's label and /healthz say them.
const (
	stateStarting = "starting"
	stateRunning  = "running"
	stateStopping = "stopping"
	stateStopped  = "stopped"
)

var states = []string{stateStarting, stateRunning, stateStopping, stateStopped}

// state is the enclave's state, exported as gauges and on /healthz.
type state struct {
	mu    sync.Mutex
	cur   string
	up    prometheus.Gauge
	gauge *prometheus.GaugeVec
}

func newState(reg prometheus.Registerer) (*state, error) {
	s := &state{
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "enclave_up",
			Help: "1 while the supervised enclave runs."}),
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "enclave_state",
			Help: "1 for the supervised enclave's current state."}, []string{"state"}),
	}
	for _, c := range []prometheus.Collector{s.up, s.gauge} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("supervisor: metrics: %w", err)
		}
	}
	s.set(stateStarting)
	return s, nil
}

func (s *state) set(st string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = st
	for _, x := range states {
		v := 0.0
		if x == st {
			v = 1
		}
		s.gauge.WithLabelValues(x).Set(v)
	}
	if st == stateRunning {
		s.up.Set(1)
	} else {
		s.up.Set(0)
	}
}

func (s *state) get() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// ServeHTTP answers /healthz: 200 while the enclave runs, 503 otherwise,
// with the state as the body.
func (s *state) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	st := s.get()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if st != stateRunning {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, st)
}
