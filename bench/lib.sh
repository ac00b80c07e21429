# bench/lib.sh — helpers shared by bench/run.sh and bench/profile.sh; source
# it after setting OUT (the output directory) and GO.

# build_tools: Caddy with the module (root module) and the load tool (the
# bench module, built from its own directory), into $OUT; sets LOAD.
build_tools() {
	$GO build -o "$OUT/caddy" ./cmd/caddy
	$GO -C bench build -o "$OUT/notify-load" ./notify-load
	LOAD=$OUT/notify-load
}

# Every background process started goes into PIDS and is stopped on exit.
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pid PID: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
	local i
	kill "$1" 2>/dev/null || return 0
	for i in $(seq 100); do
		kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	kill -9 "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (10 s at most).
wait_port() {
	local i
	for i in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "${0##*/}: nothing listens on port $1" >&2
	return 1
}
