// Package role starts and stops what one terminator process runs: the HTTP
// front, one service, or everything at once ("all"), each with its bus
// node, its etcd registration and watch, and one admin listener for the
// whole process.
//
// Start order: the admin listener (so that /healthz answers and /readyz
// says "starting"), etcd (embedded for "all" without -etcd-endpoints), the
// services in services.All order (domain services before the aggregator
// that calls them), the front. Each node watches etcd first, then waits
// until it reaches an instance of every service it calls (a service's
// services.Service.Calls, the front's routed services), for -callee-wait
// at most (a callee not reached by then is logged), and only then
// registers: announced earlier, its first requests would answer 503. Stop
// runs the reverse: readiness turns false
// at once; the front stops taking connections and drains; each service
// revokes its registration, keeps answering for the grace period while its
// callers' watchers catch up, drains its handlers and closes its store; the
// embedded etcd goes last.
//
// Readiness (/readyz) is the conjunction of named checks: every part
// started and not stopping; a service registered in etcd with its store
// answering; the front not draining. The front stays ready while etcd is
// unreachable: it serves from the membership it knew (the status page says
// so), where unready fronts would all leave service at once. /healthz is liveness only.
// Both stay open; the console at / (charts of the last minutes sampled
// every second, the fleet from etcd, rollouts, flags, ghost differences
// grouped, the hospital; /status/series.json and /status/console.json
// feed it, POST /actions/ramp/stop is its one action), /status.json, the
// status page at /status/ and pprof need the admin token whenever one is
// set, and a token is required when the admin listener is not on
// loopback.
//
// /metrics serves the process's numbers to Prometheus from a registry of
// its own (Admin.Collect adds a collector; each bus node's metrics carry
// its service as the "node" label). It is guarded as /status.json is, and
// also takes the scrape token (-metrics-token-file), which opens nothing
// else. docs/metrics.md lists the metrics.
//
// Flags come with environment variables (EnvName): Parse reads the
// environment first and refuses values that do not parse. Under systemd, a
// variable the environment leaves unset is read from the unit's
// credentials ($CREDENTIALS_DIRECTORY, LoadCredential=): a credential named
// after the variable, or terminator_ and the variable (the files of a
// directory loaded as LoadCredential=terminator:/dir), gives a file flag
// (-etcd-ca, -bus-key, -admin-token-file, ...) its path and any other flag
// its content, so secrets reach a DynamicUser= unit without a file it could
// read.
//
// Traces follow the standard OpenTelemetry environment, not flags: with
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set,
// every node and the front record spans, each service of the process under
// its own service.name, sampled by OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG (unset: parent-based, DefaultTraceRatio of new
// traces), exported over OTLP (http/protobuf or grpc), and flushed when the
// process stops, after everything else. A bad value stops the start.
package role
