package testkit

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Nginx is an nginx process owned by one test, run in the foreground from a
// config of its own in a temporary directory.
type Nginx struct {
	Port int // the port the test's server block listens on
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// nginxPath finds Debian's nginx: /usr/sbin is not on every user's PATH.
func nginxPath(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("nginx")
	if err == nil {
		return path
	}
	if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
		return "/usr/sbin/nginx"
	}
	t.Fatalf("nginx is not installed (apt-get install -y nginx-light, or make test-deps): %v", err)
	return ""
}

// StartNginx runs nginx with http as the body of its http block, whose
// server must listen on 127.0.0.1:port, and waits until it accepts
// connections. Every path nginx writes to (pid, logs, temporary files) is
// in a directory of the test's; nginx runs as one process (master_process
// off) so that killing it leaves no worker behind. It is killed when the
// test ends; its error log is printed if the test failed.
func StartNginx(t testing.TB, port int, http string) *Nginx {
	t.Helper()
	bin := nginxPath(t)
	n := &Nginx{Port: port, dir: t.TempDir()}
	var temps bytes.Buffer
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "\t%s_temp_path %s;\n", d, filepath.Join(n.dir, d))
	}
	conf := fmt.Sprintf("daemon off;\nmaster_process off;\npid %s;\nerror_log %s warn;\n"+
		"events {\n\tworker_connections 1024;\n}\nhttp {\n\taccess_log off;\n%s%s\n}\n",
		filepath.Join(n.dir, "nginx.pid"), n.errorLog(), temps.String(), http)
	file := filepath.Join(n.dir, "nginx.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// -e: the error log before the config is read (else /var/log/nginx).
	n.cmd = exec.Command(bin, "-p", n.dir, "-e", n.errorLog(), "-c", file)
	var out bytes.Buffer
	n.cmd.Stdout, n.cmd.Stderr = &out, &out
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	n.done = make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		_ = n.cmd.Process.Kill()
		<-n.done
		if t.Failed() {
			t.Logf("nginx error log:\n%s", n.log())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-n.done:
			t.Fatalf("nginx exited: %s\n%s\nits config:\n%s", out.String(), n.log(), conf)
		default:
		}
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			c.Close()
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not listening on port %d after 10s: %v\n%s", port, err, n.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (n *Nginx) errorLog() string { return filepath.Join(n.dir, "error.log") }

// log returns nginx's error log.
func (n *Nginx) log() string {
	b, _ := os.ReadFile(n.errorLog())
	return string(b)
}
