// Package rollout is the control plane of live upgrades: the rollout
// policies and feature flags in etcd, the numbers every node publishes,
// the ramp driver, and the `terminator rollout` and `terminator flag`
// commands. The data plane (picking instances by policy, ghost copies and
// their comparison, labels, Server-Timing) is nanobus's; discovery and the
// role keep every caller's copy of the policies in step with etcd.
//
// # Keys
//
// Under the prefix (default "/terminator"):
//
//	rollout/<service>     the service's Policy (JSON): policy.Policy's weights, ghost and
//	                      ab, plus the ramp's state; every caller applies it within a moment
//	flags/<name>          a feature flag (policy.Flag as JSON); the fronts decide it per request
//	stats/<node>          NodeStats: one node's calls per (service, version) and ghost
//	                      comparisons, published every second under the node's lease
//	election/ramp/<lease> the ramp driver's election (concurrency.Election); the oldest key leads
//
// Policies and flags are written with a compare-and-swap on the key's mod
// revision (Store.UpdatePolicy, Store.UpdateFlag): the CLI and the ramp
// driver may write one policy at once and neither loses the other's
// change. Callers watch everything under the prefix that sorts before
// "stats/"; the numbers change every second and only their readers (the
// driver, `rollout show`) need them, so they read them when they want.
//
// # Numbers
//
// Every node of every process runs a Reporter: each second it reads the
// node's nanobus.CallStats (calls, errors, latency histogram, per service
// and version called, as the caller saw them) and GhostStats, and puts them
// at stats/<node> when they changed, under a lease of the process's TTL:
// the key goes when the node stops or dies. Readers sum over the nodes and
// difference two readings (Reading.Calls): a node's numbers count from its
// value in the earlier reading, a node that started since counts whole, a
// node gone since counts no more.
//
// # Ramps and the health rule
//
// `rollout ramp SERVICE VERSION` writes a Ramp into the policy, with the
// weights of its first step: From keeps 100-s percent, To gets s. One
// process drives every ramp: every front (and `terminator all`) runs a
// Driver, which campaigns in etcd's election at <prefix>/election/ramp;
// the elected leader judges every running ramp four times a second. When
// the leader stops it resigns and the next front in line takes over at
// once; when it dies, the next one takes over when its lease expires (the
// process's -ttl, 5s by default). A new leader resumes from the state in
// etcd: the step, when it began, the bounds. `rollout show` says who leads.
//
// A step is judged over its window: the calls made since it began (for a
// step a driver took over, since the driver first saw it), as the callers
// saw them. The bounds, for To against From over the same window:
//
//   - error rate (bus errors and 5xx) at most From's + MaxErrorIncrease
//     percentage points (default 1); From's counts as 0 when it answered
//     fewer than MinCalls calls in the window;
//   - p99 at most From's p99 × MaxP99Ratio + P99Slack (defaults 1.5 and
//     5ms), compared when From answered MinCalls calls (default 100).
//
// The rule, checked four times a second, not only at a step's end:
//
//   - Roll back, at once, when To is out of bounds beyond doubt: a
//     binomial test says a version within bounds would show as many
//     failed calls (or as many calls slower than the p99 bound, of which
//     it may have 1%) but once in a thousand windows. It takes at least 10
//     calls; the fewer the calls, the larger the share that must fail:
//     at a 0% base rate, 3 of 10, 6 of 100, 22 of 1000 (every call failing
//     is clear from the tenth). The weights go to From=100 To=0 and the ramp ends "rolled
//     back" with the numbers. Callers follow within a moment: about a
//     second after To starts failing (the numbers are a second old at
//     most).
//   - End a step when Every has passed since it began, To answered at
//     least MinCalls calls in the window, and its error rate and p99 are
//     within bounds; the next step begins. Out of bounds but not beyond
//     doubt, the step holds (the ramp's note says why, once) until more
//     calls settle it either way. The step that would reach 100 ends the
//     ramp "done" with To at 100 and From at 0: there is nothing left to
//     compare To with. A ramp whose steps stop short of 100 ends done at
//     its last step.
//
// A small window is noisy: the p99 of 100 calls is their second slowest,
// and a process that idles between calls wakes up late on a busy machine.
// The test keeps such noise from rolling back a good version, and the hold
// keeps it from advancing a doubtful one.
//
// Writing weights by hand stops a running ramp ("stopped"); clearing the
// policy ends it.
//
// # Flags and experiments
//
// A flag is on, off, or on for a percentage of clients, sticky by the key
// -by names (a cookie the front sets when missing, or a header); the fronts
// decide flags and A/B variants once per request into its labels, which
// every call made for the request carries (see nanobus.Request.Flag and
// Variant).
package rollout
