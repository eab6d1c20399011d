# Every target is safe to run on a 2-core box; `make test` stays under ~10 minutes.
GO ?= go
PKGS ?= ./...

.PHONY: test test-short vet fuzz bench-bus build run graph bench bench-quick bench-build bench-events images up down test-fleet check-units test-systemd

## build: the one binary, static, into bin/
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -o bin/terminator ./cmd/terminator

## run: everything in one process (embedded etcd, terminator on 127.0.0.1:8080, admin on
## 127.0.0.1:8081, services), data under ./data
run: build
	./bin/terminator all -listen 127.0.0.1:8080 -admin 127.0.0.1:8081 -data data -seed 300

## graph: regenerate docs/cascade.dot and docs/cascade.svg, the cascade graph of
## the sample app's domain events, from a run of it on free loopback ports
## (needs Graphviz: apt-get install graphviz); see docs/cascade.md
graph: build
	TERMINATOR_EDGES_OUT=$(CURDIR)/docs/cascade-tested.json $(GO) test -count=1 -run TestProfileLifecycle ./services/web
	docs/cascade.sh bin/terminator

## test: the full suite, race detector on (what CI runs); then the allocation
## guards (Test...Allocs), which only mean something without the race
## detector; deploy/k8s is a module of its own
test: vet
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(GO) test -count=1 -timeout 5m -run 'Allocs$$' $(PKGS)
	cd deploy/k8s && $(GO) vet ./... && $(GO) test -count=1 ./...

test-short:
	$(GO) test -count=1 -short $(PKGS)

vet:
	$(GO) vet $(PKGS)

## fuzz: run each decoder fuzzer for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./wire -run '^$$' -fuzz 'FuzzDecodeRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz 'FuzzDecodeReply$$' -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz 'FuzzDecodeError$$' -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz FuzzDecodeCancel -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz 'FuzzDecodeEvent$$' -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz FuzzDecodeEventAck -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz FuzzDecodeChunk -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz FuzzDecodeEnd -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz FuzzDecodeCredit -fuzztime $(FUZZTIME)
	$(GO) test ./services/notifications -run '^$$' -fuzz FuzzParseCounts -fuzztime $(FUZZTIME)

## bench-bus: wire and nanobus micro-benchmarks
bench-bus:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./wire ./nanobus ./terminator

## bench-build: the binaries the harness runs beside the terminator: the peers
## (hello, proxies, the page over NATS and over HTTP, an etcd) and a nats-server
bench-build: build
	$(GO) build -o bin/peers ./bench/cmd/peers
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2
	$(GO) build -o bin/harness ./bench/cmd/harness
	$(GO) build -o bin/evbench ./bench/cmd/evbench

## bench: every case pinned (system under test on CPU 1, generators on CPU 0),
## 3 interleaved rounds, then the open-loop overload sweeps, one per policy in
## BENCH_SWEEPS (default settings, then the old one: -admission fifo, left out
## with a note by a binary without the flag), and the price of a refusal (8-9
## minutes); regenerates bench/RESULTS.md and its plots; then the durable
## events (bench-events, ~2 minutes). BENCH_FLAGS adds harness flags (-h lists them).
BENCH_SWEEPS ?= ;-admission fifo
bench: bench-build
	./bin/harness -sweeps "$(BENCH_SWEEPS)" $(BENCH_FLAGS)
	./bin/evbench $(EVBENCH_FLAGS)

## bench-quick: the same cases once, 2s each (~2 minutes), into bench/results/quick/
bench-quick: bench-build
	./bin/harness -quick -sweeps "$(BENCH_SWEEPS)" $(BENCH_FLAGS)

## bench-events: durable events, published -> handled, per core (~2 minutes):
## terminator events over Pebble and PostgreSQL (when installed) beside NATS
## JetStream (sync always, default sync), at the peak and at half of it;
## regenerates the "Durable events" section of bench/RESULTS.md. EVBENCH_FLAGS
## adds flags (-h lists them; -quick is a 1-minute check that leaves RESULTS.md).
bench-events: bench-build
	./bin/evbench $(EVBENCH_FLAGS)

## images: the fleet's images, built locally: terminator FROM scratch, and one
## debootstrap base for etcd, nginx, PostgreSQL and Prometheus (cached until its recipe changes)
images:
	deploy/compose/fleet.sh images

## up: the compose fleet, 2 of every role behind nginx on http://127.0.0.1:8090 (FLEET_PORT)
up:
	deploy/compose/fleet.sh up

## down: stop the fleet, remove its containers, networks and volumes (REMOVE_IMAGES=1: images too)
down:
	deploy/compose/fleet.sh down

## test-fleet: the fleet suite (Docker; a few minutes): faults under load, see deploy/fleet/doc.go
FLEET_TEST_PROJECT ?= terminator-fleet-test
test-fleet:
	TERMINATOR_FLEET=1 FLEET_TEST_PROJECT=$(FLEET_TEST_PROJECT) $(GO) test -count=1 -v -timeout 20m ./deploy/fleet/; \
	status=$$?; FLEET_PROJECT=$(FLEET_TEST_PROJECT) deploy/compose/fleet.sh down >/dev/null 2>&1; exit $$status

## check-units: systemd-analyze verify and security on deploy/systemd
check-units: build
	deploy/systemd/verify.sh bin/terminator

## test-systemd: the units under a real systemd (Docker; about a minute once the
## images are built): systemd 252 as PID 1 in a Debian bookworm container, every
## role installed as docs/fleet.md says, checked for serving, credentials,
## listen backlogs, kill -9 recovery, store and etcd outages at start, and drain
test-systemd: build
	deploy/systemd/test.sh bin/terminator
