// Package discovery lets bus nodes find each other through etcd.
//
// A Registrar publishes one node under a lease it keeps alive; a Watcher
// follows every registration, feeds the nanobus peer interface, and offers
// the full records (Snapshot and Changes) from which the terminator builds
// its routing table; Embedded runs etcd inside the process for the
// one-process default and for tests.
//
// # Key layout
//
// Every node is one key:
//
//	<prefix>/services/<service>/<node>
//
// with the default prefix "/terminator", e.g.
// "/terminator/services/profiles/7f3a9c01e2d4b5a6". Neither service nor
// node may contain "/". The value is JSON (Registration):
//
//	{"service":"profiles","node":"7f3a9c01e2d4b5a6","addr":"tcp://10.0.0.5:7100",
//	 "version":"1.4.2","weight":1,"started":"2026-11-23T08:00:00Z",
//	 "routes":[{"route":"GET /profiles/{id}","timeout_ms":800}]}
//
// node is the bus node's incarnation (random per start), so a restarted
// process never takes over its earlier life's key. addr is the bus address
// callers dial; weight its share of calls (0 counts as 1); routes the
// public routes it serves ("METHOD /pattern"), each with the deadline the
// service asks the terminator to give it (0: the terminator's default).
// Readers skip (and count) values that do not parse.
//
// # Lifecycle
//
// Register grants a lease (TTL 5s by default, whole seconds), puts the key
// under it, and keeps it with one long-lived KeepAlive whose channel it
// drains. Close revokes the lease: the key goes at once and watchers drop
// the node. A process that dies loses its key when the lease expires, a TTL
// later. When the keepalive channel closes (etcd unreachable for longer
// than the TTL, or the lease revoked), the Registrar grants a new lease and
// puts the key again as soon as etcd answers. Registered reports nil while
// the key is held and the reason otherwise, for readiness checks.
//
// Shutdown order for a service: Registrar.Close, a moment for watchers to
// see the removal, drain in-flight calls, close the node.
//
// A Watcher lists the prefix, then watches from the revision after the list
// (no gap), with clientv3.WithRequireLeader so a watch on a member cut off
// from its cluster fails instead of hanging. On compaction, or any end of
// the watch while the Watcher lives, it lists again and applies the
// difference. Peers hears of an instance by (service, addr): it is added
// when the first key naming it appears and removed when the last one goes,
// so a process restarted on the same port is not dropped when its earlier
// life's lease expires; its weight follows the newest key.
//
// While etcd is unreachable the Watcher keeps the last membership it knew (a
// running system does not stop because its registry blinked): Stats reports
// Stale and counts Outages, and one log line says so; when etcd answers
// again it lists afresh and logs how long it was stale.
//
// clientv3/naming/endpoints and concurrency.Session are not used; the
// comments on Watcher and Registrar say why.
//
// # An external etcd cluster
//
// ClientConfig.RegisterFlags adds these flags, each defaulting to its
// environment variable:
//
//	-etcd-endpoints     ETCD_ENDPOINTS     client URLs, comma separated: https://10.0.0.1:2379,https://10.0.0.2:2379
//	-etcd-ca            ETCD_CA            CA bundle that signed the members' certificates
//	-etcd-cert          ETCD_CERT          client certificate, for clusters that require one
//	-etcd-key           ETCD_KEY           its key
//	-etcd-user          ETCD_USER          etcd user
//	-etcd-password      ETCD_PASSWORD      its password (prefer the variable: flags show in ps)
//	-etcd-dial-timeout  ETCD_DIAL_TIMEOUT  default 5s
//
// ClientConfig.Client builds the *clientv3.Client. Giving TLS files with an
// http:// endpoint is an error rather than a silent plain-text connection.
// The user needs read and write on the prefix (e.g. a role granted
// readwrite on "/terminator/" with --prefix); leases need no grant.
// Without endpoints, only "terminator all" runs, with an Embedded etcd.
//
// # Embedded etcd
//
// StartEmbedded runs one member with its data in a directory, on loopback
// ports chosen free unless given, logging only errors to stderr; starting
// it again with the same Config (same Dir and ports) restarts the same
// member with its data. StartCluster runs an n-member cluster in one
// process for tests.
package discovery
