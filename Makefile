# caddy-notify: common tasks. `make demo` runs the demo, `make test` the tests.
GO ?= go

.PHONY: demo test build fuzz bench bench-load bench-go check-test-deps

## demo: Caddy with the module, a demo auth API and an embedded Redis, on http://localhost:8080
demo:
	cd examples && $(GO) run ./demo

## test: the whole suite under the race detector, against real redis-server processes
test: check-test-deps
	$(GO) test -race -count=1 ./...
	cd examples && $(GO) test -race -count=1 ./...
	cd bench && $(GO) test -race -count=1 ./...

## build: a Caddy binary with the module, as ./caddy
build:
	$(GO) build -o caddy ./cmd/caddy

## fuzz: run each fuzzer for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzRecipients$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzAppendEvent$$' -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz '^FuzzParseStreamID$$' -fuzztime $(FUZZTIME) .

## bench: the standard load workloads (a-f) against a fresh Caddy and, when installed, nginx+nchan,
## side by side (BENCH_DURATION=5 BENCH_WORKLOADS="a b c" make bench for a quick run; see bench/run.sh)
bench:
	bash bench/run.sh

## bench-load: the same as bench
bench-load: bench

## bench-go: Go benchmarks of the hot paths, benchstat-friendly (count 6, written to bench.out)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 . | tee bench.out

# The tests start their own redis-server and drive the demo page in
# Chromium; they install nothing, but say what is missing.
check-test-deps:
	@command -v redis-server >/dev/null || { echo "make test: redis-server is missing; install it with: apt-get install -y redis-server" >&2; exit 1; }
	@command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || { echo "make test: chromium is missing (the demo's end-to-end test needs it); install it with: apt-get install -y chromium" >&2; exit 1; }
