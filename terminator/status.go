package terminator

import (
	"html/template"
	"slices"
	"strings"

	"github.com/terminator-gw/terminator/nanobus/histogram"
	"github.com/terminator-gw/terminator/nanobus/limit"
	"github.com/terminator-gw/terminator/nanobus/report"
)

// Status is what the admin endpoints show of the front: routes, the
// instances of their services, and counters. (The bus node's own numbers
// are shown beside it.)
type Status struct {
	Waiting      int                           `json:"waiting"`                 // requests waiting for replies now
	Limit        int                           `json:"limit"`                   // how many may wait (adaptive unless -adaptive-limit=false)
	Queued       int                           `json:"queued"`                  // requests over the limit waiting for a turn now
	Admission    string                        `json:"admission"`               // how they wait: codel or fifo
	LimitHistory []limit.Point                 `json:"limit_history,omitempty"` // the limit over the last minutes
	Routes       []RouteStatus                 `json:"routes"`
	Services     map[string][]report.PeerState `json:"services"`
	HTTP         map[string]uint64             `json:"http"`
	Variants     []VariantStatus               `json:"variants,omitempty"` // A/B experiments' responses per variant
}

// RouteStatus is a route with its response counts by status class.
type RouteStatus struct {
	Route
	Timeout   string            `json:"timeout"`
	Responses map[string]uint64 `json:"responses"`
	// Cancelled counts calls cancelled because the client went away while
	// they were parked: nothing was sent (nginx logs these as 499).
	Cancelled uint64 `json:"cancelled"`
	// Latency is the time from admission to the response, of the requests
	// answered (for /metrics: the quantiles are what people read).
	Latency histogram.Histogram `json:"-"`
}

// Status returns a snapshot for the admin endpoints.
func (s *Server) Status() Status {
	st := Status{Waiting: s.limiter.InFlight(), Limit: s.limiter.Limit(), Queued: s.limiter.Waiting(), Admission: s.cfg.Admission.String(), LimitHistory: s.limiter.History(), Services: map[string][]report.PeerState{}, Variants: s.variantStatus()}
	for _, e := range s.router.entries() {
		rs := RouteStatus{Route: e.Route, Timeout: e.timeout.String(), Responses: map[string]uint64{}, Cancelled: e.stats.cancelled.Load(),
			Latency: e.stats.latency.Snapshot()}
		for class := 1; class <= 5; class++ {
			if n := e.stats.classes[class].Load(); n > 0 {
				rs.Responses[strings.TrimPrefix(classTags[class], "status:")] = n
			}
		}
		st.Routes = append(st.Routes, rs)
		if _, ok := st.Services[e.Service]; !ok {
			st.Services[e.Service] = s.node.Instances(e.Service)
		}
	}
	slices.SortFunc(st.Routes, func(a, b RouteStatus) int { return strings.Compare(a.Name, b.Name) })
	c := &s.counts
	st.HTTP = map[string]uint64{
		"overloaded": c.overloaded.Load(), "no_route": c.noRoute.Load(), "header_too_large": c.headerTooLarge.Load(),
		"body_too_large": c.bodyTooLarge.Load(), "malformed": c.malformed.Load(), "read_timeouts": c.timeouts.Load(),
		"body_budget": c.bodyBudget.Load(), "conns_refused": c.connsRefused.Load(), "bad_path": c.badPath.Load(),
		// access log lines written, and sampled out (over -access-log-rate)
		"access_log_written": s.accessLog.written.Load(), "access_log_sampled_out": s.accessLog.sampled.Refused(),
		"method_not_allowed": c.badMethod.Load(), "preflights": c.preflights.Load(),
		// gauges: body bytes reserved, and connections open, now
		"body_bytes": uint64(max(s.bodyBytes.Load(), 0)), "conns": uint64(max(s.conns.Load(), 0)),
	}
	return st
}

// StatusPage shows a Status as part of the admin status page.
var StatusPage = template.Must(template.New("front").Parse(`
<h2>Routes</h2>
<p>{{.Waiting}} requests waiting for replies; limit {{.Limit}}{{with .LimitHistory}} (the last minutes:
{{range .}}{{.Limit}} {{end}}){{end}}</p>
<table><tr><th>route</th><th>service</th><th>timeout</th><th>responses</th><th title="the client went away while its call was parked: cancelled, nothing sent (nginx's 499)">cancelled (499)</th></tr>
{{range .Routes}}<tr><td>{{.Method}} {{.Pattern}}</td><td>{{.Service}}</td><td>{{.Timeout}}</td><td>{{range $k, $v := .Responses}}{{$k}}: {{$v}} {{end}}</td><td>{{.Cancelled}}</td></tr>
{{else}}<tr><td colspan="5">no routes announced yet</td></tr>{{end}}</table>
<h2>Instances</h2>
<table><tr><th>service</th><th>address</th><th>version</th><th>weight</th><th>state</th><th>in flight</th></tr>
{{range $svc, $peers := .Services}}{{range $peers}}<tr><td>{{$svc}}</td><td>{{.Addr}}</td><td>{{.Version}}</td><td>{{.Weight}}</td>
<td>{{if .Ready}}<span class="ok">connected</span>{{else}}<span class="bad">down</span>{{end}}</td><td>{{.InFlight}}</td></tr>
{{else}}<tr><td>{{$svc}}</td><td colspan="5" class="bad">no instance</td></tr>{{end}}{{end}}</table>
{{if .Variants}}<h2>Experiments</h2>
<table><tr><th>experiment</th><th>service</th><th>variant</th><th>version</th><th>responses</th></tr>
{{range .Variants}}<tr><td>{{.Experiment}}</td><td>{{.Service}}</td><td>{{.Variant}}</td><td>{{.Version}}</td><td>{{range $k, $v := .Responses}}{{$k}}: {{$v}} {{end}}</td></tr>
{{end}}</table>{{end}}
<h2>HTTP</h2>
<table>{{range $k, $v := .HTTP}}<tr><td>{{$k}}</td><td>{{$v}}</td></tr>{{end}}</table>
`))
