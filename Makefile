# caddy-notify: common tasks. `make demo` runs the demo, `make test` the tests.
#
# The repository holds three Go modules (see README, "Repository layout"):
# the plugin at the root, the demo in examples/, the load tool in bench/.
GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: demo test test-deps lint build fuzz bench bench-load bench-go bench-cluster

## demo: Caddy with the module, a demo auth API and an embedded Redis, on http://localhost:8080
demo:
	cd examples && $(GO) run ./demo

## test: the whole set-up and the whole suite: installs redis-server and chromium when
## missing (scripts/test-deps.sh), lints, then runs every module's tests under the race detector
test: test-deps lint
	$(GO) test -race -count=1 ./...
	cd examples && $(GO) test -race -count=1 ./...
	cd bench && $(GO) test -race -count=1 ./...

## test-deps: install (as root, with apt-get) or name what the tests need besides Go
test-deps:
	@bash scripts/test-deps.sh

## lint: gofmt, go vet and staticcheck (pinned) in every module
lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt -l: these files need gofmt -w:" >&2; echo "$$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd examples && $(GO) vet ./...
	cd examples && $(GO) run $(STATICCHECK) ./...
	cd bench && $(GO) vet ./...
	cd bench && $(GO) run $(STATICCHECK) ./...

## build: a Caddy binary with the module, as ./caddy
build:
	$(GO) build -o caddy ./cmd/caddy

## fuzz: run each fuzzer for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRecipients$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzAppendEvent$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzParseEntryID$$' -fuzztime $(FUZZTIME) .

## bench: the standard load workloads (a-f) against a fresh Caddy and, when installed, nginx+nchan,
## side by side (BENCH_DURATION=5 BENCH_WORKLOADS="a b c" make bench for a quick run; see bench/run.sh)
bench:
	bash bench/run.sh

## bench-load: the same as bench
bench-load: bench

## bench-cluster: three Caddy instances on a three-master Redis Cluster, partitions 1 against
## partitions 16 + sharded, and the cost of traffic for no local stream (see bench/cluster.sh)
bench-cluster:
	bash bench/cluster.sh

## bench-go: Go benchmarks of the hot paths, benchstat-friendly (count 6, written to bench.out)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 . | tee bench.out
