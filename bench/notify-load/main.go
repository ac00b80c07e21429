// Command notify-load is the load tool of caddy-notify: it opens many
// Server-Sent-Events streams against the notify handler (or nchan, for a
// comparison), publishes events to Redis at a given rate, and reports what
// arrived, how late, and what the server spent doing it.
//
//	notify-load auth -listen 127.0.0.1:9001        # the auth API alone
//	notify-load run -url http://127.0.0.1:8080/events -streams 1000 -users 1000 \
//	    -rate 1000 -duration 20s -redis 127.0.0.1:6390 -server-pids 1234
//
// `run` starts worker processes (`notify-load worker`, one per ~18,000
// sockets) which hold the streams, publishes from the parent, and prints a
// report whose last line is a one-line JSON summary. See BENCHMARKS.md.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  notify-load run [flags]     open streams, publish, report (run -h for flags)
  notify-load auth [flags]    serve the test auth API: token u<N> is user N
  notify-load attack [flags]  h2c rapid reset or HTTP/1.1 token flood, with a legitimate user (attack -h)
  notify-load memory [flags]  a stream that never reads, a huge message, a replay of 300 MB (memory -h)
  notify-load table -dir D    markdown table of the runs logged in D (caddy-<w>.log, nchan-<w>.log)
  notify-load freeport        print a free loopback port
  notify-load worker [flags]  (internal) one process of streams
`)
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(runMain(os.Args[2:]))
	case "auth":
		os.Exit(authMain(os.Args[2:]))
	case "attack":
		os.Exit(attackMain(os.Args[2:]))
	case "memory":
		os.Exit(memoryMain(os.Args[2:]))
	case "worker":
		os.Exit(workerMain(os.Args[2:]))
	case "table":
		os.Exit(tableMain(os.Args[2:]))
	case "freeport":
		os.Exit(freeportMain(os.Args[2:]))
	case "-h", "-help", "--help", "help":
		usage()
	default:
		// Flags without a subcommand mean run.
		os.Exit(runMain(os.Args[1:]))
	}
}

func jsonEncode(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
