package notify

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/testkit"
)

// Real Redis deployments for the scaling tests (cluster_test.go,
// sentinel_test.go, instances_test.go): a Redis Cluster and a Sentinel
// set-up built from redis-server processes on loopback ports, and Caddy
// processes (caddyproc_test.go), each cleaned up by t.Cleanup.

// redisCLI returns the path of redis-cli, which the redis-server package
// brings along.
func redisCLI(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli is not installed (apt-get install -y redis-server): %v", err)
	}
	return path
}

// runCLI runs redis-cli with args and returns its output.
func runCLI(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, redisCLI(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testCluster is a Redis Cluster of three masters with one replica each,
// every node protected by a password.
type testCluster struct {
	t        testing.TB
	password string
	nodes    []*testkit.Redis
}

// clusterPassword and the sentinel passwords below must never reach a log.
const (
	clusterPassword      = "clu-pw-51d7"
	sentinelDataPassword = "sen-data-pw-90ce"
	sentinelPassword     = "sen-sent-pw-3b12"
)

// startCluster starts six cluster-enabled redis-servers and joins them with
// redis-cli --cluster create. Failures are detected after one second
// (cluster-node-timeout), a replica always stands for election, and the
// masters that are up keep serving their slots while another's are
// uncovered (cluster-require-full-coverage no, so that a test sees which
// partitions a fault really stops).
func startCluster(t testing.TB) *testCluster {
	t.Helper()
	redisCLI(t)
	tc := &testCluster{t: t, password: clusterPassword}
	addrs := make([]string, 6)
	for i := range addrs {
		rs := testkit.NewRedis(t, testkit.FreePort(t), "--requirepass", tc.password, "--masterauth", tc.password,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-port", strconv.Itoa(testkit.FreePort(t)),
			"--cluster-replica-validity-factor", "0", "--cluster-require-full-coverage", "no")
		rs.Start()
		tc.nodes = append(tc.nodes, rs)
		addrs[i] = rs.Addr()
	}
	tc.cli(append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")...)
	tc.waitHealthy()
	return tc
}

// cli runs redis-cli with the cluster's password.
func (tc *testCluster) cli(args ...string) string {
	tc.t.Helper()
	return runCLI(tc.t, append([]string{"-a", tc.password, "--no-auth-warning"}, args...)...)
}

// URL is the module's URL for the cluster, with three seeds.
func (tc *testCluster) URL() string {
	return "redis+cluster://:" + tc.password + "@" + tc.nodes[0].Addr() + "," + tc.nodes[1].Addr() + "," + tc.nodes[2].Addr()
}

// client is a cluster client for the test's own commands. It never retries
// a command: after a lost reply (a killed connection), a retried PUBLISH or
// XADD would publish the message twice, which its streams would then
// rightly receive twice.
func (tc *testCluster) client() *redis.ClusterClient {
	addrs := make([]string, len(tc.nodes))
	for i, n := range tc.nodes {
		addrs[i] = n.Addr()
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, Password: tc.password, MaxRetries: -1})
	tc.t.Cleanup(func() { c.Close() })
	return c
}

func (tc *testCluster) running() []*testkit.Redis {
	return slices.DeleteFunc(slices.Clone(tc.nodes), func(n *testkit.Redis) bool { return !n.Running() })
}

// slotRange is a range of slots, its master and its live replicas.
type slotRange struct {
	start, end int64
	master     string // address
	replicas   int
}

// slotMap returns the cluster's slot ranges as node n sees them.
func slotMap(ctx context.Context, n *testkit.Redis) ([]slotRange, error) {
	c := n.Client()
	defer c.Close()
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []slotRange
	for _, sh := range shards {
		master, replicas := "", 0
		for _, nd := range sh.Nodes {
			switch {
			case nd.Health != "online":
			case nd.Role == "master":
				master = net.JoinHostPort(nd.IP, strconv.FormatInt(nd.Port, 10))
			default:
				replicas++
			}
		}
		for _, r := range sh.Slots {
			out = append(out, slotRange{r.Start, r.End, master, replicas})
		}
	}
	return out, nil
}

// waitHealthy waits until every running node says cluster_state:ok, they
// all see the same masters for every slot, and every master has a replica
// whose link to it is up.
func (tc *testCluster) waitHealthy() {
	tc.t.Helper()
	ctx := context.Background()
	testkit.WaitFor(tc.t, 60*time.Second, "the cluster to be ok, with a linked replica per master", func() bool {
		var want string
		for _, n := range tc.running() {
			c := n.Client()
			info, _ := c.ClusterInfo(ctx).Result()
			repl, _ := c.Info(ctx, "replication").Result()
			c.Close()
			if !strings.Contains(info, "cluster_state:ok") ||
				(strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up")) {
				return false
			}
			slots, err := slotMap(ctx, n)
			if err != nil {
				return false
			}
			total, ranges := 0, []string{}
			for _, s := range slots {
				if s.master == "" || s.replicas < 1 {
					return false
				}
				total += int(s.end - s.start + 1)
				ranges = append(ranges, fmt.Sprintf("%d-%d:%s", s.start, s.end, s.master))
			}
			slices.Sort(ranges)
			sig := strings.Join(ranges, " ")
			if total != 16384 || (want != "" && sig != want) {
				return false
			}
			want = sig
		}
		return true
	})
}

// node returns the running node at addr.
func (tc *testCluster) node(addr string) *testkit.Redis {
	tc.t.Helper()
	for _, n := range tc.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	tc.t.Fatalf("no cluster node at %s", addr)
	return nil
}

// slotOf returns the hash slot of key.
func (tc *testCluster) slotOf(key string) int64 {
	tc.t.Helper()
	c := tc.running()[0].Client()
	defer c.Close()
	slot, err := c.ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		tc.t.Fatalf("CLUSTER KEYSLOT: %v", err)
	}
	return slot
}

// masterOf returns the master that serves slot, as a running node sees it.
func (tc *testCluster) masterOf(slot int64) *testkit.Redis {
	tc.t.Helper()
	slots, err := slotMap(context.Background(), tc.running()[0])
	if err != nil {
		tc.t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	for _, s := range slots {
		if s.start <= slot && slot <= s.end {
			return tc.node(s.master)
		}
	}
	tc.t.Fatalf("slot %d is not served", slot)
	return nil
}

// masters returns the running masters.
func (tc *testCluster) masters() []*testkit.Redis {
	tc.t.Helper()
	slots, err := slotMap(context.Background(), tc.running()[0])
	if err != nil {
		tc.t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	var out []*testkit.Redis
	for _, s := range slots {
		if n := tc.node(s.master); !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// nodeID returns the cluster node ID of n.
func nodeID(t testing.TB, n *testkit.Redis) string {
	t.Helper()
	c := n.Client()
	defer c.Close()
	id, err := c.Do(context.Background(), "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatalf("CLUSTER MYID: %v", err)
	}
	return id
}

// waitPromoted waits, after master m was killed, until the other nodes
// have promoted its replica to serve slot; restore then brings m back as a
// replica.
func (tc *testCluster) waitPromoted(m *testkit.Redis, slot int64) (restore func()) {
	tc.t.Helper()
	testkit.WaitFor(tc.t, 30*time.Second, "a replica to take over the slots of the killed master", func() bool {
		slots, err := slotMap(context.Background(), tc.running()[0])
		if err != nil {
			return false
		}
		for _, s := range slots {
			if s.start <= slot && slot <= s.end {
				return s.master != "" && s.master != m.Addr()
			}
		}
		return false
	})
	return func() {
		tc.t.Helper()
		m.Start() // its nodes.conf makes it rejoin, as a replica of its successor
		tc.waitHealthy()
	}
}

// testSentinel is a master, its replica and three sentinels watching them
// under the name "main"; the data nodes and the sentinels have passwords of
// their own.
type testSentinel struct {
	t         testing.TB
	data      []*testkit.Redis // master and replica, in either role
	sentinels []*testkit.Redis
}

// startSentinel starts the set-up: a master is declared down after one
// second without an answer, and a failover may be retried after five.
func startSentinel(t testing.TB) *testSentinel {
	t.Helper()
	ts := &testSentinel{t: t}
	auth := []string{"--requirepass", sentinelDataPassword, "--masterauth", sentinelDataPassword}
	master := testkit.NewRedis(t, testkit.FreePort(t), auth...)
	master.Start()
	replica := testkit.NewRedis(t, testkit.FreePort(t), append(auth, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))...)
	replica.Start()
	ts.data = []*testkit.Redis{master, replica}
	path, _ := exec.LookPath("redis-server")
	for range 3 {
		port := testkit.FreePort(t)
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		err := os.WriteFile(conf, fmt.Appendf(nil, "sentinel monitor main 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds main 1000\nsentinel failover-timeout main 5000\n"+
			"sentinel parallel-syncs main 1\nsentinel auth-pass main %s\n"+
			"requirepass %s\nsentinel sentinel-pass %s\n",
			master.Port, sentinelDataPassword, sentinelPassword, sentinelPassword), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		s := testkit.NewRedis(t, port)
		s.Args = []string{path, conf, "--sentinel", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--dir", dir, "--logfile", "sentinel.log"}
		s.Password = sentinelPassword
		s.Start()
		ts.sentinels = append(ts.sentinels, s)
	}
	ts.waitReady(master)
	return ts
}

// URL is the module's URL for the set-up.
func (ts *testSentinel) URL() string {
	addrs := make([]string, len(ts.sentinels))
	for i, s := range ts.sentinels {
		addrs[i] = s.Addr()
	}
	return "redis+sentinel://:" + sentinelDataPassword + "@" + strings.Join(addrs, ",") +
		"?master_name=main&sentinel_password=" + sentinelPassword
}

// master returns the data node the sentinels name as master.
func (ts *testSentinel) master() *testkit.Redis {
	ts.t.Helper()
	addr := ts.masterAddr()
	for _, n := range ts.data {
		if n.Addr() == addr {
			return n
		}
	}
	ts.t.Fatalf("the sentinels name %q as master", addr)
	return nil
}

func (ts *testSentinel) masterAddr() string {
	c := redis.NewSentinelClient(&redis.Options{Addr: ts.sentinels[0].Addr(), Password: sentinelPassword})
	defer c.Close()
	a, err := c.GetMasterAddrByName(context.Background(), "main").Result()
	if err != nil || len(a) != 2 {
		return ""
	}
	return net.JoinHostPort(a[0], a[1])
}

// waitReady waits until every sentinel names m as master and knows the
// other data node as its linked replica, and the other sentinels.
func (ts *testSentinel) waitReady(m *testkit.Redis) {
	ts.t.Helper()
	ctx := context.Background()
	testkit.WaitFor(ts.t, 60*time.Second, "the sentinels to agree on the master and see its replica", func() bool {
		for _, s := range ts.sentinels {
			c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), Password: sentinelPassword})
			a, err := c.GetMasterAddrByName(ctx, "main").Result()
			replicas, _ := c.Replicas(ctx, "main").Result()
			peers, _ := c.Sentinels(ctx, "main").Result()
			c.Close()
			if err != nil || len(a) != 2 || net.JoinHostPort(a[0], a[1]) != m.Addr() || len(peers) != 2 {
				return false
			}
			linked := false
			for _, r := range replicas {
				linked = linked || (r["flags"] == "slave" && r["master-link-status"] == "ok")
			}
			if !linked {
				return false
			}
		}
		return true
	})
}

// failover SIGKILLs the master, waits until the sentinels have promoted the
// replica, and returns a function that brings the old master back (the
// sentinels make it a replica) and waits until the set-up is whole again.
func (ts *testSentinel) failover() (restore func()) {
	ts.t.Helper()
	old := ts.master()
	old.Stop()
	testkit.WaitFor(ts.t, 30*time.Second, "the sentinels to promote the replica", func() bool {
		a := ts.masterAddr()
		return a != "" && a != old.Addr()
	})
	return func() {
		ts.t.Helper()
		next := ts.master()
		old.Start()
		ts.waitReady(next)
	}
}

// openStreamWhenUp opens a stream, retrying while the handler answers 503
// (its partition not read yet), and fails the test on any other refusal.
func openStreamWhenUp(t testing.TB, url, token, lastEventID string) *testkit.Stream {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req := testkit.Request(t, url, token)
		if lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
		resp, err := testkit.StreamClient.Do(req)
		if err != nil {
			t.Fatalf("opening stream: %v", err)
		}
		if resp.StatusCode == 503 && time.Now().Before(deadline) {
			resp.Body.Close()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
			t.Fatalf("opening stream %s: status %d", url, resp.StatusCode)
		}
		s := testkit.ReadStream(resp)
		t.Cleanup(func() { s.Close(); <-s.Done() })
		return s
	}
}

// loadSecretURL runs routes in this process with {redis} written as an
// {env.*} placeholder that holds url, and Caddy's log at DEBUG in a file.
// It returns the site's base URL and a check, for the end of the test, that
// the log shows the subscriptions, their losses and recoveries, and none of
// the secrets.
func loadSecretURL(t *testing.T, auth *testkit.AuthAPI, url, routes string, secrets ...string) (base string, checkLog func()) {
	t.Helper()
	t.Setenv("NOTIFY_TEST_DEPLOYMENT_URL", url)
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	cfg := &caddyConfig{auth: auth, autoHTTPS: true, routes: routes,
		log:  "\t\toutput file {log}\n\t\tlevel DEBUG",
		vars: map[string]string{"redis": "{env.NOTIFY_TEST_DEPLOYMENT_URL}", "log": logFile}}
	base = cfg.load(t)
	return base, func() {
		t.Helper()
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		log := string(b)
		for _, want := range []string{`"msg":"adjusted config"`, "redis subscription established", "redis subscription unavailable"} {
			if !strings.Contains(log, want) {
				t.Errorf("the log has no %q: the check proves less than it should", want)
			}
		}
		for _, s := range secrets {
			if strings.Contains(log, s) {
				t.Errorf("a password is in Caddy's log")
			}
		}
	}
}
