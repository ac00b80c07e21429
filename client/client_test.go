package client

import (
	"io/fs"
	"regexp"
	"slices"
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
