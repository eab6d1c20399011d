package terminator

import (
	"testing"
	"time"
)

// Every request answered through a route is one sample of the route's
// latency histogram, which the status snapshot carries (for /metrics).
func TestRouteLatencyRecorded(t *testing.T) {
	s, driver := echoFront(t, Config{}, nil)
	request := driver()
	const n = 20
	for range n {
		request()
	}
	st := s.Status()
	if len(st.Routes) != 1 {
		t.Fatalf("routes %+v, want GET /echo alone", st.Routes)
	}
	r := st.Routes[0]
	if got := r.Latency.Count(); got != n || r.Responses["2xx"] != n {
		t.Errorf("GET /echo: %d latency samples, %d 2xx; want %d of each", got, r.Responses["2xx"], n)
	}
	if q := r.Latency.Quantile(1); q <= 0 || q > time.Minute {
		t.Errorf("GET /echo's slowest request took %v: want a positive, plausible time", q)
	}
}
