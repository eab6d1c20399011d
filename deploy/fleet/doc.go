// Package fleet is the fleet suite: the compose fleet of deploy/compose (a
// 3-member etcd cluster, nginx, 2 fronts, 2 each of web, profiles, visits and
// flirts over one PostgreSQL, and echo) brought up under its own project
// name, then hurt under load, one fault at a time:
//
//   - a profiles container killed and restarted under distinct-id PUTs:
//     every acknowledged write reads back 200 through every front;
//   - a web container killed (SIGKILL) under GETs: no GET fails;
//   - a rolling restart of every role, one container at a time: no request fails;
//   - the etcd leader stopped: no request fails; all of etcd stopped: serving
//     goes on from the cached membership, and every process is registered
//     again (and stays so) once etcd is back;
//   - a service container cut off the network: no request fails;
//   - a front killed: nginx moves to the other one (GETs must not fail; what
//     PUT clients saw is counted).
//
// Each case logs its numbers (requests, statuses, transport errors,
// latencies). Traffic goes to 127.0.0.1 only (nginx's and the fronts'
// published loopback ports); faults are made with the docker CLI.
//
// The suite needs Docker and takes a few minutes, so `go test ./...` skips it;
// `make test-fleet` runs it (TERMINATOR_FLEET=1). Settings: FLEET_TEST_NET
// (the first three octets of the fleet's /24, default 172.31.214),
// FLEET_TEST_PROJECT (default terminator-fleet-test), FLEET_KEEP=1 to leave
// the fleet running afterwards for a look (deploy/compose/fleet.sh down with
// the same FLEET_PROJECT removes it).
package fleet
