package client

import (
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDeclarationsMatchExports: notify.d.ts declares exactly what notify.js
// exports, so that a rename in one cannot leave TypeScript users with a
// name that does not exist (the behaviour itself is tested in Chromium, in
// examples/clienttest).
func TestDeclarationsMatchExports(t *testing.T) {
	js, err := fs.ReadFile(Files, "notify.js")
	if err != nil {
		t.Fatal(err)
	}
	dts, err := fs.ReadFile(Files, "notify.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	names := func(re *regexp.Regexp, src []byte) []string {
		var out []string
		for _, m := range re.FindAllSubmatch(src, -1) {
			out = append(out, string(m[1]))
		}
		slices.Sort(out)
		return out
	}
	exported := names(regexp.MustCompile(`(?m)^export (?:async )?(?:function|class|const|let) (\w+)`), js)
	declared := names(regexp.MustCompile(`(?m)^export declare (?:function|class|const) (\w+)`), dts)
	if len(exported) == 0 || !slices.Equal(exported, declared) {
		t.Fatalf("notify.js exports %v, notify.d.ts declares %v", exported, declared)
	}
}

// TestClientMembersDeclared: the public methods and getters of
// NotifyClient in notify.js are the members notify.d.ts declares for it.
func TestClientMembersDeclared(t *testing.T) {
	body := func(name, src, start string) string {
		t.Helper()
		_, rest, ok := strings.Cut(src, start)
		if !ok {
			t.Fatalf("%s: no %q", name, start)
		}
		end := strings.Index(rest, "\n}\n")
		if end < 0 {
			t.Fatalf("%s: %q does not end", name, start)
		}
		return rest[:end]
	}
	members := func(re *regexp.Regexp, src string) []string {
		var out []string
		for _, m := range re.FindAllStringSubmatch(src, -1) {
			if m[1] != "constructor" {
				out = append(out, m[1])
			}
		}
		slices.Sort(out)
		return out
	}
	js, err := fs.ReadFile(Files, "notify.js")
	if err != nil {
		t.Fatal(err)
	}
	dts, err := fs.ReadFile(Files, "notify.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	defined := members(regexp.MustCompile(`(?m)^  (?:get )?([A-Za-z]\w*)\(`), body("notify.js", string(js), "export class NotifyClient {"))
	declared := members(regexp.MustCompile(`(?m)^  (?:readonly )?([A-Za-z]\w*)[(:]`), body("notify.d.ts", string(dts), "export declare class NotifyClient {"))
	if len(defined) == 0 || !slices.Equal(defined, declared) {
		t.Fatalf("NotifyClient has %v in notify.js, %v in notify.d.ts", defined, declared)
	}
}
