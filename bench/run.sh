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
#   BENCH_DURATION=5 BENCH_WORKLOADS="h i j k l" make bench   # the attack and memory workloads
#
# Environment:
#   BENCH_DURATION   publishing seconds per workload (default 20)
#   BENCH_WORKLOADS  workloads to run, of: a b c d e f g h i j k l m n o p q r s t (default all but r, s and t;
#                    g needs BENCH_MODE=stream)
#   BENCH_ATTACK_DURATION  seconds of attack in (h) and (i) (default 10, or BENCH_DURATION when shorter)
#   BENCH_AUTH_DELAY the auth API refuses unknown tokens after this long (default 200ms)
#   BENCH_AUTH_CONCURRENCY  when set, `auth_concurrency <n>` is added to every Caddyfile (the
#                    subdirective is newer than the load tool: unset, the module's default applies)
#   BENCH_TARGETS    servers, of: caddy nchan (default both; nchan only when installed)
#   BENCH_OUT        directory for logs and results (default bench/out/<date>)
#   BENCH_IDLE       seconds workload (d) holds its streams idle before publishing (default 5)
#   BENCH_HEARTBEAT  caddy-notify's heartbeat (default 15s, nchan pings every 15 s too; 0 turns it off)
#   BENCH_MODE       pubsub (default) or stream: caddy-notify reads a Redis Stream, events are XADDed (caddy only)
#   BENCH_PUBLISH    redis (default: the load tool PUBLISHes or XADDs) or http: it POSTs each event to
#                    notify_publish on a second Caddy (GOMAXPROCS=1, as nchan's publishing nginx has one
#                    worker), the way nchan's events always go through its publishing nginx
#   BENCH_PUB_BATCH  with BENCH_PUBLISH=http, events per POST to notify_publish (default 1, as nchan
#                    takes them; more sends JSON arrays)
#   BENCH_STORM_USERS users of workload (g) (default 10000, one per stream; 1000 gives every
#                    stream an event per second, so that every one resumes with Last-Event-ID)
#   BENCH_RELOAD_DRAIN  workload (s): the drain window the load tool allows for (default 10s, the
#                    module's reload_drain default). When set, `reload_drain <it>` is also added to
#                    the Caddyfiles of (s) (the subdirective is newer than the load tool: unset, the
#                    module's default applies, or none before it exists)
#   BENCH_RELOAD_RATE events/s of (s) (default 1000: nchan's publishing nginx fell behind 2000 during the reload)
#   BENCH_FAN_RATE   messages/s of (t), each to 10,000 streams (default 0.2: a listed message is
#                    69 KB, and every stream gets all of it: 138 MB/s to write and read)
#   BENCH_FAN_DURATION  publishing seconds of (t) (default 60)
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
# The attack and memory workloads (`notify-load attack`, `notify-load memory`):
#   h  h2c rapid reset: one connection writes HEADERS then RST_STREAM, 200 streams every 25 ms,
#      each with a fresh random token (refused by the auth API after BENCH_AUTH_DELAY), while a
#      legitimate user opens a stream every 250 ms from 127.0.0.2; then h-valid: the same with
#      one valid token on every reset stream (caddy only)
#   i  HTTP/1.1 flood: 3,000 connections at once, each request with a new unknown token, each
#      client giving up after 300 ms and starting over; the same legitimate user
#   j  a stream that never reads, then 300 messages of 1 MB to its user at 20/s (caddy only)
#   k  one message of 20 MB to a reading stream with max_message_size 32MiB; then k-default:
#      the same with the default max_message_size (1 MiB), dropped as too_large (caddy only)
#   l  stream mode whatever BENCH_MODE: 300 entries of 1 MB written before Caddy starts
#      (history_bytes 32MiB), then 8 clients resume from 1-0 at once while a live client of
#      another user receives 20 events/s (caddy only)
#   m  20,000 streams over h2c (80 connections x 250 streams) / 20,000 users / 1,000 events/s,
#      both servers (nginx on an h2c-only listener, http2_max_concurrent_streams 250)
#   r  publish throughput: (a) with 20,000 events/s asked for 10 s (BENCH_PUBLISH=http: what the
#      publishing server accepts; the load tool reports messages/s published without error)
#   s  reload: 19,000 HTTP/1.1 streams / 19,000 users / BENCH_RELOAD_RATE events/s; 5 s into
#      publishing the server is reloaded once (Caddy: its admin API, POST /load of the running
#      config with Cache-Control: must-revalidate; nchan: nginx -s reload) while a new user opens
#      a stream every 100 ms; streams reconnect as EventSource does (retry field, Last-Event-ID).
#      Publishing lasts for the reload window (drain window + 3 s retry + 2 s) and 3 s more.
#      Runs: s (the same config), s-change (the notify handler's channel, or stream, renamed;
#      nchan: its channel ids prefixed; the publisher follows once the reload is done), then
#      s-h2 and s-h2-change: the same with 20,000 h2c streams (80 connections x 250; nginx on an
#      h2c listener, as m)
#   t  group fan-out (caddy only): 10,000 streams / 10,000 users, BENCH_FAN_RATE messages/s for
#      BENCH_FAN_DURATION s, each for all 10,000 users. t-group: {"groups":"g0"} with `groups_field groups` (the auth API
#      puts every user in g0; skipped while the module does not know groups_field); t-list: the
#      same messages listing the 10,000 users in recipient_id
#   n  (a) over TLS, HTTP/1.1      o  (d) over TLS, HTTP/1.1
#   p  (a) over TLS, HTTP/2        q  (d) over TLS, HTTP/2 (250 streams per connection)
#      TLS: one self-signed certificate (ECDSA P-256) for both servers, made in the output directory
#
# Caddy serves its metrics on /metrics; the load tool prints the change of the
# module's counters (caddy_notify_*_total) over publishing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}

DUR=${BENCH_DURATION:-20}
WORKLOADS=${BENCH_WORKLOADS:-"a b c d e f g h i j k l m n o p q"}
ATTACK_DUR=${BENCH_ATTACK_DURATION:-$((DUR < 10 ? DUR : 10))}
AUTH_DELAY=${BENCH_AUTH_DELAY:-200ms}
AUTH_CONCURRENCY=${BENCH_AUTH_CONCURRENCY:-}
RELOAD_DRAIN=${BENCH_RELOAD_DRAIN:-10s}
RELOAD_RATE=${BENCH_RELOAD_RATE:-1000}
FAN_RATE=${BENCH_FAN_RATE:-0.2}
FAN_DUR=${BENCH_FAN_DURATION:-60}
# duration_ms D: a whole number of ms, s or m (BENCH_RELOAD_DRAIN) in milliseconds.
duration_ms() {
	case $1 in
	*[!0-9]*ms | ms) ;;
	*ms) echo "${1%ms}" && return ;;
	*[!0-9]*s | s) ;;
	*s) echo $((${1%s} * 1000)) && return ;;
	*[!0-9]*m | m) ;;
	*m) echo $((${1%m} * 60000)) && return ;;
	esac
	echo "bench: $1: a duration must be a whole number of ms, s or m" >&2
	return 1
}
duration_ms "$RELOAD_DRAIN" >/dev/null || exit 2
TARGETS=${BENCH_TARGETS:-"caddy nchan"}
IDLE=${BENCH_IDLE:-5}
HEARTBEAT=${BENCH_HEARTBEAT:-15s}
# BENCH_MODE=stream: caddy-notify reads a Redis Stream (stream mode) and the
# load tool publishes with XADD; nchan is skipped (it has no such mode).
MODE=${BENCH_MODE:-pubsub}
PUBLISH=${BENCH_PUBLISH:-redis}
PUB_BATCH=${BENCH_PUB_BATCH:-1}
case $PUBLISH in redis | http) ;; *)
	echo "bench: BENCH_PUBLISH must be redis or http" >&2
	exit 2
	;;
esac
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
$LOAD auth -listen "127.0.0.1:$AUTH_PORT" -unknown-delay "$AUTH_DELAY" -deadline 3h >"$OUT/auth.log" 2>&1 &
AUTH_PID=$!
PIDS+=("$AUTH_PID")
wait_port "$REDIS_PORT"
wait_port "$AUTH_PORT"

# The TLS workloads' certificate, shared by both servers.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
	-addext subjectAltName=IP:127.0.0.1 -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null

# runs_of W: the runs of a workload: itself, then its variants (the same
# workload with one setting changed, logged as <target>-<variant>.log).
runs_of() {
	case $1 in
	b) echo "b b-control" ;;
	h) echo "h h-valid" ;;
	k) echo "k k-default" ;;
	s) echo "s s-change s-h2 s-h2-change" ;;
	t) echo "t-group t-list" ;;
	*) echo "$1" ;;
	esac
}

# workload RUN: sets, for a run (a workload or a variant), the load tool's
# subcommand (WL_TOOL: run, attack or memory) and its flags (WL_ARGS), the
# lines added to Caddy's notify block (WL_OPTS, one per line), another
# source line (WL_SOURCE), a command run against the flushed Redis before
# the server starts (WL_PRESTART), why nchan does not run it (WL_NO_NCHAN),
# its URL scheme (WL_SCHEME), nginx's listen options (WL_LISTEN), the
# server's reload (WL_RELOAD: same or change; run_caddy and run_nchan add
# the server's own reload flags) and a query added to the auth URL
# (WL_AUTH_QUERY).
workload() {
	WL_TOOL=run WL_OPTS="" WL_SOURCE="" WL_PRESTART=() WL_NO_NCHAN="" WL_SCHEME=http WL_LISTEN=""
	WL_RELOAD="" WL_AUTH_QUERY=""
	local attack=(-duration "${ATTACK_DUR}s" -baseline 2s -drain 10s -probe-src 127.0.0.2 -probe-interval 250ms)
	case $1 in
	a) WL_ARGS=(-streams 1000 -users 1000 -rate 1000 -duration "${DUR}s") ;;
	b | b-control)
		WL_ARGS=(-streams 10000 -users 10000 -rate 2000 -duration "${DUR}s")
		if [ "$1" = b-control ]; then # the controls (reauth, presence) on: what they cost
			WL_OPTS=$'reauth 60s\npresence online'
			WL_NO_NCHAN="it measures caddy-notify's reauth and presence"
		fi ;;
	r) WL_ARGS=(-streams 1000 -users 1000 -rate 20000 -duration 10s -pub-workers 16) ;;
	c) WL_ARGS=(-streams 1000 -users 10 -rate 200 -duration "${DUR}s") ;;
	d) WL_ARGS=(-streams 19000 -users 19000 -rate 2500 -duration "${DUR}s" -idle "${IDLE}s") ;;
	e) WL_ARGS=(-streams 19000 -users 19000 -rate 0 -connect-concurrency 1000) ;;
	f) WL_ARGS=(-streams 100000 -users 100000 -proto h2 -streams-per-conn 250 -rate 1000 -duration "${DUR}s"
		-connect-concurrency 2000 -connect-timeout 60s) ;;
	g) # 15 s of publishing and the storm at 5 s for BENCH_DURATION=20
		local gms=$((DUR * 750))
		WL_ARGS=(-streams 10000 -users "${BENCH_STORM_USERS:-10000}" -rate 1000 -duration "${gms}ms" -reconnect-at "$((gms / 3))ms"
			-connect-concurrency 1000) ;;
	h | h-valid)
		WL_TOOL=attack
		WL_ARGS=(-kind reset -per-loop 200 -loop-interval 25ms "${attack[@]}")
		if [ "$1" = h-valid ]; then WL_ARGS+=(-token u1); fi
		WL_NO_NCHAN="h2c: nginx serves HTTP/2 over TLS only, unless the whole listener is h2c" ;;
	i)
		WL_TOOL=attack
		WL_ARGS=(-kind flood -clients 3000 -give-up 300ms "${attack[@]}") ;;
	j)
		WL_TOOL=memory
		WL_ARGS=(-kind slow -count 300 -size 1000000 -rate 20 -rcvbuf 4096)
		WL_NO_NCHAN="it measures caddy-notify's byte bounds (queue_bytes) by its slow_client metric" ;;
	k | k-default)
		WL_TOOL=memory
		WL_ARGS=(-kind big -size 20000000 -wait 30s)
		if [ "$1" = k ]; then WL_OPTS="max_message_size 32MiB"; else WL_ARGS+=(-expect-drop); fi
		WL_NO_NCHAN="it measures caddy-notify's max_message_size (and the too_large drop of its metrics)" ;;
	l)
		WL_TOOL=memory
		WL_SOURCE="stream notifications"
		WL_OPTS="history_bytes 32MiB"
		WL_ARGS=(-kind replay -count 300 -size 1000000 -resumers 8 -last-event-id 1-0 -live-rate 20 -wait 60s)
		WL_PRESTART=("$LOAD" memory -kind fill -redis "127.0.0.1:$REDIS_PORT" -stream notifications -count 300 -size 1000000)
		WL_NO_NCHAN="stream mode: nchan has no Redis Stream to resume from" ;;
	m)
		WL_ARGS=(-streams 20000 -users 20000 -proto h2 -streams-per-conn 250 -rate 1000 -duration "${DUR}s"
			-connect-concurrency 2000 -connect-timeout 60s)
		WL_LISTEN=http2 ;;
	s | s-change | s-h2 | s-h2-change)
		# Publishing covers the reload window (drain + retry + 2 s) and 3 s more.
		local drain_ms at_ms=5000
		drain_ms=$(duration_ms "$RELOAD_DRAIN")
		WL_ARGS=(-rate "$RELOAD_RATE" -duration "$((at_ms + drain_ms + 8000))ms" -reload-at "${at_ms}ms"
			-reload-drain "$RELOAD_DRAIN" -probe-interval 100ms -drain 5s -connect-timeout 60s)
		case $1 in
		s-h2*)
			WL_ARGS+=(-streams 20000 -users 20000 -proto h2 -streams-per-conn 250 -connect-concurrency 2000)
			WL_LISTEN=http2 ;;
		*) WL_ARGS+=(-streams 19000 -users 19000 -src-ips 2 -connect-concurrency 1000) ;;
		esac
		WL_RELOAD=same
		case $1 in *-change) WL_RELOAD=change ;; esac
		if [ -n "${BENCH_RELOAD_DRAIN:-}" ]; then WL_OPTS="reload_drain $RELOAD_DRAIN"; fi ;;
	t-group | t-list)
		WL_ARGS=(-streams 10000 -users 10000 -fan 1 -fan-by "${1#t-}" -rate "$FAN_RATE" -duration "${FAN_DUR}s")
		if [ "$1" = t-group ]; then
			WL_OPTS="groups_field groups"
			WL_AUTH_QUERY="?group_mod=1" # every user in g0
		fi
		WL_NO_NCHAN="it measures caddy-notify's CPU per delivery by group against a recipient list" ;;
	n | o | p | q)
		local base=a
		case $1 in o | q) base=d ;; esac
		workload $base
		case $1 in p | q) WL_ARGS+=(-proto h2 -streams-per-conn 250 -connect-concurrency 2000 -connect-timeout 60s) ;; esac
		WL_SCHEME=https
		WL_LISTEN="ssl http2" ;;
	*)
		echo "bench: unknown workload $1" >&2
		return 1
		;;
	esac
}

# run_caddy W: one workload (or variant) against a fresh Caddy.
run_caddy() {
	local w=$1 port dir=$OUT/caddy-$1 opts admin="admin off" reload=()
	mkdir -p "$dir"
	port=$($LOAD freeport)
	if [ -n "$WL_RELOAD" ]; then # the load tool reloads it through its admin API
		local adminport
		adminport=$($LOAD freeport)
		admin="admin 127.0.0.1:$adminport"
		reload=(-reload-admin "http://127.0.0.1:$adminport")
		if [ "$WL_RELOAD" = change ]; then reload+=(-reload-change notifications-v2); fi
	fi
	# The workload's own lines, then auth_concurrency when asked for, as
	# lines of the notify block.
	opts=$({
		printf '%s\n' "$WL_OPTS"
		if [ -n "$AUTH_CONCURRENCY" ]; then echo "auth_concurrency $AUTH_CONCURRENCY"; fi
	} | sed -e '/^$/d' -e 's/^/\t\t/')
	cat >"$dir/Caddyfile" <<EOF
{
	$admin
	auto_https off
	persist_config off
	grace_period 1s
	servers {
		protocols h1 h2 h2c
	}
}
$WL_SCHEME://127.0.0.1:$port {
	$( [ "$WL_SCHEME" = https ] && echo "tls $OUT/cert.pem $OUT/key.pem")
	notify /events {
		redis redis://127.0.0.1:$REDIS_PORT/0
		${WL_SOURCE:-$SOURCE_LINE}
		auth_url http://127.0.0.1:$AUTH_PORT/auth$WL_AUTH_QUERY
		heartbeat $HEARTBEAT
$opts
	}
	metrics /metrics
}
EOF
	redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
	if [ ${#WL_PRESTART[@]} -gt 0 ]; then
		echo "bench: ($w) before Caddy starts: notify-load ${WL_PRESTART[*]:1}"
		if ! "${WL_PRESTART[@]}" >"$dir/prestart.log" 2>&1; then
			cat "$dir/prestart.log" >&2
			return 0
		fi
	fi
	"$OUT/caddy" run --config "$dir/Caddyfile" --adapter caddyfile >"$dir/caddy.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	if ! wait_port "$port"; then # e.g. a subdirective this module does not know (BENCH_AUTH_CONCURRENCY)
		echo "bench: ($w) Caddy did not start; skipped. The end of $dir/caddy.log:" >&2
		tail -n 3 "$dir/caddy.log" >&2
		stop_pid "$pid"
		return 0
	fi
	sleep 1 # the Redis subscription
	if [ ${#WL_PRESTART[@]} -eq 0 ]; then
		redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
	fi
	echo "bench: ($w) caddy-notify"
	local common=(-label "caddy-$w" -url "$WL_SCHEME://127.0.0.1:$port/events" -server-pids "$pid"
		-metrics-url "http://127.0.0.1:$port/metrics")
	local mode=$MODE
	case $WL_SOURCE in stream*) mode=stream ;; channel*) mode=pubsub ;; esac
	# BENCH_PUBLISH=http: events go through notify_publish on a Caddy of
	# its own, as nchan's go through its publishing nginx.
	local pub=() pubpid=""
	if [ "$PUBLISH" = http ] && [ "$WL_TOOL" = run ]; then
		local pubport
		pubport=$($LOAD freeport)
		cat >"$dir/Caddyfile-pub" <<EOP
{
	admin off
	auto_https off
	persist_config off
	grace_period 1s
}
http://127.0.0.1:$pubport {
	notify_publish /publish {
		redis redis://127.0.0.1:$REDIS_PORT/0
		${WL_SOURCE:-$SOURCE_LINE}
	}
}
EOP
		GOMAXPROCS=1 "$OUT/caddy" run --config "$dir/Caddyfile-pub" --adapter caddyfile >"$dir/caddy-pub.log" 2>&1 &
		pubpid=$!
		PIDS+=("$pubpid")
		wait_port "$pubport"
		pub=(-publish http -pub-url "http://127.0.0.1:$pubport/publish" -pub-batch "$PUB_BATCH" -aux-pids "$pubpid")
	fi
	case $WL_TOOL in
	run)
		"$LOAD" run "${common[@]}" "${WL_ARGS[@]}" "${reload[@]}" -mode "$mode" -redis "127.0.0.1:$REDIS_PORT" "${pub[@]}" \
			-redis-pid "$REDIS_PID" -auth-stats "http://127.0.0.1:$AUTH_PORT/stats" -deadline 8m
		;;
	attack)
		"$LOAD" attack "${common[@]}" "${WL_ARGS[@]}" -auth-stats "http://127.0.0.1:$AUTH_PORT/stats" -deadline 3m
		;;
	memory)
		"$LOAD" memory "${common[@]}" "${WL_ARGS[@]}" -mode "$mode" -redis "127.0.0.1:$REDIS_PORT" -deadline 3m
		;;
	esac 2>&1 | tee "$OUT/caddy-$w.log" | grep -v '^{' || true
	stop_pid "$pid"
	if [ -n "$pubpid" ]; then stop_pid "$pubpid"; fi
}

# run_nchan W: one workload against fresh nginx+nchan servers.
run_nchan() {
	local w=$1 port pubport dir=$OUT/nchan-$1
	mkdir -p "$dir/tmp"
	port=$($LOAD freeport)
	pubport=$($LOAD freeport)
	local f
	# render F PREFIX: nginx's config F (sub or pub), its channel ids prefixed by PREFIX.
	render() {
		sed -e "s#@DIR@#$dir#g; s#@REDIS_PORT@#$REDIS_PORT#g; s#@AUTH_PORT@#$AUTH_PORT#g" \
			-e "s#@PORT@#$port#g; s#@PUB_PORT@#$pubport#g; s#@WORKERS@#$(nproc)#g" \
			-e "s#@LISTEN@#$WL_LISTEN#g; s#@CHANNEL_PREFIX@#$2#g" \
			-e "s#@TLS@#$([ "$WL_SCHEME" = https ] && echo "ssl_certificate $OUT/cert.pem; ssl_certificate_key $OUT/key.pem;")#g" \
			"$ROOT/bench/nchan-$1.conf.tmpl"
	}
	for f in sub pub; do
		render $f "" >"$dir/nginx-$f.conf"
		nginx -c "$dir/nginx-$f.conf" -p "$dir/" -g 'daemon off;' >"$dir/nginx-$f.out" 2>&1 &
		PIDS+=("$!")
		eval "${f}_pid=$!"
	done
	# (s): the load tool reloads the subscribers' nginx, with the same
	# config or with its channel ids prefixed by v2_ (the publisher then
	# posts to /pub-v2/<user>); the nginx master's CPU counts its workers,
	# the old ones included.
	local reload=() servers
	if [ -n "$WL_RELOAD" ]; then
		local sig="nginx -c $dir/nginx-sub.conf -p $dir/ -s reload"
		reload=(-reload-cmd "$sig")
		if [ "$WL_RELOAD" = change ]; then
			render sub v2_ >"$dir/nginx-sub-changed.conf"
			reload=(-reload-cmd "cp $dir/nginx-sub-changed.conf $dir/nginx-sub.conf && $sig"
				-reload-change v2_ -reload-pub-url "http://127.0.0.1:$pubport/pub-v2/{user}")
		fi
	fi
	wait_port "$port"
	wait_port "$pubport"
	sleep 0.5
	redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
	local workers pubworkers
	workers=$(pgrep -P "$sub_pid" | paste -sd, -)
	pubworkers=$(pgrep -P "$pub_pid" | paste -sd, -)
	servers=(-server-pids "$workers")
	if [ -n "$WL_RELOAD" ]; then servers=(-server-pids "$sub_pid" -server-tree); fi
	echo "bench: ($w) nchan"
	case $WL_TOOL in
	run)
		"$LOAD" run -label "nchan-$w" -url "$WL_SCHEME://127.0.0.1:$port/sub/{user}" "${WL_ARGS[@]}" "${reload[@]}" \
			-mode nchan -pub-url "http://127.0.0.1:$pubport/pub/{user}" -redis "127.0.0.1:$REDIS_PORT" \
			"${servers[@]}" -redis-pid "$REDIS_PID" -aux-pids "$pubworkers" \
			-auth-stats "http://127.0.0.1:$AUTH_PORT/stats" -deadline 8m
		;;
	attack) # {user}: a random one for the attacker, the legitimate user's own for the probes
		"$LOAD" attack -label "nchan-$w" -url "http://127.0.0.1:$port/sub/{user}" "${WL_ARGS[@]}" \
			-server-pids "$workers" -auth-stats "http://127.0.0.1:$AUTH_PORT/stats" -deadline 3m
		;;
	esac 2>&1 | tee "$OUT/nchan-$w.log" | grep -v '^{' || true
	stop_pid "$sub_pid"
	stop_pid "$pub_pid"
}

RUNS=""
for w in $WORKLOADS; do
	if [ "$w" = g ] && [ "$MODE" != stream ]; then
		echo "bench: (g) is the reconnect storm of stream mode; skipped (run it with BENCH_MODE=stream)"
		continue
	fi
	for r in $(runs_of "$w"); do
		workload "$r"
		RUNS+=" $r"
		for t in $TARGETS; do
			if [ "$t" = nchan ] && [ "$w" = f ]; then
				continue # h2c: nginx speaks HTTP/2 over TLS only, unless the whole listener is h2c
			fi
			if [ "$t" = nchan ] && [ -n "$WL_NO_NCHAN" ]; then
				echo "bench: ($r) not run against nchan: $WL_NO_NCHAN"
				continue
			fi
			"run_$t" "$r"
			sleep 2 # let the sockets of the last run go
		done
	done
done

{
	echo
	echo "## Results ($(date -u +%Y-%m-%dT%H:%MZ), BENCH_DURATION=$DUR, attacks ${ATTACK_DUR} s, auth_concurrency ${AUTH_CONCURRENCY:-(module default)})"
	echo
	"$LOAD" table -dir "$OUT" -workloads "$RUNS"
} | tee "$OUT/table.md"
