// Package nanobus is the bus that services are written against: a Node
// listens on one address, serves the handlers registered on it, and calls
// the services of other nodes, over mangos v3 BUS sockets.
//
//	n, _ := nanobus.NewNode(nanobus.Config{Service: "profiles", Version: "v2"})
//	n.Handle("profiles.get", get, nanobus.Idempotent(), nanobus.Timeout(800*time.Millisecond))
//	n.Handle("GET /profiles/{id}", page)             // a public route: the terminator sends it HTTP requests
//	resp, err := n.Call(ctx, "visits", "visits.count", []byte(id))
//
// A handler gets a context that ends at the request's deadline (or with
// context.Canceled when its asker cancels) and the request (views into the
// received frame, valid until it returns), and
// returns a Reply or an error, answered as StatusOf says: a *StatusError
// (Errorf) with its status, a bus error from a call it made with the status
// that error means (ErrDeadline 504, ErrNoPeer 503, ErrPeerLost 502),
// anything else a 500. The calls a handler makes with its context carry
// the request's deadline, its labels (the feature flags and A/B variants
// the edge decided: Request.Flag, Request.Variant), its ghost mark and its
// request ID (the front's X-Request-Id header; RequestID(ctx)). Every 5xx a
// handler answers, every call it made that failed and every reply dropped
// is logged with that ID, at most Config.ErrorLogRate lines a second (the
// rest counted: Stats.LogsDropped).
//
// A route is declared when registered: "METHOD /path" with {name} and a
// final {name...} wildcards is public, a plain name ("profiles.get") is
// internal. Its options say what callers may do with it: Timeout,
// Idempotent (retried once elsewhere when its peer is lost; public GET and
// HEAD are, unless NotIdempotent), GhostSafe, Hedge (a slow call gets a
// copy sent to another instance; the first answer wins), WithCORS (the
// cross-origin policy the front answers browsers with for a public route). discovery
// publishes the routes with the node, so every caller knows them.
//
// A call whose context is cancelled (the HTTP client went away, a hedge
// lost) fails with context.Canceled and sends its instance a cancel frame:
// the handler's context ends with context.Canceled, and the calls it made
// with it are cancelled in turn, hop by hop. HandleStream registers a
// route that answers one call with a stream of chunks, read with
// Node.Stream; the reader's credit bounds the chunks on their way, so a
// slow reader slows the handler instead of filling buffers.
//
// With Config.TracerProvider set, a node records an OpenTelemetry client
// span per call and a server span per request it handles, and the
// request's traceparent carries the call's span to the instance: a
// handler's context holds its span (trace.SpanFromContext), and the calls
// made with it are its children, hop after hop. nanobus uses the
// OpenTelemetry API only; the SDK and exporter are the process's. Without
// a provider, nothing is recorded and the calls a handler makes pass on the
// traceparent it was sent.
//
// One instance handles a request and its reply goes back on the
// connection the request came in on; deadlines travel with requests;
// every resource a peer can make a node hold is bounded (Limits, a
// Limiter, MaxInFlight); retries and hedges spend a per-service budget, so
// a failing service is not sent its calls twice; nothing is dropped
// without being counted in Stats. docs/promises.md lists these promises and the tests that hold
// them.
//
// Callers pick an instance by the power of two choices, after the
// service's rollout policy (nanobus/policy; SetPolicy, kept in step with
// etcd by discovery) picked the version; ghost comparisons and the calls
// made per version are reported (nanobus/report) for the rollout to judge.
// nanobus/limit is the adaptive Limiter; nanobus/histogram the latency
// histograms.
//
// The bus's own tcp:// and tls+tcp:// transport is registered by importing
// nanobus/transport; NewNode refuses any other. nanobustest gives tests
// nodes on loopback, connected.
//
//	import _ "github.com/terminator-gw/terminator/nanobus/transport"
package nanobus
