package role

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"slices"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/nanobus/limit"
	"github.com/terminator-gw/terminator/nanobus/policy"
	"github.com/terminator-gw/terminator/nanobus/report"
)

// The status page: /status.json and its HTML view on the admin listener,
// made of the sections the process's parts add (Admin.Section), among
// them each bus node's.

// Section is one part of a process's status: its numbers, shown under Name
// in /status.json, and a template that shows them on the status page
// (executed with what Status returns).
type Section struct {
	Name   string
	Status func() any
	Page   *template.Template
}

// status is /status.json: readiness, then each section by name.
func (a *Admin) status(ctx context.Context) map[string]any {
	out := map[string]any{"ready": true}
	if err := a.Ready(ctx); err != nil {
		out["ready"], out["reason"] = false, err.Error()
	}
	a.mu.Lock()
	sections := append([]Section(nil), a.sections...)
	a.mu.Unlock()
	for _, s := range sections {
		out[s.Name] = s.Status()
	}
	return out
}

func (a *Admin) statusJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(a.status(r.Context()))
}

func (a *Admin) statusPage(w http.ResponseWriter, r *http.Request) {
	ready := a.Ready(r.Context())
	a.mu.Lock()
	sections := append([]Section(nil), a.sections...)
	a.mu.Unlock()
	// The front first: in "all" it would come after every service.
	slices.SortStableFunc(sections, func(x, y Section) int { return frontRank(x.Name) - frontRank(y.Name) })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageHead.Execute(w, ready)
	for _, s := range sections {
		fmt.Fprintf(w, "<section><h1>%s</h1>\n", template.HTMLEscapeString(s.Name))
		v := s.Status()
		if s.Page != nil {
			if err := s.Page.Execute(w, v); err != nil {
				fmt.Fprintf(w, "<p class=bad>%s</p>", template.HTMLEscapeString(err.Error()))
			}
		} else {
			b, _ := json.MarshalIndent(v, "", "  ")
			fmt.Fprintf(w, "<pre>%s</pre>", template.HTMLEscapeString(string(b)))
		}
		fmt.Fprintln(w, "</section>")
	}
	fmt.Fprintln(w, "</body></html>")
}

func frontRank(section string) int {
	switch section {
	case "front":
		return 0
	case "node:terminator":
		return 1
	}
	return 2
}

var pageHead = template.Must(template.New("head").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>terminator</title>
<meta http-equiv="refresh" content="5">
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.bad{color:#b00}.ok{color:#070}
section{margin-bottom:2em}h1{font-size:1.4em;border-bottom:1px solid #ccc}</style></head>
<body><p>{{if .}}<b class="bad">not ready: {{.}}</b>{{else}}<b class="ok">ready</b>{{end}}
· <a href="../">console</a> · <a href="../status.json">status.json</a> · <a href="../metrics">metrics</a> · <a href="../debug/pprof/">pprof</a></p>
`))

// nodeSection shows a bus node: the routes it serves with their numbers,
// the instances it calls, its counters, and its limit on handlers (lim,
// nil without one), and its domain events (ev, nil for a node without: the
// front; shown when it publishes or subscribes).
func nodeSection(n *nanobus.Node, lim *limit.Limiter, w *discovery.Watcher, reg *discovery.Registrar, ev *events.Bus) Section {
	name := "node:" + n.Service()
	return Section{Name: name, Page: nodePage, Status: func() any {
		st := nodeStatus{Service: n.Service(), Version: n.Version(), Addr: n.Addr(), Routes: n.RouteStats(),
			Peers: map[string][]report.PeerState{}, Policies: map[string]*policy.Policy{}, Ghosts: n.GhostStats(),
			Hedges: n.HedgeStats(), Bus: n.Stats(), Etcd: w.Stats(), Registered: "yes"}
		if err := reg.Registered(); err != nil {
			st.Registered = err.Error()
		}
		if lim != nil {
			st.Limit, st.LimitHistory = lim.Limit(), lim.History()
		}
		for _, s := range n.Services() {
			st.Peers[s] = n.Instances(s)
			if p := n.Policy(s); p != nil {
				st.Policies[s] = p
			}
		}
		if ev != nil {
			if d := ev.Declaration(); len(d.Publishes)+len(d.Subscribes) > 0 {
				es := ev.Stats()
				st.Events = &es
			}
		}
		for i := range st.Ghosts {
			st.Ghosts[i].LiveLatency, st.Ghosts[i].GhostLatency = nil, nil // the quantiles say it
		}
		return st
	}}
}

type nodeStatus struct {
	Service string                        `json:"service"`
	Version string                        `json:"version"`
	Addr    string                        `json:"addr"`
	Routes  []report.RouteStats           `json:"routes"`
	Peers   map[string][]report.PeerState `json:"peers"`
	// The rollout policies this node applies to its calls, and its ghost
	// comparisons (see terminator rollout show for all callers at once).
	Policies map[string]*policy.Policy `json:"policies,omitempty"`
	Ghosts   []report.GhostStats       `json:"ghosts,omitempty"`
	// The hedged routes this node calls, and how hedging went.
	Hedges []report.HedgeStats `json:"hedges,omitempty"`
	Bus    nanobus.Stats       `json:"bus"`
	// Etcd is how the node's view of etcd is: stale while etcd is
	// unreachable (the node serves from what it knew).
	Etcd       discovery.WatchStats `json:"etcd"`
	Registered string               `json:"registered"` // "yes", or why not
	// The adaptive limit on handlers running at once, now and over time.
	Limit        int           `json:"limit,omitempty"`
	LimitHistory []limit.Point `json:"limit_history,omitempty"`
	// Events is the service's domain events: what it published and
	// applied, and per subscription whether this instance reads it, where
	// it is, and how many events wait in the hospital (terminator
	// hospital list shows them).
	Events *events.Stats `json:"events,omitempty"`
}

var nodePage = template.Must(template.New("node").Parse(`
<p>{{if .Etcd.Stale}}<b class="bad">etcd unreachable since {{.Etcd.LastSeen}}: serving from the membership known then</b><br>{{end}}
registered: {{.Registered}} · {{.Etcd.Instances}} instances known · {{.Etcd.Outages}} etcd outages</p>
<p>{{.Service}} {{.Version}} on {{.Addr}}{{if .Limit}}; handlers limited to {{.Limit}} at once{{with .LimitHistory}} (the last minutes: {{range .}}{{.Limit}} {{end}}){{end}}{{end}}</p>
{{if .Routes}}<table><tr><th>route</th><th>requests</th><th>5xx</th><th>4xx</th><th>cancelled</th><th>avg</th><th>p50</th><th>p99</th><th>last error</th></tr>
{{range .Routes}}<tr><td>{{.Route}}</td><td>{{.Requests}}</td><td>{{.Errors}}</td><td>{{.ClientErrors}}</td><td>{{.Cancelled}}</td><td>{{.AverageTime}}</td><td>{{.P50}}</td><td>{{.P99}}</td><td>{{.LastError}}</td></tr>
{{end}}</table>{{end}}
{{if .Peers}}<table><tr><th>calls to</th><th>address</th><th>version</th><th>state</th><th>in flight</th></tr>
{{range $svc, $peers := .Peers}}{{range $peers}}<tr><td>{{$svc}}</td><td>{{.Addr}}</td><td>{{.Version}}</td>
<td>{{if .Ready}}<span class="ok">connected</span>{{else}}<span class="bad">down</span>{{end}}</td><td>{{.InFlight}}</td></tr>
{{end}}{{end}}</table>{{end}}
{{if .Hedges}}<table><tr><th>hedged route</th><th>calls</th><th>copies sent</th><th>copies first</th><th>throttled</th><th>p95</th></tr>
{{range .Hedges}}<tr><td>{{.Service}} {{.Route}}</td><td>{{.Calls}}</td><td>{{.Hedged}}</td><td>{{.Won}}</td><td>{{.Throttled}}</td><td>{{.P95}}</td></tr>
{{end}}</table>{{end}}
{{if .Ghosts}}<table><tr><th>ghosted route</th><th>ghosted</th><th>matched</th><th>differing</th><th>errors</th><th>dropped</th><th>pending</th><th>live p50 / p99</th><th>ghost p50 / p99</th></tr>
{{range .Ghosts}}<tr><td>{{.Service}} {{.Route}}</td><td>{{.Ghosted}}</td><td>{{.Matched}}</td><td>{{.Differing}}</td><td>{{.Errors}}</td><td>{{.Dropped}}</td><td>{{.Pending}}</td>
<td>{{.LiveP50}} / {{.LiveP99}}</td><td>{{.GhostP50}} / {{.GhostP99}}</td></tr>
{{range .Diffs}}<tr><td colspan="9">{{.At.Format "15:04:05"}} {{.What}} differs · live: {{.Live.Status}} <code>{{.Live.Body}}</code> · ghost: {{.Ghost.Status}} <code>{{.Ghost.Body}}</code></td></tr>
{{end}}{{end}}</table>{{end}}
{{with .Events}}<table><tr><th>events published</th><th>delivered</th><th>duplicates</th><th>failed</th><th>parked</th><th>healed</th></tr>
<tr><td>{{.Published}}</td><td>{{.Delivered}}</td><td>{{.Duplicates}}</td><td>{{.Failed}}</td><td>{{.Parked}}</td><td>{{.Healed}}</td></tr></table>
{{if .Subscriptions}}<table><tr><th>subscription (group / from / topic)</th><th>reading</th><th>position</th><th>lag</th><th>in the hospital</th></tr>
{{range .Subscriptions}}<tr><td>{{.Group}} / {{.From}} / {{.Topic}}</td><td>{{if .Reading}}<span class="ok">yes</span>{{else}}standing by{{end}}</td><td>{{.Position}}</td><td>{{.Lag}}</td>
<td>{{if .Patients}}<b class="bad">{{.Patients}}</b>{{else}}0{{end}}</td></tr>
{{end}}</table>{{end}}{{end}}
<table>
<tr><td>calls / replies</td><td>{{.Bus.Calls}} / {{.Bus.Replies}}</td></tr>
<tr><td>busy / no peer / timeouts / peer lost / retries / retries throttled</td><td>{{.Bus.Busy}} / {{.Bus.NoPeer}} / {{.Bus.Timeouts}} / {{.Bus.PeerLost}} / {{.Bus.Retries}} / {{.Bus.Throttled}}</td></tr>
<tr><td>calls cancelled / cancels sent; cancels received / handlers cancelled</td><td>{{.Bus.Cancelled}} / {{.Bus.CancelsSent}}; {{.Bus.Cancels}} / {{.Bus.HandlersCancelled}}</td></tr>
<tr><td>late / stale / unknown replies</td><td>{{.Bus.LateReplies}} / {{.Bus.StaleReplies}} / {{.Bus.UnknownReplies}}</td></tr>
<tr><td>requests / handled / handler errors</td><td>{{.Bus.Requests}} / {{.Bus.Handled}} / {{.Bus.HandlerErrors}}</td></tr>
<tr><td>expired on arrival / in handler; overload; undeliverable</td><td>{{.Bus.ExpiredOnArrival}} / {{.Bus.ExpiredInHandler}}; {{.Bus.Overload}}; {{.Bus.Undeliverable}}</td></tr>
<tr><td title="lines about failed requests not written: over the node's rate">failure log lines dropped</td><td>{{.Bus.LogsDropped}}</td></tr>
<tr><td>malformed / misdirected / unknown-kind frames; plain peers refused</td><td>{{.Bus.Malformed}} / {{.Bus.Misdirected}} / {{.Bus.UnknownKinds}}; {{.Bus.PlainRefused}}</td></tr>
<tr><td>connections closed by limits: conns / frame timeout / idle / buffered</td><td>{{.Bus.ConnsRefused}} / {{.Bus.FrameTimeouts}} / {{.Bus.IdleClosed}} / {{.Bus.BufferRefused}}</td></tr>
<tr><td>connections refused for what they sent: frame too long / bad SP header / TLS handshake</td><td>{{.Bus.TooLong}} / {{.Bus.BadHeader}} / {{.Bus.TLSRefused}}</td></tr>
<tr><td>limits</td><td>frame {{.Bus.Limits.FrameTimeout}}, idle {{.Bus.Limits.IdleTimeout}}, {{.Bus.Limits.MaxConns}} conns, {{.Bus.Limits.MaxBuffered}} bytes buffered</td></tr>
</table>
`))
