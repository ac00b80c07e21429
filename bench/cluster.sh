#!/usr/bin/env bash
# bench/cluster.sh — caddy-notify past one machine: three Caddy instances on a
# Redis Cluster of three masters (one replica each), all on 127.0.0.1.
#
# Two configurations of the same load, one after the other:
#   p1    partitions 1, classic pub/sub: the publisher PUBLISHes to one node
#         and the cluster bus copies every message to every node
#   p16s  partitions 16 + sharded: each message goes with SPUBLISH to the
#         master of its recipient's partition only
# For each: deliveries/s, p99 and the lost/duplicated/misrouted counts from
# the load tool, and per node the commands/s, network out and CPU (INFO)
# over the run.
#
# Then the cost of traffic that is not for an instance ("foreign"): one Caddy
# instance holding idle streams reads every partition while every message is
# addressed to a user it has no stream for; CPU per 1,000 such messages, for
# p1 and p16s.
#
#   bash bench/cluster.sh
#   BENCH_DURATION=10 BENCH_STREAMS=1500 bash bench/cluster.sh
#
# Environment:
#   BENCH_DURATION  publishing seconds per run (default 20)
#   BENCH_STREAMS   streams, spread over the three instances (default 3000, one user each)
#   BENCH_RATE      events/s (default 1000)
#   BENCH_FOREIGN_RATE  events/s of the foreign runs (default 2000)
#   BENCH_OUT       directory for logs and results (default bench/out/cluster-<date>)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}
DUR=${BENCH_DURATION:-20}
STREAMS=${BENCH_STREAMS:-3000}
RATE=${BENCH_RATE:-1000}
FRATE=${BENCH_FOREIGN_RATE:-2000}
OUT=${BENCH_OUT:-$ROOT/bench/out/cluster-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "bench: results in $OUT"
for c in redis-server redis-cli; do
	command -v $c >/dev/null || {
		echo "bench: $c is missing; install it with: apt-get install -y redis-server" >&2
		exit 1
	}
done

echo "bench: building"
# shellcheck source=bench/lib.sh
. bench/lib.sh
build_tools

# The cluster: six nodes, explicit bus ports (the default, port+10000, may
# be taken).
NODES=()
for i in 1 2 3 4 5 6; do
	port=$($LOAD freeport)
	bus=$($LOAD freeport)
	mkdir -p "$OUT/node$i"
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT/node$i" \
		--cluster-enabled yes --cluster-config-file nodes.conf --cluster-port "$bus" \
		--maxclients 30000 --logfile redis.log &
	PIDS+=("$!")
	NODES+=("127.0.0.1:$port")
	wait_port "$port"
done
redis-cli --cluster create "${NODES[@]}" --cluster-replicas 1 --cluster-yes >"$OUT/cluster-create.log"
for i in $(seq 100); do
	redis-cli -p "${NODES[0]#*:}" CLUSTER INFO | grep -q cluster_state:ok && break
	sleep 0.2
done
SEEDS=$(IFS=,; echo "${NODES[*]:0:3}")
# Every node's port and pid; the masters' ports.
PORTS=()
NODE_PIDS=()
MASTERS=()
for n in "${NODES[@]}"; do
	PORTS+=("${n#*:}")
	NODE_PIDS+=("$(redis-cli -p "${n#*:}" INFO server | tr -d '\r' | sed -n 's/^process_id:\([0-9]*\).*/\1/p')")
	if redis-cli -p "${n#*:}" ROLE | head -1 | grep -q master; then
		MASTERS+=("${n#*:}")
	fi
done
echo "bench: cluster up, masters on ports ${MASTERS[*]}"

AUTH_PORT=$($LOAD freeport)
$LOAD auth -listen "127.0.0.1:$AUTH_PORT" -deadline 2h >"$OUT/auth.log" 2>&1 &
PIDS+=("$!")
wait_port "$AUTH_PORT"

# start_caddies N CONFIG EXTRA: N instances; sets URLS, CADDY_PIDS, METRICS.
start_caddies() {
	local n=$1 cfg=$2 extra=$3 i port dir
	URLS="" CADDY_PIDS="" METRICS=""
	for i in $(seq "$n"); do
		port=$($LOAD freeport)
		dir=$OUT/$cfg-caddy$i
		mkdir -p "$dir"
		cat >"$dir/Caddyfile" <<EOF
{
	admin off
	auto_https off
	persist_config off
	grace_period 1s
}
http://127.0.0.1:$port {
	notify /events {
		redis redis+cluster://$SEEDS
		channel notifications
		auth_url http://127.0.0.1:$AUTH_PORT/auth
$extra
	}
	metrics /metrics
}
EOF
		"$OUT/caddy" run --config "$dir/Caddyfile" --adapter caddyfile >"$dir/caddy.log" 2>&1 &
		PIDS+=("$!")
		CADDY_PIDS+="${CADDY_PIDS:+,}$!"
		URLS+="${URLS:+,}http://127.0.0.1:$port/events"
		METRICS=http://127.0.0.1:$port/metrics
		wait_port "$port"
	done
	sleep 2 # the subscriptions
}

stop_caddies() {
	local p
	for p in ${CADDY_PIDS//,/ }; do stop_pid "$p"; done
}

# info_stats: "port commands net_out_bytes bus_publish_messages cpu_s" per
# node: INFO stats and cpu, and from CLUSTER INFO the pub/sub messages the
# node sent other nodes over the cluster bus (which total_net_output_bytes
# does not count).
info_stats() {
	local p
	for p in "${PORTS[@]}"; do
		{
			redis-cli -p "$p" INFO stats
			redis-cli -p "$p" INFO cpu
			redis-cli -p "$p" CLUSTER INFO
		} | tr -d '\r' | awk -v p="$p" -F: '/^total_commands_processed:/{c=$2} /^total_net_output_bytes:/{o=$2}
			/^cluster_stats_messages_publish(shard)?_sent:/{b+=$2} /^used_cpu_(sys|user):/{u+=$2}
			END{print p, c, o, b+0, u+0}'
	done
}

# run_load CONFIG LABEL ARGS...: one load run against the running instances,
# with the per-master deltas of INFO stats over it.
run_load() {
	local cfg=$1 label=$2
	shift 2
	info_stats | sort >"$OUT/$label.info-before"
	local t0=$SECONDS
	echo "bench: ($label)"
	"$LOAD" run -label "$label" -url "$URLS" -server-pids "$CADDY_PIDS" \
		-redis-pid "$(IFS=,; echo "${NODE_PIDS[*]}")" -metrics-url "$METRICS" \
		-auth-stats "http://127.0.0.1:$AUTH_PORT/stats" -deadline 8m "$@" \
		2>&1 | tee "$OUT/$label.log" | grep -v '^{' || true
	info_stats | sort >"$OUT/$label.info-after"
	local secs=$((SECONDS - t0))
	echo "bench: ($label) per node over the run's ${secs}s (rates per publishing second, of ${DUR}s; CPU over the run):" |
		tee -a "$OUT/masters.txt"
	join "$OUT/$label.info-before" "$OUT/$label.info-after" | awk -v d="$DUR" -v l="$label" -v m=" ${MASTERS[*]} " \
		'{role = index(m, " " $1 " ") ? "master" : "replica"
		printf "  %s %-7s :%s  %6.0f commands/s  %7.1f KiB/s out to clients  %6.0f pub/sub messages/s on the cluster bus  %.2f cpu-s\n",
			l, role, $1, ($6-$2)/d, ($7-$3)/1024/d, ($8-$4)/d, $9-$5}' |
		tee -a "$OUT/masters.txt"
}

P1_ARGS=(-redis "${NODES[0]}")
P16_ARGS=(-redis "$SEEDS" -cluster -partitions 16 -sharded)

for cfg in p1 p16s; do
	extra=""
	args=("${P1_ARGS[@]}")
	if [ $cfg = p16s ]; then
		extra=$'\t\tsharded\n\t\tpartitions 16'
		args=("${P16_ARGS[@]}")
	fi
	start_caddies 3 "$cfg" "$extra"
	run_load "$cfg" "cluster-$cfg" -streams "$STREAMS" -users "$STREAMS" -rate "$RATE" -duration "${DUR}s" "${args[@]}"
	stop_caddies
	sleep 2
	# Foreign traffic: one instance, 1,000 idle streams, every message for
	# someone else.
	start_caddies 1 "$cfg-foreign" "$extra"
	run_load "$cfg" "foreign-$cfg" -streams 1000 -users 1000 -rate "$FRATE" -duration "${DUR}s" -foreign "${args[@]}"
	stop_caddies
	sleep 2
done

echo
echo "## Summary ($(date -u +%Y-%m-%dT%H:%MZ), BENCH_DURATION=$DUR, $STREAMS streams, $RATE events/s)"
for f in "$OUT"/cluster-*.log "$OUT"/foreign-*.log; do
	echo "### $(basename "$f" .log)"
	grep -E '^(published|deliveries|latency|server:|while publishing|result)' "$f" || true
done
cat "$OUT/masters.txt"
