# Every target is safe to run on a 2-core box; `make test` stays under ~10 minutes.
GO ?= go
PKGS ?= ./...

.PHONY: test test-short vet fuzz bench-bus build run bench bench-quick

## build: the one binary, static, into bin/
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=auto -o bin/terminator ./cmd/terminator

## run: everything in one process (embedded etcd, terminator on :8080, services), data under ./data
run: build
	./bin/terminator all -data data -seed 300

## test: the full suite, race detector on (what CI runs), then the allocation
## guards (Test...Allocs), which only mean something without the race detector
test: vet
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	$(GO) test -count=1 -timeout 5m -run 'Allocs$$' $(PKGS)

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

## bench: the full side-by-side harness (~3 minutes): tables to bench/results/, plots too
bench: build
	$(GO) run ./bench/cmd/harness

## bench-quick: the same cases, 2s each
bench-quick: build
	$(GO) run ./bench/cmd/harness -quick
