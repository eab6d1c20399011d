package terminator

import (
	"encoding/json"
	"html/template"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"

	"github.com/terminator-gw/terminator/nanobus"
)

// Status is what the admin endpoints show: routes, peers and counters.
type Status struct {
	Ready    bool                           `json:"ready"`
	Reason   string                         `json:"reason,omitempty"`
	Waiting  int64                          `json:"waiting"`
	Routes   []RouteStatus                  `json:"routes"`
	Services map[string][]nanobus.PeerState `json:"services"`
	HTTP     map[string]uint64              `json:"http"`
	Bus      nanobus.Stats                  `json:"bus"`
}

// RouteStatus is a route with its response counts by status class.
type RouteStatus struct {
	Route
	Timeout   string            `json:"timeout"`
	Responses map[string]uint64 `json:"responses"`
}

// Status returns a snapshot for the admin endpoints.
func (s *Server) Status() Status {
	st := Status{Waiting: s.waiting.Load(), Services: map[string][]nanobus.PeerState{}, Bus: s.node.Stats()}
	if err := s.Ready(); err != nil {
		st.Reason = err.Error()
	} else {
		st.Ready = true
	}
	for _, e := range s.router.entries() {
		rs := RouteStatus{Route: e.Route, Timeout: e.timeout.String(), Responses: map[string]uint64{}}
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
	slices.SortFunc(st.Routes, func(a, b RouteStatus) int { return strings.Compare(a.Key(), b.Key()) })
	c := &s.counts
	st.HTTP = map[string]uint64{
		"overloaded": c.overloaded.Load(), "no_route": c.noRoute.Load(), "header_too_large": c.headerTooLarge.Load(),
		"body_too_large": c.bodyTooLarge.Load(), "malformed": c.malformed.Load(), "read_timeouts": c.timeouts.Load(),
	}
	return st
}

func (s *Server) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Status())
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = statusPage.Execute(w, s.Status())
	})
	return mux
}

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>terminator</title>
<meta http-equiv="refresh" content="5">
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.bad{color:#b00}.ok{color:#070}</style></head>
<body><h1>terminator</h1>
<p>{{if .Ready}}<b class="ok">ready</b>{{else}}<b class="bad">not ready: {{.Reason}}</b>{{end}}
· {{.Waiting}} requests waiting for replies · <a href="status.json">status.json</a> · <a href="debug/pprof/">pprof</a></p>
<h2>Routes</h2>
<table><tr><th>route</th><th>service</th><th>timeout</th><th>responses</th></tr>
{{range .Routes}}<tr><td>{{.Method}} {{.Pattern}}</td><td>{{.Service}}</td><td>{{.Timeout}}</td><td>{{range $k, $v := .Responses}}{{$k}}: {{$v}} {{end}}</td></tr>
{{else}}<tr><td colspan="4">no routes announced yet</td></tr>{{end}}</table>
<h2>Peers</h2>
<table><tr><th>service</th><th>address</th><th>weight</th><th>state</th><th>in flight</th></tr>
{{range $svc, $peers := .Services}}{{range $peers}}<tr><td>{{$svc}}</td><td>{{.Addr}}</td><td>{{.Weight}}</td>
<td>{{if .Ready}}<span class="ok">connected</span>{{else}}<span class="bad">down</span>{{end}}</td><td>{{.InFlight}}</td></tr>
{{else}}<tr><td>{{$svc}}</td><td colspan="4" class="bad">no instance</td></tr>{{end}}{{end}}</table>
<h2>Counters</h2>
<table>{{range $k, $v := .HTTP}}<tr><td>http {{$k}}</td><td>{{$v}}</td></tr>{{end}}
<tr><td>bus calls</td><td>{{.Bus.Calls}}</td></tr><tr><td>bus replies</td><td>{{.Bus.Replies}}</td></tr>
<tr><td>bus busy</td><td>{{.Bus.Busy}}</td></tr><tr><td>bus no peer</td><td>{{.Bus.NoPeer}}</td></tr>
<tr><td>bus timeouts</td><td>{{.Bus.Timeouts}}</td></tr><tr><td>bus peer lost</td><td>{{.Bus.PeerLost}}</td></tr>
<tr><td>bus retries</td><td>{{.Bus.Retries}}</td></tr><tr><td>late / stale / unknown replies</td><td>{{.Bus.LateReplies}} / {{.Bus.StaleReplies}} / {{.Bus.UnknownReplies}}</td></tr>
<tr><td>malformed frames</td><td>{{.Bus.Malformed}}</td></tr></table>
</body></html>
`))
