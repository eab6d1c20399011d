# Every target is safe to run on a 2-core box; `make test` stays under ~10 minutes.
GO ?= go
PKGS ?= ./...

.PHONY: test test-short vet fuzz bench-bus build run bench bench-quick bench-build

## build: the one binary, static, into bin/
build:
	CGO_ENABLED=0 $(GO) build -o bin/terminator ./cmd/terminator

## run: everything in one process (embedded etcd, terminator on :8080, services), data under ./data
run: build
	./bin/terminator all -data data -seed 300

## test: the full suite, race detector on (what CI runs)
test: vet
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

test-short:
	$(GO) test -count=1 -short $(PKGS)

vet:
	$(GO) vet $(PKGS)

## fuzz: run each decoder fuzzer for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./wire -run '^$$' -fuzz FuzzDecodeRequest -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz FuzzDecodeReply -fuzztime $(FUZZTIME)
	$(GO) test ./wire -run '^$$' -fuzz FuzzDecodeError -fuzztime $(FUZZTIME)

## bench-bus: wire and nanobus micro-benchmarks
bench-bus:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./wire ./nanobus ./terminator

## bench-build: the binaries the harness runs beside the terminator: the peers
## (hello, proxies, the page over NATS and over HTTP, an etcd) and a nats-server
bench-build: build
	$(GO) build -o bin/peers ./bench/cmd/peers
	$(GO) build -o bin/nats-server github.com/nats-io/nats-server/v2
	$(GO) build -o bin/harness ./bench/cmd/harness

## bench: every case pinned (system under test on CPU 1, generators on CPU 0),
## 3 interleaved rounds, then the overload sweep (7-8 minutes); regenerates
## bench/RESULTS.md and its plots. BENCH_FLAGS adds harness flags (-h lists them).
bench: bench-build
	./bin/harness $(BENCH_FLAGS)

## bench-quick: the same cases once, 2s each (~1.5 minutes), into bench/results/quick/
bench-quick: bench-build
	./bin/harness -quick $(BENCH_FLAGS)
