package role

import (
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/terminator-gw/terminator/discovery"
	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/nanobus/events"
	"github.com/terminator-gw/terminator/nanobus/histogram"
	"github.com/terminator-gw/terminator/nanobus/limit"
	"github.com/terminator-gw/terminator/terminator"
)

// /metrics: the process's numbers for Prometheus, from one registry per
// admin listener (never the global default one: the embedded etcd
// registers its own there, and "all" runs several nodes in one process).
// Collectors read the snapshots status.json shows, at scrape time: the
// request path counts nothing twice. Each bus node's metrics carry its
// service as the "node" label ("terminator" for the front's node).

// newRegistry is an admin listener's registry: the Go runtime, the
// process, and the admin listener's own numbers.
func (a *Admin) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		adminCollector{a})
	return reg
}

// Collect adds c's metrics to /metrics.
func (a *Admin) Collect(c prometheus.Collector) error { return a.reg.Register(c) }

// metricsHandler serves the registry. A scrape is bounded: a few at once,
// each within the write timeout.
func (a *Admin) metricsHandler() http.Handler {
	h := promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             min(10*time.Second, a.cfg.WriteTimeout),
	})
	return a.scrapeAuthorized(h)
}

// scrapeAuthorized guards /metrics as status.json is guarded (open
// without an admin token), but lets the scrape token in as well, so that
// Prometheus need not hold the admin token.
func (a *Admin) scrapeAuthorized(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(a.token) > 0 || len(a.scrapeToken) > 0 {
			got := []byte(credential(r))
			admin := len(a.token) > 0 && subtle.ConstantTimeCompare(got, a.token) == 1
			scrape := len(a.scrapeToken) > 0 && subtle.ConstantTimeCompare(got, a.scrapeToken) == 1
			if !admin && !scrape {
				w.Header().Set("WWW-Authenticate", `Basic realm="terminator metrics"`)
				http.Error(w, "unauthorized: /metrics wants the admin token or the scrape token", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// latencyBounds are the "le" buckets of every latency histogram: round
// durations moved down to where a bucket of nanobus/histogram starts, so
// that each count is exact (0.00096 stands for 1ms).
var latencyBounds = func() []time.Duration {
	var out []time.Duration
	for _, d := range []time.Duration{100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
		time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
		50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second} {
		out = append(out, histogram.Start(d))
	}
	return out
}()

// histogramOf is h as a Prometheus histogram in seconds. The sum is
// estimated from the buckets (within 6.25%): the hot path makes one
// atomic add per sample, not two.
func histogramOf(desc *prometheus.Desc, h histogram.Histogram, labels ...string) prometheus.Metric {
	cum := h.Cumulative(latencyBounds)
	buckets := make(map[float64]uint64, len(cum))
	for i, b := range latencyBounds {
		buckets[b.Seconds()] = cum[i]
	}
	return prometheus.MustNewConstHistogram(desc, h.Count(), h.Sum().Seconds(), buckets, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// descs lists a collector's descriptions, for Describe.
type descs []*prometheus.Desc

func (ds *descs) add(name, help string, constLabels prometheus.Labels, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc(name, help, labels, constLabels)
	*ds = append(*ds, d)
	return d
}

func (ds descs) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range ds {
		ch <- d
	}
}

// adminCollector is the admin listener's own numbers.
type adminCollector struct{ a *Admin }

var (
	adminConnsDesc   = prometheus.NewDesc("terminator_admin_connections", "Admin connections open now.", nil, nil)
	adminRefusedDesc = prometheus.NewDesc("terminator_admin_connections_refused_total",
		"Admin connections closed at once for being over -admin-max-conns.", nil, nil)
)

func (c adminCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- adminConnsDesc
	ch <- adminRefusedDesc
}

func (c adminCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.Stats()
	gauge(ch, adminConnsDesc, float64(st.Conns))
	counter(ch, adminRefusedDesc, st.Refused)
}

// frontCollector is the front's numbers: per route, answers by status
// class and latency; what it refused before any bus work; admission.
type frontCollector struct {
	srv *terminator.Server
	descs
	requests, cancelled, latency, refused, preflights, accessLog, waiting, queued, limit, conns, bodyBytes, instances, variants *prometheus.Desc
}

func newFrontCollector(srv *terminator.Server) *frontCollector {
	c := &frontCollector{srv: srv}
	ds := &c.descs
	c.requests = ds.add("terminator_http_requests_total",
		"Requests the front passed to a service and answered, by route and status class (refusals before any bus work are terminator_http_refused_total).",
		nil, "route", "service", "class")
	c.cancelled = ds.add("terminator_http_cancelled_total",
		"Requests whose client went away while their call was parked: cancelled, nothing sent (nginx's 499).", nil, "route", "service")
	c.latency = ds.add("terminator_http_request_duration_seconds",
		"Time from admission to the response at the front, by route (buckets start where the recorder's do: 0.00096 stands for 1ms).",
		nil, "route", "service")
	c.refused = ds.add("terminator_http_refused_total",
		"Requests the front answered itself, before any bus work, by reason (overloaded: 503 by admission; no_route: 404; ...).", nil, "reason")
	c.preflights = ds.add("terminator_http_preflights_total", "CORS preflights (OPTIONS) the front answered itself.", nil)
	c.accessLog = ds.add("terminator_http_access_log_lines_total",
		"Access log lines, by outcome: written, or sampled_out (a request that went well, over -access-log-rate).", nil, "outcome")
	c.waiting = ds.add("terminator_http_waiting", "Requests admitted and waiting for their replies now.", nil)
	c.queued = ds.add("terminator_http_queued", "Requests over the admission limit waiting for a turn now (-admission; refused with 503 after their wait).", nil)
	c.limit = ds.add("terminator_http_limit", "Admission limit: how many requests may wait for replies at once (adaptive by default).", nil)
	c.conns = ds.add("terminator_http_connections", "Client connections open now.", nil)
	c.bodyBytes = ds.add("terminator_http_body_bytes", "Bytes of request bodies held now, against the body budget.", nil)
	c.instances = ds.add("terminator_http_service_instances",
		"Instances of each routed service, connected or not (a route with no connected instance answers 503).", nil, "service", "state")
	c.variants = ds.add("terminator_http_variant_requests_total", "Responses per A/B experiment variant, by status class.",
		nil, "service", "experiment", "variant", "version", "class")
	return c
}

func (c *frontCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.srv.Status()
	for _, r := range st.Routes {
		for class, n := range r.Responses {
			counter(ch, c.requests, n, r.Name, r.Service, class)
		}
		counter(ch, c.cancelled, r.Cancelled, r.Name, r.Service)
		ch <- histogramOf(c.latency, r.Latency, r.Name, r.Service)
	}
	for reason, n := range st.HTTP {
		switch reason {
		case "body_bytes":
			gauge(ch, c.bodyBytes, float64(n))
		case "conns":
			gauge(ch, c.conns, float64(n))
		case "preflights": // answered, not refused
			counter(ch, c.preflights, n)
		case "access_log_written", "access_log_sampled_out":
			counter(ch, c.accessLog, n, strings.TrimPrefix(reason, "access_log_"))
		default:
			counter(ch, c.refused, n, reason)
		}
	}
	gauge(ch, c.waiting, float64(st.Waiting))
	gauge(ch, c.queued, float64(st.Queued))
	gauge(ch, c.limit, float64(st.Limit))
	for svc, peers := range st.Services {
		up := 0
		for _, p := range peers {
			if p.Ready {
				up++
			}
		}
		gauge(ch, c.instances, float64(up), svc, "connected")
		gauge(ch, c.instances, float64(len(peers)-up), svc, "down")
	}
	for _, v := range st.Variants {
		for class, n := range v.Responses {
			counter(ch, c.variants, n, v.Service, v.Experiment, v.Variant, v.Version, class)
		}
	}
}

// nodeCollector is one bus node's numbers: calls and what failed them,
// every drop, the handlers it runs and their limit, the instances it
// calls, rollouts (weights, calls per version, ghosts, hedges), etcd, and
// its domain events with the hospital.
type nodeCollector struct {
	n   *nanobus.Node
	lim *limit.Limiter
	w   *discovery.Watcher
	reg *discovery.Registrar
	ev  *events.Bus
	descs
	info, stat, failures, dropped, closed, inFlight, serving, peers, handlerLimit            *prometheus.Desc
	routeRequests, routeErrors, routeCancelled, routeLatency                                 *prometheus.Desc
	instances, weight, versionCalls, versionErrors, versionLatency                           *prometheus.Desc
	ghosts, ghostPending, ghostLatency, hedgeCalls, hedgeCopies, hedgeWon, hedgeThrottled    *prometheus.Desc
	etcdStale, etcdOutages, etcdInstances, registered                                        *prometheus.Desc
	evPublished, evDelivered, evDuplicates, evFailed, evParked, evHealed, evGaps, evPruned   *prometheus.Desc
	evReplayed, evDiscarded                                                                  *prometheus.Desc
	evLag, evPatients, evReading                                                             *prometheus.Desc
	busCalls, busReplies, busRetries, busThrottled, busCancelled, busCancelsSent, busCancels *prometheus.Desc
	busRequests, busHandled, busHandlerErrors, busHandlersCancelled, busOverload             *prometheus.Desc
}

func newNodeCollector(n *nanobus.Node, lim *limit.Limiter, w *discovery.Watcher, reg *discovery.Registrar, ev *events.Bus) *nodeCollector {
	c := &nodeCollector{n: n, lim: lim, w: w, reg: reg, ev: ev}
	// The node's service is a constant label: every node of the process
	// describes its own metrics, which one registry then tells apart.
	node := prometheus.Labels{"node": n.Service()}
	ds := &c.descs
	c.info = ds.add("terminator_node_info", "A bus node of this process, with its version and bus address (always 1).", node, "version", "addr")
	c.busCalls = ds.add("terminator_bus_calls_total", "Requests this node sent.", node)
	c.busReplies = ds.add("terminator_bus_replies_total", "Replies matched to a waiting call.", node)
	c.failures = ds.add("terminator_bus_call_failures_total",
		"Calls that got no reply, by reason: busy, no_peer (refused at once), timeout, peer_lost, refused (an error frame).", node, "reason")
	c.busRetries = ds.add("terminator_bus_retries_total", "Idempotent calls retried on another instance after a lost peer.", node)
	c.busThrottled = ds.add("terminator_bus_retries_throttled_total", "Retries not made: the service's retry budget was spent.", node)
	c.busCancelled = ds.add("terminator_bus_calls_cancelled_total", "Calls given up because their context ended (the client left, a hedge lost).", node)
	c.busCancelsSent = ds.add("terminator_bus_cancels_sent_total", "Cancel frames sent to the instances of cancelled calls.", node)
	c.busCancels = ds.add("terminator_bus_cancels_received_total", "Cancel frames received.", node)
	c.busRequests = ds.add("terminator_bus_requests_total", "Requests this node received.", node)
	c.busHandled = ds.add("terminator_bus_handled_total", "Requests a handler answered.", node)
	c.busHandlerErrors = ds.add("terminator_bus_handler_errors_total", "Handlers that returned a non-status error or panicked (answered 500).", node)
	c.busHandlersCancelled = ds.add("terminator_bus_handlers_cancelled_total", "Handlers a cancel frame ended or spared from starting.", node)
	c.busOverload = ds.add("terminator_bus_overload_total", "Requests refused busy: the asker over its in-flight bound, or the node over its handler limit.", node)
	c.dropped = ds.add("terminator_bus_dropped_total",
		"Messages dropped, each counted once, by reason (late_reply, stale_reply, unknown_reply, misdirected, unknown_kind, malformed, expired_on_arrival, expired_in_handler, undeliverable, no_route).",
		node, "reason")
	c.closed = ds.add("terminator_bus_connections_closed_total",
		"Bus connections refused or closed by a limit or for what the peer sent, by reason.", node, "reason")
	c.inFlight = ds.add("terminator_bus_in_flight", "Calls waiting for a reply now.", node)
	c.serving = ds.add("terminator_bus_serving", "Handlers running now.", node)
	c.peers = ds.add("terminator_bus_connections", "Connections to other nodes that are up.", node)
	c.handlerLimit = ds.add("terminator_bus_handler_limit", "Adaptive limit on this node's handlers running at once.", node)
	c.routeRequests = ds.add("terminator_handler_requests_total", "Requests a handler ran for, by route served.", node, "route")
	c.routeErrors = ds.add("terminator_handler_errors_total", "Handler answers that were errors, by route and status class (4xx, 5xx).", node, "route", "class")
	c.routeCancelled = ds.add("terminator_handler_cancelled_total", "Handlers cancelled by their asker (no reply went out), by route.", node, "route")
	c.routeLatency = ds.add("terminator_handler_duration_seconds", "Handler time, by route served.", node, "route")
	c.instances = ds.add("terminator_bus_instances", "Instances of each service this node calls, by version and state (connected, down).",
		node, "service", "version", "state")
	c.weight = ds.add("terminator_rollout_weight", "The rollout policy's weight of each version, as this node applies it.", node, "service", "version")
	c.versionCalls = ds.add("terminator_rollout_calls_total", "Calls this node made, by service and version.", node, "service", "version")
	c.versionErrors = ds.add("terminator_rollout_call_errors_total", "Calls that failed on the bus or were answered 5xx, by service and version.",
		node, "service", "version")
	c.versionLatency = ds.add("terminator_rollout_call_duration_seconds", "Time to the reply as the caller saw it, by service and version.",
		node, "service", "version")
	c.ghosts = ds.add("terminator_ghost_copies_total",
		"Copies of calls sent to a ghost version, by outcome: matched, differing, error (no reply), live_failed (not compared), dropped (not sent: load).",
		node, "service", "route", "outcome")
	c.ghostPending = ds.add("terminator_ghost_pending", "Ghost copies sent and not compared yet.", node, "service", "route")
	c.ghostLatency = ds.add("terminator_ghost_duration_seconds", "Reply times of ghosted calls, live and ghost side by side.",
		node, "service", "route", "side")
	c.hedgeCalls = ds.add("terminator_hedge_calls_total", "Calls made to a hedged route.", node, "service", "route")
	c.hedgeCopies = ds.add("terminator_hedge_copies_total", "Second copies sent after the route's p95.", node, "service", "route")
	c.hedgeWon = ds.add("terminator_hedge_won_total", "Second copies that answered first.", node, "service", "route")
	c.hedgeThrottled = ds.add("terminator_hedge_throttled_total", "Second copies not sent: the budget was spent.", node, "service", "route")
	c.etcdStale = ds.add("terminator_etcd_stale", "1 while etcd is unreachable and the node serves from the membership it knew.", node)
	c.etcdOutages = ds.add("terminator_etcd_outages_total", "Times etcd was found unreachable.", node)
	c.etcdInstances = ds.add("terminator_etcd_registrations", "Registrations the node's watcher knows now.", node)
	c.registered = ds.add("terminator_registered", "1 while the node's own registration is in etcd.", node)
	c.evPublished = ds.add("terminator_events_published_total", "Domain events committed by this service.", node)
	c.evDelivered = ds.add("terminator_events_delivered_total", "Events applied by its handlers.", node)
	c.evDuplicates = ds.add("terminator_events_duplicates_total", "Events received again and skipped.", node)
	c.evFailed = ds.add("terminator_events_failed_total", "Handler runs that failed (retried, then parked).", node)
	c.evParked = ds.add("terminator_events_parked_total", "Events sent to the hospital.", node)
	c.evHealed = ds.add("terminator_events_healed_total", "Parked events applied later (retried or replayed by an operator).", node)
	c.evReplayed = ds.add("terminator_events_replayed_total", "Parked events an operator replayed and that then applied.", node)
	c.evDiscarded = ds.add("terminator_events_discarded_total", "Parked events an operator discarded.", node)
	c.evGaps = ds.add("terminator_events_gaps_total", "Events a subscription never got: its position was past the publisher's retention.", node)
	c.evPruned = ds.add("terminator_events_pruned_total", "Events this publisher deleted, older than its retention.", node)
	c.evLag = ds.add("terminator_events_lag", "Events received, not yet applied, per subscription.", node, "group", "from", "topic")
	c.evPatients = ds.add("terminator_events_hospital_patients",
		"Events parked in the hospital, not yet healed or discarded, per subscription (later events of their keys wait behind them).",
		node, "group", "from", "topic")
	c.evReading = ds.add("terminator_events_reading", "1 where this instance holds the group's lease and reads the subscription.",
		node, "group", "from", "topic")
	return c
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	gauge(ch, c.info, 1, n.Version(), n.Addr())
	s := n.Stats()
	counter(ch, c.busCalls, s.Calls)
	counter(ch, c.busReplies, s.Replies)
	for reason, v := range map[string]uint64{"busy": s.Busy, "no_peer": s.NoPeer, "timeout": s.Timeouts,
		"peer_lost": s.PeerLost, "refused": s.Refused} {
		counter(ch, c.failures, v, reason)
	}
	counter(ch, c.busRetries, s.Retries)
	counter(ch, c.busThrottled, s.Throttled)
	counter(ch, c.busCancelled, s.Cancelled)
	counter(ch, c.busCancelsSent, s.CancelsSent)
	counter(ch, c.busCancels, s.Cancels)
	counter(ch, c.busRequests, s.Requests)
	counter(ch, c.busHandled, s.Handled)
	counter(ch, c.busHandlerErrors, s.HandlerErrors)
	counter(ch, c.busHandlersCancelled, s.HandlersCancelled)
	counter(ch, c.busOverload, s.Overload)
	for reason, v := range map[string]uint64{"late_reply": s.LateReplies, "stale_reply": s.StaleReplies,
		"unknown_reply": s.UnknownReplies, "misdirected": s.Misdirected, "unknown_kind": s.UnknownKinds,
		"malformed": s.Malformed, "expired_on_arrival": s.ExpiredOnArrival, "expired_in_handler": s.ExpiredInHandler,
		"undeliverable": s.Undeliverable, "no_route": s.NoRoute} {
		counter(ch, c.dropped, v, reason)
	}
	for reason, v := range map[string]uint64{"max_conns": s.ConnsRefused, "frame_timeout": s.FrameTimeouts,
		"idle": s.IdleClosed, "max_buffered": s.BufferRefused, "frame_too_long": s.TooLong, "bad_header": s.BadHeader,
		"tls_handshake": s.TLSRefused, "plain_peer": s.PlainRefused} {
		counter(ch, c.closed, v, reason)
	}
	gauge(ch, c.inFlight, float64(s.InFlight))
	gauge(ch, c.serving, float64(s.Serving))
	gauge(ch, c.peers, float64(s.Peers))
	if c.lim != nil {
		gauge(ch, c.handlerLimit, float64(c.lim.Limit()))
	}

	for _, r := range n.RouteStats() {
		counter(ch, c.routeRequests, r.Requests, r.Route)
		counter(ch, c.routeErrors, r.ClientErrors, r.Route, "4xx")
		counter(ch, c.routeErrors, r.Errors, r.Route, "5xx")
		counter(ch, c.routeCancelled, r.Cancelled, r.Route)
		ch <- histogramOf(c.routeLatency, r.Latency, r.Route)
	}
	for _, svc := range n.Services() {
		type key struct{ version, state string }
		count := map[key]int{}
		for _, p := range n.Instances(svc) {
			state := "down"
			if p.Ready {
				state = "connected"
			}
			count[key{p.Version, state}]++
		}
		for k, v := range count {
			gauge(ch, c.instances, float64(v), svc, k.version, k.state)
		}
		if p := n.Policy(svc); p != nil {
			for version, w := range p.Weights {
				gauge(ch, c.weight, float64(w), svc, version)
			}
		}
	}
	for _, v := range n.CallStats() {
		if v.Calls == 0 {
			continue // a version this node knows of but never called: nothing to judge it by
		}
		counter(ch, c.versionCalls, v.Calls, v.Service, v.Version)
		counter(ch, c.versionErrors, v.Errors, v.Service, v.Version)
		ch <- histogramOf(c.versionLatency, v.Latency, v.Service, v.Version)
	}
	for _, g := range n.GhostStats() {
		for outcome, v := range map[string]uint64{"matched": g.Matched, "differing": g.Differing, "error": g.Errors,
			"live_failed": g.LiveFailed, "dropped": g.Dropped} {
			counter(ch, c.ghosts, v, g.Service, g.Route, outcome)
		}
		gauge(ch, c.ghostPending, float64(g.Pending), g.Service, g.Route)
		ch <- histogramOf(c.ghostLatency, g.LiveLatency, g.Service, g.Route, "live")
		ch <- histogramOf(c.ghostLatency, g.GhostLatency, g.Service, g.Route, "ghost")
	}
	for _, h := range n.HedgeStats() {
		counter(ch, c.hedgeCalls, h.Calls, h.Service, h.Route)
		counter(ch, c.hedgeCopies, h.Hedged, h.Service, h.Route)
		counter(ch, c.hedgeWon, h.Won, h.Service, h.Route)
		counter(ch, c.hedgeThrottled, h.Throttled, h.Service, h.Route)
	}

	if c.w != nil {
		ws := c.w.Stats()
		gauge(ch, c.etcdStale, boolGauge(ws.Stale))
		counter(ch, c.etcdOutages, ws.Outages)
		gauge(ch, c.etcdInstances, float64(ws.Instances))
	}
	if c.reg != nil {
		gauge(ch, c.registered, boolGauge(c.reg.Registered() == nil))
	}
	if c.ev == nil {
		return
	}
	if d := c.ev.Declaration(); len(d.Publishes)+len(d.Subscribes) == 0 {
		return
	}
	es := c.ev.Stats()
	for _, m := range []struct {
		d *prometheus.Desc
		v int64
	}{{c.evPublished, es.Published}, {c.evDelivered, es.Delivered}, {c.evDuplicates, es.Duplicates},
		{c.evFailed, es.Failed}, {c.evParked, es.Parked}, {c.evHealed, es.Healed}, {c.evReplayed, es.Replayed},
		{c.evDiscarded, es.Discarded}, {c.evGaps, es.Gaps}, {c.evPruned, es.Pruned}} {
		counter(ch, m.d, uint64(max(m.v, 0)))
	}
	for _, sub := range es.Subscriptions {
		gauge(ch, c.evLag, float64(sub.Lag), sub.Group, sub.From, sub.Topic)
		gauge(ch, c.evPatients, float64(sub.Patients), sub.Group, sub.From, sub.Topic)
		gauge(ch, c.evReading, boolGauge(sub.Reading), sub.Group, sub.From, sub.Topic)
	}
}
