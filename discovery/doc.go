// Package discovery lets bus nodes find each other through etcd.
//
// A Registrar publishes one node under a lease it keeps alive; a Watcher
// follows every registration and feeds the nanobus peer interface (and the
// terminator's routing table); Embedded runs etcd inside the process for the
// one-process default and for tests.
//
// # Key layout
//
// Every node is one key:
//
//	<prefix>/services/<service>/<node>
//
// with the default prefix "/terminator", e.g.
// "/terminator/services/profiles/7f3a9c01e2d4b5a6". The value is JSON:
//
//	{"service":"web","node":"7f3a9c01e2d4b5a6","addr":"tcp://10.0.0.5:7100",
//	 "version":"1.4.2","weight":1,"started":"2026-11-23T08:00:00Z",
//	 "routes":[{"route":"GET /profiles/{id}","timeout_ms":800}]}
//
// node is the bus node's incarnation (random per start), so a restarted
// process never takes over its earlier life's key. routes lists the public
// routes the node serves ("METHOD /pattern"), each with the deadline the
// service asks the terminator to give it (0: the terminator's default).
//
// # Lifecycle
//
// The key lives under a lease (TTL 5s by default) renewed by one long-lived
// KeepAlive. Close revokes the lease, so the key disappears at once; a
// process that dies loses its key when the lease expires. When the
// keepalive channel closes (etcd unreachable for longer than the TTL), the
// registrar grants a new lease and puts the key again as soon as etcd
// answers. Registered reports the current state for readiness checks.
//
// A Watcher lists the prefix, then watches from the revision after the list
// (no gap), with clientv3.WithRequireLeader so a watch on a member cut off
// from its cluster fails instead of hanging. On compaction, or any end of
// the watch while the Watcher lives, it lists again and applies the
// difference. While etcd is unreachable it keeps the last membership it
// knew (a running system does not stop because its registry blinked) and
// reports itself stale.
//
// clientv3/naming/endpoints is not used: it watches one service name and
// stores only an address per key, while the terminator needs every
// service's routes from one consistent list-and-watch.
//
// # An external etcd cluster
//
// ClientConfig.RegisterFlags adds -etcd-endpoints (several, comma
// separated), -etcd-ca, -etcd-cert, -etcd-key, -etcd-user, -etcd-password
// and -etcd-dial-timeout, each with an environment variable (ETCD_ENDPOINTS,
// ETCD_CA, ...). With no endpoints the binaries start an Embedded etcd.
package discovery
