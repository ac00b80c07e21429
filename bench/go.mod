module github.com/caddy-notify/notify/bench

go 1.26.0

require (
	github.com/redis/go-redis/v9 v9.23.0
	golang.org/x/net v0.60.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
)

// The publish package of the plugin: the load tool partitions events with
// the module's own function.
require github.com/caddy-notify/notify v0.0.0

replace github.com/caddy-notify/notify => ../
