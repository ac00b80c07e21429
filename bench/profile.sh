#!/usr/bin/env bash
# bench/profile.sh — where the memory of idle streams goes.
#
# Starts redis-server, the load tool's auth API and a Caddy with the admin
# endpoint on a loopback port (for /debug/pprof and /debug/vars), opens
# PROFILE_STREAMS (default 10,000) idle HTTP/1.1 streams, and while they are
# held saves a heap profile, the goroutine stacks and the runtime's memory
# statistics, then prints a summary: RSS, heap and stack bytes per stream,
# the goroutines per stream and the top allocation sites still in use.
#
#   bash bench/profile.sh                    # or: PROFILE_STREAMS=1000 bash bench/profile.sh
#
# Environment:
#   PROFILE_STREAMS  streams (default 10000)
#   PROFILE_PROTO    h1 (default) or h2 (h2c, 250 streams per connection)
#   PROFILE_CPU      connect or publish: also a CPU profile (cpu.pb.gz and its top
#                    functions), of the connects (from the start) or of publishing
#                    PROFILE_RATE events/s (default 200) to PROFILE_USERS users
#                    (default 10: 100-fold fan-out at 1,000 streams), for
#                    PROFILE_CPU_SECONDS (default 10)
#
# The memory summary has two lines: 5 s after connecting as the load runs
# measure it (garbage of the connects included, up to what GOGC lets the
# heap grow to), and after a forced GC (what the streams hold).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}
N=${PROFILE_STREAMS:-10000}
PROTO=${PROFILE_PROTO:-h1}
CPU=${PROFILE_CPU:-}
CPU_SECONDS=${PROFILE_CPU_SECONDS:-10}
RATE=0 USERS=$N IDLE=40s
if [ "$CPU" = publish ]; then
	RATE=${PROFILE_RATE:-200} USERS=${PROFILE_USERS:-10} IDLE=2s
fi
OUT=${BENCH_OUT:-$ROOT/bench/out/profile-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "profile: results in $OUT"

# shellcheck source=bench/lib.sh
. bench/lib.sh
build_tools

REDIS_PORT=$($LOAD freeport)
AUTH_PORT=$($LOAD freeport)
ADMIN_PORT=$($LOAD freeport)
PORT=$($LOAD freeport)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
REDIS=$!
PIDS+=("$REDIS")
$LOAD auth -listen "127.0.0.1:$AUTH_PORT" -deadline 30m >"$OUT/auth.log" 2>&1 &
PIDS+=("$!")
cat >"$OUT/Caddyfile" <<EOF
{
	admin 127.0.0.1:$ADMIN_PORT
	auto_https off
	persist_config off
	grace_period 1s
	servers {
		protocols h1 h2c
	}
}
http://127.0.0.1:$PORT {
	notify /events {
		redis redis://127.0.0.1:$REDIS_PORT/0
		auth_url http://127.0.0.1:$AUTH_PORT/auth
		heartbeat 15s
	}
}
EOF
"$OUT/caddy" run --config "$OUT/Caddyfile" --adapter caddyfile >"$OUT/caddy.log" 2>&1 &
CADDY=$!
PIDS+=("$CADDY")
wait_port "$REDIS_PORT"
wait_port "$AUTH_PORT"
wait_port "$PORT"
sleep 1

snapshot() { # NAME
	curl -s "http://127.0.0.1:$ADMIN_PORT/debug/vars" >"$OUT/vars-$1.json"
	curl -s "http://127.0.0.1:$ADMIN_PORT/debug/pprof/heap" >"$OUT/heap-$1.pb.gz"
	curl -s "http://127.0.0.1:$ADMIN_PORT/debug/pprof/goroutine?debug=1" >"$OUT/goroutines-$1.txt"
	grep VmRSS "/proc/$CADDY/status" | awk '{print $2}' >"$OUT/rss-$1.txt"
}
snapshot before
# Hold the streams idle for 40 s; the snapshot is taken 15 s in, after a GC.
"$LOAD" run -url "http://127.0.0.1:$PORT/events" -proto "$PROTO" -streams "$N" -users "$USERS" -rate "$RATE" \
	-idle "$IDLE" -duration $((CPU_SECONDS + 5))s -redis "127.0.0.1:$REDIS_PORT" -connect-timeout 60s \
	-server-pids "$CADDY" -auth-stats "http://127.0.0.1:$AUTH_PORT/stats" -deadline 5m >"$OUT/load.log" 2>&1 &
LOADPID=$!
PIDS+=("$LOADPID")
cpu_profile() {
	curl -s "http://127.0.0.1:$ADMIN_PORT/debug/pprof/profile?seconds=$CPU_SECONDS" >"$OUT/cpu.pb.gz"
}
if [ "$CPU" = connect ]; then
	cpu_profile &
	CPUPID=$!
fi
for i in $(seq 600); do
	grep -q '^connected:' "$OUT/load.log" 2>/dev/null && break
	sleep 0.2
done
if [ "$CPU" = publish ]; then
	for i in $(seq 100); do
		grep -q '^publishing' "$OUT/load.log" 2>/dev/null && break
		sleep 0.1
	done
	cpu_profile
else
	sleep 5
	snapshot nogc
	sleep 7
	# A forced GC first (the heap profile's gc=1), so that the numbers are live bytes.
	curl -s "http://127.0.0.1:$ADMIN_PORT/debug/pprof/heap?gc=1" >/dev/null
	sleep 3
	snapshot idle
fi
[ -z "${CPUPID:-}" ] || wait "$CPUPID"
wait "$LOADPID" || true

go_tool_top() { $GO tool pprof -sample_index=inuse_space -top -nodecount=25 "$OUT/caddy" "$1" 2>/dev/null; }
if [ "$CPU" = publish ]; then
	{
		echo "streams: $N ($PROTO), $RATE events/s to $USERS users"
		grep -E '^(connected|deliveries|server:)' "$OUT/load.log"
		echo
		echo "CPU profile while publishing ($CPU_SECONDS s), top 30:"
		$GO tool pprof -top -nodecount=30 "$OUT/caddy" "$OUT/cpu.pb.gz" 2>/dev/null
	} | tee "$OUT/summary.txt"
	exit 0
fi
{
	echo "streams: $N ($PROTO)"
	grep '^connected:' "$OUT/load.log"
	python3 - "$OUT" "$N" <<'EOF'
import json, sys, re
out, n = sys.argv[1], int(sys.argv[2])
def load(name):
    v = json.load(open(f"{out}/vars-{name}.json"))["memstats"]
    v["rss"] = int(open(f"{out}/rss-{name}.txt").read()) * 1024
    g = open(f"{out}/goroutines-{name}.txt").readline()
    v["goroutines"] = int(re.search(r"total (\d+)", g).group(1))
    return v
a = load("before")
for when, name in (("5 s after connecting, no forced GC", "nogc"), ("after a forced GC", "idle")):
    b = load(name)
    def per(k): return (b[k] - a[k]) / n
    print(f"per stream, {when}: RSS {per('rss')/1024:.2f} KiB | goroutines {per('goroutines'):.2f} | "
          f"stack in use {per('StackInuse')/1024:.2f} KiB | heap in use {per('HeapInuse')/1024:.2f} KiB | "
          f"heap objects (live and garbage) {per('HeapAlloc')/1024:.2f} KiB | heap idle-not-released {(per('HeapIdle')-per('HeapReleased'))/1024:.2f} KiB | "
          f"off-heap runtime (OtherSys: poll descriptors…) {per('OtherSys')/1024:.2f} KiB | Sys {per('Sys')/1024:.2f} KiB")
print(f"GC: NextGC {b['NextGC']/2**20:.1f} MiB, HeapAlloc {b['HeapAlloc']/2**20:.1f} MiB, StackInuse {b['StackInuse']/2**20:.1f} MiB, "
      f"HeapSys {b['HeapSys']/2**20:.1f} MiB, HeapReleased {b['HeapReleased']/2**20:.1f} MiB")
EOF
	echo
	if [ "$CPU" = connect ]; then
		echo "CPU profile of the connects ($CPU_SECONDS s from the start), top 30:"
		$GO tool pprof -top -nodecount=30 "$OUT/caddy" "$OUT/cpu.pb.gz" 2>/dev/null
		echo
	fi
	echo "goroutine groups (count: top frames) while idle:"
	# Per group: its count, its top two frames and the function it started in
	# (stacks may be shorter than three frames: read each group to its blank line).
	awk '/^[0-9]+ @/ {n=$1; k=0; while ((getline line) > 0 && line ~ /^#/) {split(line, a, /[ \t]+/); sub(/\+0x[0-9a-f]+$/, "", a[3]); f[++k]=a[3]}
		if (n>=100) {s=f[1]; if (k>=2) s=s " | " f[2]; if (k>=4) s=s " | …"; if (k>=3) s=s " | " f[k]; printf "%6d %s\n", n, s}}' \
		"$OUT/goroutines-idle.txt" | sort -rn | head -10
	echo
	echo "heap in use while idle (top 25):"
	go_tool_top "$OUT/heap-idle.pb.gz" | sed -n '1,35p'
} | tee "$OUT/summary.txt"
