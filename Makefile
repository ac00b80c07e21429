# caddy-notify: common tasks. `make demo` runs the demo, `make test` the tests.
#
# The repository holds three Go modules (see README, "Repository layout"):
# the plugin at the root, the demo in examples/, the load tool in bench/.
GO ?= go
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: demo test test-deps lint build fuzz soak bench bench-load bench-go bench-cluster

## demo: Caddy with the module, a demo auth API and an embedded Redis, on http://localhost:8080
## (DEMO_ADDR=127.0.0.1:9000 make demo for another address). Built, then run with exec rather
## than `go run`: go run exits 1 whenever it receives SIGINT, whatever the demo's own status, so
## make reported "Error 1" after the demo's clean stop on Ctrl-C.
## Without the binary, this is most likely the first run: an empty build cache, so Go downloads and
## compiles Caddy and the module, which takes minutes (about 5 min of CPU time; 7 min on a busy
## 2-core machine with the modules already downloaded, 12 min with the downloads).
DEMO_BIN = examples/demo/demo
demo:
	@test -x $(DEMO_BIN) || echo "first run: downloading and compiling Caddy with the module (a few minutes, once; later runs start in seconds)..."
	cd examples && $(GO) build -o demo/demo ./demo
	exec ./$(DEMO_BIN)

## test: the whole set-up and the whole suite: installs redis-server, chromium and nginx-light
## when missing (scripts/test-deps.sh), then runs every module's tests under the race detector.
## CI also runs `make lint` (kept apart: a first run of staticcheck compiles Caddy's
## whole dependency graph once more)
## The first line compiles ./cmd/caddy without -race once, before the tests that run it as
## separate processes build it in parallel with the race-instrumented ones: on an empty build
## cache that is a second compile of Caddy's whole dependency graph. The timeout leaves room for
## a first run on a slow machine; with warm caches the suite takes about 7 minutes on 2 cores.
test: test-deps
	$(GO) build -o /dev/null ./cmd/caddy
	$(GO) test -race -count=1 -timeout 20m ./...
	cd examples && $(GO) test -race -count=1 -timeout 20m ./...
	cd bench && $(GO) test -race -count=1 -timeout 20m ./...

## test-deps: install (as root, with apt-get) or name what the tests need besides Go
test-deps:
	@bash scripts/test-deps.sh

## lint: gofmt, go vet and staticcheck (pinned) in every module; the engine
## (internal/) imports nothing of Caddy; the plugin builds and vets on every
## platform Caddy ships for (PLATFORMS)
PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64 freebsd/amd64 freebsd/arm64
lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt -l: these files need gofmt -w:" >&2; echo "$$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@caddy=$$($(GO) list -deps ./internal/... | grep '^github.com/caddyserver/' || true); \
		if [ -n "$$caddy" ]; then echo "internal/ must not import Caddy; it imports:" >&2; echo "$$caddy" >&2; exit 1; fi
	@for p in $(PLATFORMS); do \
		echo "GOOS=$${p%/*} GOARCH=$${p#*/} go build ./... && go vet ./..."; \
		GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build ./... && GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) vet ./... || exit 1; \
	done
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
	$(GO) test -run '^$$' -fuzz '^FuzzMember$$' -fuzztime $(FUZZTIME) ./internal/jsonscan
	$(GO) test -run '^$$' -fuzz '^FuzzRecipients$$' -fuzztime $(FUZZTIME) ./internal/message
	$(GO) test -run '^$$' -fuzz '^FuzzUserIDFromAuth$$' -fuzztime $(FUZZTIME) ./internal/message
	$(GO) test -run '^$$' -fuzz '^FuzzGroups$$' -fuzztime $(FUZZTIME) ./internal/message
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/control
	$(GO) test -run '^$$' -fuzz '^FuzzAppendEvent$$' -fuzztime $(FUZZTIME) ./internal/sse
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/streamid
	$(GO) test -run '^$$' -fuzz '^FuzzPublishBody$$' -fuzztime $(FUZZTIME) .

## soak: the stream-mode fault-injection test (soak_test.go; `make test` runs it for 20 s) for
## SOAK_DURATION against a Caddy binary built from ./cmd/caddy; it prints its seed and a summary.
## SOAK_SEED=<n> replays a run's decisions; SOAK_RACE=1 builds that Caddy with the race detector
SOAK_DURATION ?= 5m
SOAK_TIMEOUT ?= 2h
soak:
	SOAK_DURATION=$(SOAK_DURATION) SOAK_SEED=$(SOAK_SEED) SOAK_RACE=$(SOAK_RACE) \
		$(GO) test -count=1 -v -timeout $(SOAK_TIMEOUT) -run '^TestStreamSoak$$' .

## bench: the load workloads (a-l; see BENCHMARKS.md) against a fresh Caddy and, when installed, nginx+nchan,
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
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.out
