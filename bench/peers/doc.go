// Package peers builds the terminator's page the ways users would otherwise
// build it, so the benchmark can set the terminator's cost per page beside
// theirs.
//
// The page is GET /profiles/{id}: the profile with its visit and flirt
// counts, composed by an aggregator that asks two domain services. Here
// the services read the same Pebble data as the terminator's services
// (dir/profiles and dir/notifications, keys "p/<id>" and "c/<id>"), do the
// same work per call (the stored JSON as it is), and the aggregator
// composes the same bytes: a test checks the answers against the
// terminator's, byte for byte.
//
// Two transports between the aggregator and the services:
//
//   - NATS request/reply: each service is a nats.go micro service (a queue
//     subscription on the route's subject, e.g. "profiles.get"), the
//     aggregator calls them through a nats-server with nc.Request.
//   - HTTP/1.1 keep-alive: each service is a fasthttp server answering
//     GET /<route>/<id>, the aggregator calls it with a fasthttp.HostClient.
//
// In both, the aggregator is a fasthttp server that makes the two calls at
// once (the profile inline, the counts in a goroutine) and leaves the
// counts out, named in "missing", when their service fails or is late, as
// the terminator's web does. The fasthttp hello world and a net/http reverse
// proxy, the ceilings the harness compares everything with, live here too,
// so that every system under test runs as a process of its own
// (bench/cmd/peers).
package peers
