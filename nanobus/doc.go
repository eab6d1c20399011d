// Package nanobus is the bus that services are written against: a Node
// listens on one address, serves the handlers registered on it, and calls
// the services of other nodes, over mangos v3 BUS sockets.
//
//	n, _ := nanobus.NewNode(nanobus.Config{Service: "profiles", Version: "v2"})
//	n.Handle("profiles.get", get, nanobus.Idempotent(), nanobus.Timeout(800*time.Millisecond))
//	n.Handle("GET /profiles/{id}", page)             // a public route: the terminator sends it HTTP requests
//	resp, err := n.Call(ctx, "visits", "visits.count", []byte(id))
//
// A handler gets a context that ends at the request's deadline, or with
// context.Canceled when its asker cancels, and the request (views into the
// received frame, valid until it returns), and returns a Reply or an
// error. What it returns is answered as StatusOf says:
// a *StatusError (Errorf) with its status, a bus error from a call it made
// with the status that error means (ErrDeadline is a 504, ErrNoPeer a 503
// with Retry-After, ErrPeerLost a 502), anything else a 500, logged. The
// calls a handler makes with its context carry the request's deadline, its
// labels (the feature flags and A/B variants the edge decided) and its
// ghost mark.
//
// # Routes
//
// A route is declared once, when registered, and checked: "METHOD /path"
// with {name} and a final {name...} wildcards is public, a plain name
// ("profiles.get") is internal, anything else is an error. Options say what
// callers may do with it: Timeout (the deadline of a request that comes
// without one), Idempotent (a request lost with its peer is retried once on
// another instance; public GET and HEAD are idempotent unless NotIdempotent
// says otherwise), GhostSafe (copies may go to a ghost version), Hedge
// (a caller whose call is slow sends a copy to another instance, and takes
// the first answer). discovery publishes the routes with the node, so
// every caller knows them.
//
// # Cancellation, streams
//
// A call whose context is cancelled (the HTTP client went away, a hedge
// lost, the caller gave up) fails with context.Canceled and sends the
// instance a cancel frame: the handler's context ends with
// context.Canceled, and the calls it made with that context are cancelled
// in turn, hop by hop. Only the connection a request came on can cancel it.
//
// HandleStream registers a route that answers one call with a stream of
// chunks (an SSE feed, say); Node.Stream reads it. The reader's credit
// bounds the chunks on their way, so a slow reader slows the handler
// (StreamWriter.Send waits) instead of filling buffers.
//
// # What the node promises
//
//   - One instance handles a request: a node dials one BUS socket per remote
//     node, so a send on it has exactly one pipe (a BUS socket sends to every
//     pipe it has).
//   - A reply crosses the network once, to the asker only: it goes back on
//     the connection the request came in on. An answer is taken only from
//     the connection its call went out on, and a call's ID carries random
//     bits, so no peer can answer for another.
//   - No peer holds more than its share: a request runs no longer than its
//     route's Timeout (the node's, without one), whatever deadline it
//     claims; one connection has at most MaxInFlight handlers running; a
//     reply whose connection is gone is dropped at once, counted.
//   - A node with bus TLS never dials a plain tcp:// peer (nor a plain node
//     a tls+tcp:// one): the peer is refused, logged and counted.
//   - Nothing is dropped in silence: calls in flight per peer are bounded
//     below the socket's queue, and over the bound a call fails at once with
//     ErrBusy; every drop that can still happen (late, stale, unknown
//     replies, expired requests, malformed frames, connections closed by a
//     limit) is counted in Stats.
//   - Deadlines travel in the request; a service drops work whose deadline
//     passed before starting it. Cancellation travels too (see above).
//   - A lost connection fails its calls at once; an idempotent one is
//     retried once elsewhere, as is one refused by a draining instance.
//     Retries and hedged copies spend a per-service budget (as gRPC's
//     retry throttling): while a service's instances fail, none go out.
//   - Correlation IDs carry a random incarnation, so a reply to an earlier
//     life of a node never completes a call of the new one.
//   - Mixed versions interoperate: a node announces its wire protocol
//     (Peer.Protocol) and is sent no frame kind its protocol lacks; a frame
//     of a kind a node does not know, or a request that does not decode,
//     is answered at once with an error frame (the caller's ErrMalformed, a
//     502), never with silence.
//
// # Callers and rollouts
//
// A caller picks an instance by the power of two choices among the ready
// instances, weighted. With a Policy set for the service (SetPolicy;
// discovery keeps it in step with etcd), it first picks the version: the
// client's A/B variant, else a version drawn by Weights. A Ghost version
// gets copies of idempotent (or ghost-safe) calls off the live path; their
// replies are compared with the live ones and reported in GhostStats, never
// returned. CallStats counts calls per service and version as callers saw
// them, which is what a ramp is judged by.
//
// # Limits
//
// Limits bound what peers can make a node hold (frame deadline, idle
// connections, connections, bytes of unfinished frames); a Limiter bounds
// the handlers running at once, adaptively, by measured latency.
//
// # Transport
//
// The bus's own tcp:// and tls+tcp:// transport lives in nanobus/transport
// and is registered by importing it, as mangos' transports are:
//
//	import _ "github.com/terminator-gw/terminator/nanobus/transport"
//
// NewNode refuses to start over any other transport for the scheme (mangos'
// own tcp, say): without it a node would have no limits, and no way to
// answer on the connection a request came in on. nanobustest gives tests
// nodes on loopback, connected.
package nanobus
