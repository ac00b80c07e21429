package notify

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-notify/notify/internal/testkit"
)

// The one harness that runs Caddy as a process: a binary built once per
// test run from ./cmd/caddy, run from a Caddyfile on disk with its admin
// API on a local port, so that a test can reload it as an operator does,
// stop it, kill it with SIGKILL and start it again on the same ports. The
// in-process harness (harness_test.go) is for everything else.

func TestMain(m *testing.M) {
	code := m.Run()
	if caddyBin.dir != "" {
		_ = os.RemoveAll(caddyBin.dir)
	}
	os.Exit(code)
}

// caddyBin is a Caddy binary with this module, built once per test run:
// without the race detector (it runs as separate processes, killed with
// SIGKILL) unless SOAK_RACE is set. Not in Caddy's own directory, where
// $XDG_DATA_HOME/caddy must be a directory.
var caddyBin struct {
	once sync.Once
	dir  string
	err  error
}

func caddyBinary(t testing.TB) string {
	t.Helper()
	caddyBin.once.Do(func() {
		caddyBin.dir, caddyBin.err = os.MkdirTemp("", "notify-caddy-")
		if caddyBin.err != nil {
			return
		}
		args := []string{"build", "-o", filepath.Join(caddyBin.dir, "caddy")}
		if os.Getenv("SOAK_RACE") != "" {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "./cmd/caddy")...).CombinedOutput()
		if err != nil {
			caddyBin.err = fmt.Errorf("building ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if caddyBin.err != nil {
		t.Fatal(caddyBin.err)
	}
	return filepath.Join(caddyBin.dir, "caddy")
}

// caddyProcess is a Caddy process serving one site on a loopback port, with
// its admin API on another.
type caddyProcess struct {
	t      testing.TB
	dir    string
	file   string // the Caddyfile
	port   int
	https  int // a free port for an https:// site of the routes: {https_port}
	admin  int
	global string            // global options besides the harness's own
	vars   *strings.Replacer // {redis}, {auth} and {https_port} in routes
	logs   *os.File
	http   *http.Client
	cmd    *exec.Cmd
	exited chan struct{}
}

// newCaddyProcess writes the Caddyfile of a process serving routes as the
// site http://127.0.0.1:<port>, with {redis} and {auth} replaced, without
// starting it. global is a Caddyfile fragment of further global options
// (grace_period 1s unless it says otherwise). routes may close the site and
// open others: {https_port} stands for a free port of the process's own.
// The process is killed when the test ends.
func newCaddyProcess(t testing.TB, redisURL, authURL, global, routes string) *caddyProcess {
	t.Helper()
	dir := t.TempDir()
	p := &caddyProcess{t: t, dir: dir, file: filepath.Join(dir, "Caddyfile"), port: testkit.FreePort(t),
		https: testkit.FreePort(t), admin: testkit.FreePort(t), http: &http.Client{Timeout: 30 * time.Second}}
	p.vars = strings.NewReplacer("{redis}", redisURL, "{auth}", authURL, "{https_port}", strconv.Itoa(p.https))
	p.global = p.vars.Replace(global)
	p.write(p.vars.Replace(block(routes)))
	logs, err := os.OpenFile(filepath.Join(dir, "caddy.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.logs = logs
	t.Cleanup(func() {
		p.kill()
		logs.Close()
		if t.Failed() {
			p.logTail(60)
		}
	})
	return p
}

// startCaddyProcess runs routes as the site of a new Caddy process, with
// {redis} and {auth} replaced, and waits until it listens.
func startCaddyProcess(t testing.TB, redisURL, authURL, routes string) *caddyProcess {
	t.Helper()
	p := newCaddyProcess(t, redisURL, authURL, "", routes)
	p.start()
	testkit.WaitFor(t, 30*time.Second, "caddy to listen", func() bool {
		c, err := net.Dial("tcp", p.Addr())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return p
}

// write writes the Caddyfile with routes as the site's.
func (p *caddyProcess) write(routes string) {
	p.t.Helper()
	global := p.global
	if !strings.Contains(global, "grace_period") {
		global += "\n\tgrace_period 1s"
	}
	if !strings.Contains(global, "auto_https") && !strings.Contains(global, "skip_install_trust") {
		global += "\n\tauto_https off"
	}
	cfg := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tstorage file_system %s\n"+
		"\tlog {\n\t\tlevel WARN\n\t}\n%s\n}\nhttp://127.0.0.1:%d {\n%s\n}\n",
		p.admin, filepath.Join(p.dir, "data"), strings.TrimLeft(global, "\n"), p.port, routes)
	if err := os.WriteFile(p.file, []byte(cfg), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

func (p *caddyProcess) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }
func (p *caddyProcess) base() string { return "http://" + p.Addr() }

// start runs Caddy without waiting for it: clients retry meanwhile.
func (p *caddyProcess) start() {
	p.t.Helper()
	cmd := exec.Command(caddyBinary(p.t), "run", "--config", p.file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+p.dir, "XDG_DATA_HOME="+p.dir, "XDG_CONFIG_HOME="+p.dir)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting caddy: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.cmd, p.exited = cmd, exited
}

// kill ends Caddy with SIGKILL: no Cleanup, no stream is ended cleanly.
func (p *caddyProcess) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

// waitUp waits until the site answers at path: 401 to a request without a
// token means the config runs.
func (p *caddyProcess) waitUp(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-p.exited:
			p.logTail(40)
			return errors.New("caddy exited; its log is above")
		default:
		}
		resp, err := client.Get(p.base() + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		if time.Now().After(deadline) {
			p.logTail(40)
			return fmt.Errorf("caddy not serving after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reload posts the Caddyfile to the admin API; must-revalidate makes Caddy
// load it although it is unchanged, as `caddy reload --force` does. The
// Caddyfile is the one on disk, or routes as the site's when given.
func (p *caddyProcess) reload(routes ...string) error {
	if len(routes) > 0 {
		p.write(p.vars.Replace(block(routes[0])))
	}
	body, err := os.ReadFile(p.file)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", p.admin), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST /load: %d %s", resp.StatusCode, b)
	}
	return nil
}

// scrape adds the caddy_notify_ samples of the running process to into: a
// process's counters die with it, so a test scrapes before each kill.
func (p *caddyProcess) scrape(into map[string]float64) {
	resp, err := p.http.Get(p.base() + "/metrics")
	if err != nil {
		p.t.Logf("scraping metrics: %v", err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(b), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(name, "caddy_notify_") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			into[name] += v
		}
	}
}

// checkLog fails the test when the process (built with SOAK_RACE) reported
// a data race.
func (p *caddyProcess) checkLog() {
	b, _ := os.ReadFile(filepath.Join(p.dir, "caddy.log"))
	if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
		p.t.Errorf("Caddy reported a data race:\n%s", b[i:min(len(b), i+8000)])
	}
}

// logTail logs the end of Caddy's log.
func (p *caddyProcess) logTail(n int) {
	b, _ := os.ReadFile(filepath.Join(p.dir, "caddy.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	p.t.Logf("caddy on port %d, its log (last %d lines):\n%s", p.port, n, strings.Join(lines[max(0, len(lines)-n):], "\n"))
}
