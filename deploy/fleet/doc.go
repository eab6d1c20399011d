// Package fleet is the fleet suite: the compose fleet of deploy/compose (a
// 3-member etcd cluster, nginx, 2 fronts, 2 each of web, profiles, visits,
// flirts and notifications over one PostgreSQL, and echo) brought up under
// its own project name, with the Prometheus that scrapes it, then hurt
// under load, one fault at a time:
//
//   - first, whole: Prometheus has every terminator process's /metrics as
//     a target, each up (scraped with the scrape token), answers a query
//     over what it scraped, and every query of the shipped Grafana
//     dashboard is valid against it;
//   - a profiles container killed and restarted under distinct-id PUTs:
//     every acknowledged write reads back 200 through every front;
//   - a web container killed (SIGKILL) under GETs: no GET fails;
//   - a rolling restart of every role, one container at a time: no request fails;
//   - the etcd leader stopped: no request fails; all of etcd stopped: serving
//     goes on from the cached membership, and every process is registered
//     again (and stays so) once etcd is back;
//   - a service container cut off the network: no request fails;
//   - a front killed: nginx moves to the other one (GETs must not fail; what
//     PUT clients saw is counted);
//   - under visits and flirts to the sample profiles (each an event that
//     notifications turns into an item of a feed), events survive kills:
//     visits1 (a publisher, mid-write) killed with SIGKILL, then the
//     notifications instance reading, then the other one that took over,
//     each started again: the standby takes the reading over and the feeds
//     keep growing;
//   - PostgreSQL restarted, by a fast shutdown and then by a crash
//     (SIGKILL): writes fail while it is down (counted), and the services
//     and the feeds come back by themselves;
//   - the notifications instance reading cut off the network for longer
//     than its reader lease: the other one takes over and the feeds keep
//     growing during the cut.
//
// After each event case every sample profile's feed must converge (within a
// bound) with its page: as many visits and flirts as the page counts (the
// same projection), items numbered 1..N, no event twice, items never
// rewritten, every acknowledged write in it and none that was never sent.
//
// Each case logs its numbers (requests, statuses, transport errors,
// latencies; writes acknowledged and failed, failover and convergence
// times). Traffic goes to 127.0.0.1 only (nginx's and the fronts'
// published loopback ports); faults are made with the docker CLI.
//
// The suite needs Docker and takes a few minutes, so `go test ./...` skips it;
// `make test-fleet` runs it (TERMINATOR_FLEET=1). Settings: FLEET_TEST_NET
// (the first three octets of the fleet's /24, default 172.31.214),
// FLEET_TEST_PROJECT (default terminator-fleet-test), FLEET_KEEP=1 to leave
// the fleet running afterwards for a look (deploy/compose/fleet.sh down with
// the same FLEET_PROJECT removes it).
package fleet
