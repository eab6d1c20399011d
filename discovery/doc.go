// Package discovery lets bus nodes find each other through etcd.
//
// A Registrar publishes one node under a lease it keeps alive; a Watcher
// follows every registration, feeds the nanobus peer interface, and offers
// the full records (Snapshot and Changes) from which the terminator builds
// its routing table, with the routes services announced (Announced) and
// the settings kept beside them (Values: rollout policies, feature flags).
// RegistrationOf describes a nanobus node as it registers. The embedded
// etcd of the one-process default lives in discovery/embedded, so that a
// binary that only registers does not link the etcd server.
//
// # Key layout
//
// Under a prefix, "/terminator" by default:
//
//	<prefix>/services/<service>/<node>   a live node (under its lease)
//	<prefix>/routes/<service>/<route>    a public route its service announced (no lease)
//	<prefix>/rollout/<service>           the service's rollout policy
//	<prefix>/flags/<name>                a feature flag
//	<prefix>/stats/<node>                a node's call numbers, every second (under its lease)
//
// A node's key, e.g. "/terminator/services/profiles/7f3a9c01e2d4b5a6",
// holds JSON (Registration):
//
//	{"service":"profiles","node":"7f3a9c01e2d4b5a6","addr":"tcp://10.0.0.5:7100",
//	 "version":"1.4.2","weight":1,"started":"2026-11-23T08:00:00Z",
//	 "routes":[{"route":"GET /profiles/{id}","timeout_ms":800,"idempotent":true},
//	           {"route":"profiles.get","idempotent":true},{"route":"profiles.put"}]}
//
// Neither service nor node may contain "/". node is the bus node's
// incarnation (random per start), so a restarted process never takes over
// its earlier life's key. addr is the bus address callers dial; weight its
// share of calls (0 counts as 1); routes every route it serves, public
// ("METHOD /pattern") and internal, with what the service declared: the
// deadline callers give a request that comes without one (0: their
// default), whether it may be retried on another instance, whether copies
// may go to a ghost version. Every caller takes these from here, so an
// internal call lost with its peer is retried when, and only when, its
// service said so. A route's key under routes/ is its name path-escaped;
// it outlives the instances, so a front answers 503 (not 404) for a
// service whose last instance is gone, until an operator deletes the key.
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
// A Watcher lists every key under the prefix that sorts before "stats/"
// (the per-node numbers change every second, and only those who ask read
// them), then watches the same range from the revision after the list (no
// gap), with clientv3.WithRequireLeader so a watch on a member cut off
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
// ClientConfig.RegisterFlags adds these flags (the binary reads each from
// its environment variable too):
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
// Without endpoints, only "terminator all" runs, with an embedded etcd.
package discovery
