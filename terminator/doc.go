// Package terminator is the HTTP front: a fasthttp server that turns each
// request into one bus request to one instance of the service that owns
// the route, parks the request until the reply comes back (or its deadline
// passes), and turns the reply into the response.
//
// The routing table comes from the services themselves: each registers its
// public routes ("GET /profiles/{id}") with their timeouts in etcd, and the
// process that runs the front feeds them to SetRoutes; a route announced
// once keeps answering, 503 with Retry-After, while no instance is left.
// Lookups take no lock and allocate nothing.
//
// Per request the front: admits it under an adaptive limit on the requests
// waiting for replies (over it, 503 with Retry-After at once, before any
// work); gives it a request ID (the client's X-Request-ID when sane); sets
// the client's address from the direct peer or, behind trusted proxies, from
// X-Real-IP or X-Forwarded-For; strips hop-by-hop headers; decides the
// feature flags and A/B variants of the client once (SetRollout), into the
// request's labels, which every call made for it carries; and sends it with
// the route's deadline, in a context cancelled if the client goes away while
// the request is parked (one watcher goroutine polls the parked requests'
// sockets: watch.go); such a call ends with nothing sent, counted per route
// and logged as nginx's 499. Bus errors become statuses by nanobus.StatusOf;
// malformed HTTP is a 400, a body over the limit a 413, headers over it a
// 431. Replies carry Server-Timing: the service and version that answered
// with its handler time, the bus round trip and the time in the front.
//
// Each request gets a line in the access log (its ID, route, status, the
// service and version that answered, bus and total time, bytes): a 5xx at
// ERROR and a request slower than Config.SlowRequest at WARN, always; the
// rest at most Config.AccessLogRate a second, the others counted, at no
// allocation (accesslog.go).
//
// HTTP is spoken as clients expect (http.go): HEAD is served by a GET route
// (its answer without the body); a routed path asked with another method
// gets 405 with Allow; a CORS policy (Config.CORS, or a route's own,
// nanobus.WithCORS) answers preflights at the front and marks the actual
// answers; the front's own errors are application/problem+json (RFC 9457)
// for a client that accepts JSON, plain text otherwise, allocating nothing.
//
// With a tracer provider (SetTracerProvider), each request gets an
// OpenTelemetry server span, the child of the client's W3C traceparent
// when it sent a valid one, with the route, method, status, service and
// version; its bus call runs in it, so the bus's spans are its children.
// Without one, nothing of it runs.
//
// Status, StatusPage and Ready are for the process's admin listener;
// metrics go to a DogStatsD agent, counted with atomics on the hot path and
// flushed as deltas by a goroutine.
package terminator
