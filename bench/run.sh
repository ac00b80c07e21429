#!/usr/bin/env bash
# bench/run.sh — load runs of caddy-notify, side by side with nchan.
#
# Builds ./cmd/caddy and the load tool (bench/notify-load, in the bench
# module), starts its own redis-server (on a free port) and the load tool's
# auth API, then for each workload starts a fresh server (Caddy with a
# generated Caddyfile; then nginx+nchan when installed), runs the load tool
# against it, and stops it. Prints one table with both sides and ratios at
# the end. Everything listens on 127.0.0.1 only; every run is bounded and the
# script cleans up after itself.
#
#   make bench-load                                   # all workloads, 20 s each
#   BENCH_DURATION=5 BENCH_WORKLOADS="a b c" make bench
#
# Environment:
#   BENCH_DURATION   publishing seconds per workload (default 20)
#   BENCH_WORKLOADS  workloads to run, of: a b c d e f g (default all; g needs BENCH_MODE=stream)
#   BENCH_TARGETS    servers, of: caddy nchan (default both; nchan only when installed)
#   BENCH_OUT        directory for logs and results (default bench/out/<date>)
#   BENCH_IDLE       seconds workload (d) holds its streams idle before publishing (default 5)
#   BENCH_HEARTBEAT  caddy-notify's heartbeat (default 15s, nchan pings every 15 s too; 0 turns it off)
#   BENCH_MODE       pubsub (default) or stream: caddy-notify reads a Redis Stream, events are XADDed (caddy only)
#   BENCH_STORM_USERS users of workload (g) (default 10000, one per stream; 1000 gives every
#                    stream an event per second, so that every one resumes with Last-Event-ID)
#
# Workloads:
#   a  1,000 streams / 1,000 users / 1,000 events/s
#   b  10,000 streams / 10,000 users / 2,000 events/s
#   c  1,000 streams / 10 users / 200 events/s (each event to 100 streams)
#   d  19,000 idle HTTP/1.1 streams (memory per stream), then 2,500 events/s
#   e  connect storm: 19,000 clients connecting as fast as they can (no events)
#   f  100,000 streams over h2c (400 connections x 250 streams) at 1,000 events/s (caddy only)
#   g  reconnect storm (BENCH_MODE=stream only): 10,000 streams / 10,000 users / 1,000 events/s
#      published for 3/4 of BENCH_DURATION (15 s by default); at a third of it every stream
#      closes its connection and reconnects at once with Last-Event-ID
#
# Caddy serves its metrics on /metrics; the load tool prints the change of the
# module's counters (caddy_notify_*_total) over publishing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}

DUR=${BENCH_DURATION:-20}
WORKLOADS=${BENCH_WORKLOADS:-"a b c d e f g"}
TARGETS=${BENCH_TARGETS:-"caddy nchan"}
IDLE=${BENCH_IDLE:-5}
HEARTBEAT=${BENCH_HEARTBEAT:-15s}
# BENCH_MODE=stream: caddy-notify reads a Redis Stream (stream mode) and the
# load tool publishes with XADD; nchan is skipped (it has no such mode).
MODE=${BENCH_MODE:-pubsub}
case $MODE in
pubsub) SOURCE_LINE="channel notifications" ;;
stream) SOURCE_LINE="stream notifications" ;;
*)
	echo "bench: BENCH_MODE must be pubsub or stream" >&2
	exit 2
	;;
esac
OUT=${BENCH_OUT:-$ROOT/bench/out/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/tmp"
OUT=$(cd "$OUT" && pwd)
echo "bench: results in $OUT"

command -v redis-server >/dev/null || {
	echo "bench: redis-server is missing; install it with: apt-get install -y redis-server" >&2
	exit 1
}
if [ "$MODE" = stream ]; then
	TARGETS=${TARGETS//nchan/} # nchan has no stream mode to compare with
fi
have_nchan=0
if command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
	have_nchan=1
fi
case " $TARGETS " in
*" nchan "*)
	if [ $have_nchan = 0 ]; then
		echo "bench: nginx with the nchan module is not installed; running caddy-notify only." >&2
		echo "bench: for the comparison, install it with: apt-get install -y nginx-light libnginx-mod-nchan" >&2
		echo "bench: (then stop the system nginx it may start: service nginx stop)" >&2
		TARGETS=${TARGETS//nchan/}
	fi
	;;
esac

echo "bench: building"
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_tools

REDIS_PORT=$($LOAD freeport)
AUTH_PORT=$($LOAD freeport)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
	--maxclients 30000 --protected-mode yes >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
$LOAD auth -listen "127.0.0.1:$AUTH_PORT" -deadline 3h >"$OUT/auth.log" 2>&1 &
AUTH_PID=$!
PIDS+=("$AUTH_PID")
wait_port "$REDIS_PORT"
wait_port "$AUTH_PORT"

# workload NAME: sets the load tool's flags for a workload.
workload() {
	case $1 in
	a) WL_ARGS=(-streams 1000 -users 1000 -rate 1000 -duration "${DUR}s") ;;
	b) WL_ARGS=(-streams 10000 -users 10000 -rate 2000 -duration "${DUR}s") ;;
	c) WL_ARGS=(-streams 1000 -users 10 -rate 200 -duration "${DUR}s") ;;
	d) WL_ARGS=(-streams 19000 -users 19000 -rate 2500 -duration "${DUR}s" -idle "${IDLE}s") ;;
	e) WL_ARGS=(-streams 19000 -users 19000 -rate 0 -connect-concurrency 1000) ;;
	f) WL_ARGS=(-streams 100000 -users 100000 -proto h2 -streams-per-conn 250 -rate 1000 -duration "${DUR}s"
		-connect-concurrency 2000 -connect-timeout 60s) ;;
	g) # 15 s of publishing and the storm at 5 s for BENCH_DURATION=20
		local gms=$((DUR * 750))
		WL_ARGS=(-streams 10000 -users "${BENCH_STORM_USERS:-10000}" -rate 1000 -duration "${gms}ms" -reconnect-at "$((gms / 3))ms"
			-connect-concurrency 1000) ;;
	*)
		echo "bench: unknown workload $1" >&2
		return 1
		;;
	esac
}

# run_caddy W: one workload against a fresh Caddy.
run_caddy() {
	local w=$1 port dir=$OUT/caddy-$1
	mkdir -p "$dir"
	port=$($LOAD freeport)
	cat >"$dir/Caddyfile" <<EOF
{
	admin off
	auto_https off
	persist_config off
	grace_period 1s
	servers {
		protocols h1 h2c
	}
}
http://127.0.0.1:$port {
	notify /events {
		redis redis://127.0.0.1:$REDIS_PORT/0
		$SOURCE_LINE
		auth_url http://127.0.0.1:$AUTH_PORT/auth
		heartbeat $HEARTBEAT
	}
	metrics /metrics
}
EOF
	"$OUT/caddy" run --config "$dir/Caddyfile" --adapter caddyfile >"$dir/caddy.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	wait_port "$port"
	sleep 1 # the Redis subscription
	redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
	echo "bench: ($w) caddy-notify"
	"$LOAD" run -label "caddy-$w" -url "http://127.0.0.1:$port/events" "${WL_ARGS[@]}" \
		-mode "$MODE" -redis "127.0.0.1:$REDIS_PORT" -metrics-url "http://127.0.0.1:$port/metrics" \
		-server-pids "$pid" -redis-pid "$REDIS_PID" \
		-auth-stats "http://127.0.0.1:$AUTH_PORT/stats" -deadline 8m \
		2>&1 | tee "$OUT/caddy-$w.log" | grep -v '^{' || true
	stop_pid "$pid"
}

# run_nchan W: one workload against fresh nginx+nchan servers.
run_nchan() {
	local w=$1 port pubport dir=$OUT/nchan-$1
	mkdir -p "$dir/tmp"
	port=$($LOAD freeport)
	pubport=$($LOAD freeport)
	local f
	for f in sub pub; do
		sed -e "s#@DIR@#$dir#g; s#@REDIS_PORT@#$REDIS_PORT#g; s#@AUTH_PORT@#$AUTH_PORT#g" \
			-e "s#@PORT@#$port#g; s#@PUB_PORT@#$pubport#g; s#@WORKERS@#$(nproc)#g" \
			"$ROOT/bench/nchan-$f.conf.tmpl" >"$dir/nginx-$f.conf"
		nginx -c "$dir/nginx-$f.conf" -p "$dir/" -g 'daemon off;' >"$dir/nginx-$f.out" 2>&1 &
		PIDS+=("$!")
		eval "${f}_pid=$!"
	done
	wait_port "$port"
	wait_port "$pubport"
	sleep 0.5
	redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
	local workers pubworkers
	workers=$(pgrep -P "$sub_pid" | paste -sd, -)
	pubworkers=$(pgrep -P "$pub_pid" | paste -sd, -)
	echo "bench: ($w) nchan"
	"$LOAD" run -label "nchan-$w" -url "http://127.0.0.1:$port/sub/{user}" "${WL_ARGS[@]}" \
		-mode nchan -pub-url "http://127.0.0.1:$pubport/pub/{user}" -redis "127.0.0.1:$REDIS_PORT" \
		-server-pids "$workers" -redis-pid "$REDIS_PID" -aux-pids "$pubworkers" \
		-auth-stats "http://127.0.0.1:$AUTH_PORT/stats" -deadline 8m \
		2>&1 | tee "$OUT/nchan-$w.log" | grep -v '^{' || true
	stop_pid "$sub_pid"
	stop_pid "$pub_pid"
}

for w in $WORKLOADS; do
	if [ "$w" = g ] && [ "$MODE" != stream ]; then
		echo "bench: (g) is the reconnect storm of stream mode; skipped (run it with BENCH_MODE=stream)"
		continue
	fi
	workload "$w"
	for t in $TARGETS; do
		if [ "$t" = nchan ] && [ "$w" = f ]; then
			continue # h2c: nginx speaks HTTP/2 over TLS only, unless the whole listener is h2c
		fi
		"run_$t" "$w"
		sleep 2 # let the sockets of the last run go
	done
done

{
	echo
	echo "## Results ($(date -u +%Y-%m-%dT%H:%MZ), BENCH_DURATION=$DUR)"
	echo
	"$LOAD" table -dir "$OUT" -workloads "$WORKLOADS"
} | tee "$OUT/table.md"
