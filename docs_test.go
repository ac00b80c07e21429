package notify

import (
	"bufio"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-notify/notify/internal/testkit"
)

// The documentation's tests: every example adapts and validates, the
// publishing example runs as printed, every setting, metric and error of
// the code is documented (and nothing documented is missing from the
// code), links resolve, and no page shows a password's working hash.

// docPages are the user-facing pages.
func docPages(t *testing.T) []string {
	t.Helper()
	pages, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"README.md", "CONTRIBUTING.md", "BENCHMARKS.md"}, pages...)
}

func readPage(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fence is one fenced code block of a page.
type fence struct {
	page, info, body, marker string
	line                     int
}

// fences returns a page's fenced blocks, with the `<!-- docs-test: x -->`
// marker on the line before each, if any.
func fences(page, text string) []fence {
	var out []fence
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimLeft(lines[i], " ")
		if !strings.HasPrefix(trimmed, "```") {
			continue
		}
		indent := len(lines[i]) - len(trimmed)
		f := fence{page: page, info: strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), line: i + 1}
		if i > 0 {
			if m := regexp.MustCompile(`^<!-- docs-test: ([\w-]+) -->$`).FindStringSubmatch(strings.TrimSpace(lines[i-1])); m != nil {
				f.marker = m[1]
			}
		}
		var body []string
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
			body = append(body, strings.TrimPrefix(lines[i], strings.Repeat(" ", indent)))
		}
		f.body = strings.Join(body, "\n") + "\n"
		out = append(out, f)
	}
	return out
}

// docsEnv sets the environment the examples' placeholders name.
func docsEnv(t *testing.T) {
	t.Setenv("AUTH_URL", "http://127.0.0.1:1/auth")
	t.Setenv("REDIS_URL", "redis://127.0.0.1:1")
	hash, err := bcrypt.GenerateFromPassword([]byte("docs-test"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUBLISH_PASSWORD_HASH", string(hash))
}

// TestDocsCaddyfiles: every Caddyfile block of the docs is formatted as
// caddy fmt writes it, adapts without warnings, and validates (its modules
// provision); a block whose fence says "caddyfile fragment" is a site's
// body, wrapped in a site first.
func TestDocsCaddyfiles(t *testing.T) {
	docsEnv(t)
	n := 0
	for _, page := range docPages(t) {
		for _, f := range fences(page, readPage(t, page)) {
			kind := strings.Fields(f.info + " x")[0]
			if kind != "caddyfile" {
				continue
			}
			n++
			t.Run(fmt.Sprintf("%s:%d", f.page, f.line), func(t *testing.T) {
				if got := string(caddyfile.Format([]byte(f.body))); got != f.body {
					t.Errorf("not formatted as caddy fmt writes it; it would be:\n%s", got)
				}
				body := f.body
				if strings.Contains(f.info, "fragment") {
					body = "example.com {\n\t" + strings.ReplaceAll(strings.TrimSuffix(body, "\n"), "\n", "\n\t") + "\n}\n"
				}
				if strings.Contains(body, "rate_limit") {
					// caddy-ratelimit is not in this module: examples/ratelimit
					// adapts, validates and runs this block with it.
					return
				}
				checkCaddyfile(t, body)
			})
		}
	}
	if n < 10 {
		t.Fatalf("only %d Caddyfile blocks found", n)
	}
}

// checkCaddyfile adapts and validates a Caddyfile.
func checkCaddyfile(t *testing.T, body string) {
	t.Helper()
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v\n%s", err, body)
	}
	for _, w := range warnings {
		t.Errorf("adapter warning: %s", w.String())
	}
	validateJSON(t, cfgJSON)
}

// validateJSON provisions and validates a config without running it, as
// caddy validate does.
func validateJSON(t *testing.T, cfgJSON []byte) {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("validating: %v\n%s", err, cfgJSON)
	}
}

// TestDocsJSON: every JSON block holding a handler (or a whole config)
// validates.
func TestDocsJSON(t *testing.T) {
	docsEnv(t)
	n := 0
	for _, page := range docPages(t) {
		for _, f := range fences(page, readPage(t, page)) {
			if f.info != "json" {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(f.body), &v); err != nil {
				t.Errorf("%s:%d: not JSON: %v", f.page, f.line, err)
				continue
			}
			var cfg []byte
			switch {
			case v["handler"] != nil:
				cfg = []byte(`{"admin":{"disabled":true},"apps":{"http":{"servers":{"docs":{"listen":["127.0.0.1:0"],"routes":[{"handle":[` + f.body + `]}]}}}}}`)
			case v["apps"] != nil:
				cfg = []byte(f.body)
			default:
				continue // a message, not a config
			}
			n++
			t.Run(fmt.Sprintf("%s:%d", f.page, f.line), func(t *testing.T) { validateJSON(t, cfg) })
		}
	}
	if n < 2 {
		t.Fatalf("only %d JSON configs found", n)
	}
}

// TestDocsPublishExample runs the notify_publish example as printed: its
// site, with the environment it names, and its curl commands, whose
// messages reach the streams they name.
func TestDocsPublishExample(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed (apt-get install -y curl): the publishing example is run with it")
	}
	var site, commands string
	for _, f := range fences("docs/publishing.md", readPage(t, "docs/publishing.md")) {
		switch f.marker {
		case "publish-example":
			site = f.body
		case "publish-commands":
			commands = f.body
		}
	}
	if site == "" || commands == "" {
		t.Fatal("docs/publishing.md has no block marked publish-example or publish-commands")
	}
	rs := testkit.StartRedis(t)
	auth := testkit.StartAuthAPI(t, map[string]testkit.AuthReply{
		"u42-token": {Status: 200, Body: `{"user_id":42,"groups":["org:9"]}`},
		"u7-token":  {Status: 200, Body: `{"user_id":"someone","groups":["org:7"]}`},
	})
	const password = "a test password"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AUTH_URL", auth.URL)
	t.Setenv("REDIS_URL", rs.URL())
	t.Setenv("PUBLISH_PASSWORD_HASH", string(hash))
	port := testkit.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if !strings.HasPrefix(site, "example.com {") {
		t.Fatalf("the example is not the site example.com:\n%s", site)
	}
	loadCaddyfile(t, "{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tlog {\n\t\tlevel ERROR\n\t}\n}\n"+
		strings.Replace(site, "example.com {", base+" {", 1))
	u42 := openStreamWhenUp(t, base+"/events", "u42-token", "")
	u7 := openStreamWhenUp(t, base+"/events", "u7-token", "")

	// Each command, with its continuation lines, and the answer its
	// comment promises.
	type command struct{ line, answer string }
	var cmds []command
	var cur []string
	sc := bufio.NewScanner(strings.NewReader(commands))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "# "):
			cmds[len(cmds)-1].answer = strings.TrimPrefix(line, "# ")
		case line == "":
		case strings.HasSuffix(line, "\\"):
			cur = append(cur, strings.TrimSuffix(line, "\\"))
		default:
			cur = append(cur, line)
			cmds = append(cmds, command{line: strings.Join(cur, " ")})
			cur = nil
		}
	}
	if len(cmds) != 2 {
		t.Fatalf("%d commands, want 2", len(cmds))
	}
	for _, c := range cmds {
		if !strings.HasPrefix(c.line, "curl ") || !strings.Contains(c.line, "https://example.com/internal/publish") {
			t.Fatalf("not a curl to the example's endpoint: %s", c.line)
		}
		line := strings.Replace(c.line, "https://example.com/internal/publish", base+"/internal/publish", 1)
		line = strings.Replace(line, "curl ", curl+" -s -w ' %{http_code}' ", 1)
		cmd := exec.Command("bash", "-c", line)
		cmd.Env = append(os.Environ(), "PUBLISH_PASSWORD="+password)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		answer := strings.TrimSpace(string(out))
		cut := strings.LastIndex(answer, " ")
		body, status := answer[:max(cut, 0)], answer[cut+1:]
		wantStatus, wantBody, _ := strings.Cut(c.answer, " ")
		if status != wantStatus {
			t.Fatalf("%s: status %s %s, the page says %s", c.line, status, body, c.answer)
		}
		var got, want struct{ IDs []string }
		if json.Unmarshal([]byte(body), &got) != nil || json.Unmarshal([]byte(wantBody), &want) != nil || len(got.IDs) != len(want.IDs) {
			t.Fatalf("%s: answered %s, the page says %s", c.line, body, c.answer)
		}
	}
	// The first command names user 42, the second 42 (with 43) and org:7.
	for _, want := range []string{`{"recipient_id":"42","type":"order_paid","order":1234}`, `{"recipient_id":[42,43],"type":"team_update"}`} {
		if ev := u42.Next(t, 5*time.Second); ev.Data != want {
			t.Errorf("user 42 got %q, want %q", ev.Data, want)
		}
	}
	if ev := u7.Next(t, 5*time.Second); ev.Data != `{"groups":"org:7","type":"maintenance"}` {
		t.Errorf("the member of org:7 got %q", ev.Data)
	}
	// The password is required.
	resp, err := http.Post(base+"/internal/publish", "application/json", strings.NewReader(`{"recipient_id":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without the password: %d, want 401", resp.StatusCode)
	}
}

// knownPasswords are passwords any reader may know: examples' favourites,
// and Caddy's documentation's.
var knownPasswords = []string{"hiccup", "password", "secret", "s3cret", "admin", "changeme", "123456", "backend", "hunter2", "test"}

var bcryptPattern = regexp.MustCompile(`\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}`)

// hashProblems returns what is wrong with a page's password hashes: a
// literal hash of a password the page prints (after -u user:, or given to
// hash-password) or of a well-known one, and a notify_publish example
// behind basic_auth whose hash is not a placeholder.
func hashProblems(page string) []string {
	var problems []string
	candidates := slices.Clone(knownPasswords)
	for _, m := range regexp.MustCompile(`-u\s+"?[\w.-]+:([^"\s]+)"?`).FindAllStringSubmatch(page, -1) {
		candidates = append(candidates, m[1])
	}
	for _, m := range regexp.MustCompile(`--plaintext\s+'([^']*)'`).FindAllStringSubmatch(page, -1) {
		candidates = append(candidates, m[1])
	}
	for _, h := range bcryptPattern.FindAllString(page, -1) {
		for _, pw := range candidates {
			if bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)) == nil {
				problems = append(problems, fmt.Sprintf("the hash %s… is the hash of %q", h[:12], pw))
			}
		}
	}
	for _, f := range fences("", page) {
		if !strings.HasPrefix(f.info, "caddyfile") || !strings.Contains(f.body, "notify_publish") || !strings.Contains(f.body, "basic_auth") {
			continue
		}
		if bcryptPattern.MatchString(f.body) {
			problems = append(problems, fmt.Sprintf("line %d: notify_publish behind basic_auth with a literal hash: take it from a placeholder ({env.…})", f.line))
		}
	}
	return problems
}

// TestDocsShowNoWorkingPasswordHash: no page shows a working hash of a
// password it prints or of a well-known one, and the check catches the
// hash from Caddy's own documentation (of "hiccup").
func TestDocsShowNoWorkingPasswordHash(t *testing.T) {
	caught := hashProblems("```caddyfile\nroute {\n\tbasic_auth {\n\t\tbackend $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG\n\t}\n\tnotify_publish\n}\n```\n")
	if len(caught) != 2 {
		t.Fatalf("the check misses Caddy's documented hash of hiccup: %q", caught)
	}
	for _, page := range docPages(t) {
		for _, p := range hashProblems(readPage(t, page)) {
			t.Errorf("%s: %s", page, p)
		}
	}
}

// subdirectives are the JSON names of a handler's settings, the Caddyfile's
// too.
func subdirectives(v any) []string {
	var names []string
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for i := range ty.NumField() {
			f := ty.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
				names = append(names, name)
			}
		}
	}
	walk(reflect.TypeOf(v))
	return names
}

// TestDocsCoverSettings: every setting of notify and notify_publish is in
// the configuration reference, and every setting the reference's tables
// name exists.
func TestDocsCoverSettings(t *testing.T) {
	ref := readPage(t, "docs/configuration.md")
	known := append(subdirectives(Handler{}), subdirectives(PublishHandler{})...)
	for _, name := range known {
		if !strings.Contains(ref, "| `"+name+" ") && !strings.Contains(ref, "| `"+name+"`") {
			t.Errorf("docs/configuration.md has no table row for %s", name)
		}
	}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)[ `]").FindAllStringSubmatch(ref, -1) {
		if !slices.Contains(known, m[1]) {
			t.Errorf("docs/configuration.md documents %s, which is no setting", m[1])
		}
	}
}

// TestDocsCoverMetrics: every metric is documented, and every metric the
// docs name exists.
func TestDocsCoverMetrics(t *testing.T) {
	descs := make(chan *prometheus.Desc, 100)
	for _, c := range append(notifyMetrics.Collectors(), publishedTotal) {
		c.Describe(descs)
	}
	close(descs)
	var names []string
	for d := range descs {
		m := regexp.MustCompile(`fqName: "([^"]+)"`).FindStringSubmatch(d.String())
		names = append(names, m[1])
	}
	ref := readPage(t, "docs/metrics-and-errors.md")
	for _, n := range names {
		if !strings.Contains(ref, "`"+n+"`") {
			t.Errorf("docs/metrics-and-errors.md does not document %s", n)
		}
	}
	for _, page := range docPages(t) {
		for _, m := range regexp.MustCompile(`caddy_notify_[a-z_]+`).FindAllString(readPage(t, page), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
			if !slices.Contains(names, m) && !slices.Contains(names, base) {
				t.Errorf("%s names %s, which is no metric", page, m)
			}
		}
	}
}

// errorMessages returns the messages of the code's refusals: the string
// literals given to refuse, writeError and messageError, the Msg of auth
// errors, and the msg and errMsg constants.
func errorMessages(t *testing.T) []string {
	t.Helper()
	var msgs []string
	fset := token.NewFileSet()
	for _, dir := range []string{".", "internal/auth"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			lit := func(e ast.Expr) {
				if b, ok := e.(*ast.BasicLit); ok && b.Kind == token.STRING {
					if s, err := strconv.Unquote(b.Value); err == nil && s != "" && unicode.IsUpper(rune(s[0])) && strings.HasSuffix(s, ".") {
						msgs = append(msgs, s)
					}
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.CallExpr:
					name := ""
					switch fn := n.Fun.(type) {
					case *ast.Ident:
						name = fn.Name
					case *ast.SelectorExpr:
						name = fn.Sel.Name
					}
					if name == "refuse" || name == "writeError" || name == "messageError" {
						for _, a := range n.Args {
							lit(a)
						}
					}
				case *ast.KeyValueExpr:
					if k, ok := n.Key.(*ast.Ident); ok && k.Name == "Msg" {
						lit(n.Value)
					}
				case *ast.ValueSpec:
					for i, id := range n.Names {
						if (strings.HasPrefix(id.Name, "msg") || strings.HasPrefix(id.Name, "errMsg")) && i < len(n.Values) {
							lit(n.Values[i])
						}
					}
				}
				return true
			})
		}
	}
	slices.Sort(msgs)
	return slices.Compact(msgs)
}

// TestDocsCoverErrors: every refusal's message is in the error tables, and
// every message the tables give exists.
func TestDocsCoverErrors(t *testing.T) {
	msgs := errorMessages(t)
	if len(msgs) < 20 {
		t.Fatalf("found only %d error messages in the code: %q", len(msgs), msgs)
	}
	ref := readPage(t, "docs/metrics-and-errors.md")
	for _, m := range msgs {
		if !strings.Contains(ref, "`"+m+"`") {
			t.Errorf("docs/metrics-and-errors.md does not document the error %q", m)
		}
	}
	for _, m := range regexp.MustCompile("(?m)^\\| [0-9]{3} \\| `([^`]+)`").FindAllStringSubmatch(ref, -1) {
		if !slices.Contains(msgs, m[1]) {
			t.Errorf("docs/metrics-and-errors.md documents the error %q, which the code never gives", m[1])
		}
	}
}

// anchor is GitHub's anchor of a heading.
func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the anchors of a page's headings (outside code blocks).
func anchors(text string) map[string]bool {
	out := map[string]bool{}
	inCode := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inCode = !inCode
		}
		if !inCode && strings.HasPrefix(line, "#") {
			out[anchor(strings.TrimSpace(strings.TrimLeft(line, "#")))] = true
		}
	}
	return out
}

// TestDocsLinks: every relative link of the docs reaches a file, and every
// anchor a heading of it.
func TestDocsLinks(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range docPages(t) {
		text := readPage(t, page)
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			file := page
			if path != "" {
				file = filepath.Join(filepath.Dir(page), path)
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s: link %s: %v", page, target, err)
					continue
				}
			}
			if frag != "" && strings.HasSuffix(file, ".md") && !anchors(readPage(t, file))[frag] {
				t.Errorf("%s: link %s: no such heading in %s", page, target, file)
			}
		}
	}
}

// TestDocsNothingStale: user-facing pages name no internal milestone and no
// test.
func TestDocsNothingStale(t *testing.T) {
	stale := regexp.MustCompile(`\b[Ii]ssues? #?\d+|\bTest[A-Z][A-Za-z]+\b`)
	for _, page := range docPages(t) {
		if page == "CONTRIBUTING.md" {
			continue
		}
		for i, line := range strings.Split(readPage(t, page), "\n") {
			if m := stale.FindString(line); m != "" {
				t.Errorf("%s:%d: %q", page, i+1, m)
			}
		}
	}
}
