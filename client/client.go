// Package client holds the browser client of caddy-notify, notify.js (an ES
// module with no dependencies) and its TypeScript declarations, notify.d.ts,
// so that a Go program can serve them from its binary:
//
//	mux.Handle("GET /static/notify/", http.StripPrefix("/static/notify/", http.FileServerFS(client.Files)))
//
// The package imports only the standard library; the plugin does not use it.
package client

import "embed"

// Files holds notify.js and notify.d.ts at its root.
//
//go:embed notify.js notify.d.ts
var Files embed.FS
