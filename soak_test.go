package notify

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/internal/sse"
	"github.com/caddy-notify/notify/internal/streamid"
	"github.com/caddy-notify/notify/internal/testkit"
)

// The stream-mode soak: a seeded driver publishes entries
// (single, multi-recipient, broadcast, junk) to a Redis Stream read by a
// Caddy binary, while clients leave and come back with Last-Event-ID or
// last_event_id, and faults hit everything in between: XTRIM by MAXLEN and
// MINID (approximate and exact), XDEL (also while a restarted Caddy loads
// its window), CLIENT KILL of Caddy's connections, a Redis restart (SIGKILL,
// AOF with fsync always), a Caddy SIGKILL and restart, a forced reload of
// the same config (which keeps every stream: only a kill may end one).
// Afterwards a checker walks every client's frames against the publisher's
// record; see checkClient for the exact invariant.
//
// `go test` runs it for 20 s; `make soak` for SOAK_DURATION (default 5m).
// SOAK_SEED replays the driver's decisions of a run: what it does at each
// round. Timings differ between runs, and with them what the clients have
// seen, which bounds the entries a fault may remove (see watermark).
// SOAK_RACE=1 builds the Caddy binary with the race detector.

const (
	soakStream      = "soak"
	soakHistory     = 50 // history_entries: resumes exercise memory and Redis
	soakReplayLimit = 15
	soakUsers       = 8
	soakClients     = 16
)

func TestStreamSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs a Caddy binary under faults for a while")
	}
	duration := 20 * time.Second
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("SOAK_DURATION=%q: want a duration such as 10m", s)
		}
		duration = d
	}
	seed := rand.Uint64()
	if s := os.Getenv("SOAK_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SOAK_SEED=%q: want a number", s)
		}
		seed = v
	}
	t.Logf("seed %d (replay: SOAK_SEED=%d SOAK_DURATION=%s)", seed, seed, duration)

	rs := testkit.NewRedis(t, testkit.FreePort(t), "--appendonly", "yes", "--appendfsync", "always",
		// Small nodes, so that approximate trims (whole nodes) remove something.
		"--stream-node-max-entries", "10")
	rs.Start()
	names := make([]string, soakUsers)
	for i := range names {
		names[i] = "u" + strconv.Itoa(i)
	}
	auth := testkit.StartAuthAPI(t, testkit.Users(names...))
	cd := newSoakCaddy(t, rs.URL(), auth.URL)
	cd.start()
	if err := cd.waitUp("/events", 60*time.Second); err != nil {
		t.Fatal(err)
	}

	d := newSoakDriver(t, seed, rs, cd, names)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, c := range d.clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.run(ctx) }()
	}
	stopClients := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stopClients)

	d.drive(duration)
	d.finish()
	stopClients()
	cd.scrape(d.server)

	ck := newSoakChecker(d)
	for _, c := range d.clients {
		ck.checkClient(c)
	}
	d.report(ck)
	cd.checkLog()
	if len(ck.violations) > 0 {
		for i, v := range ck.violations {
			if i == 30 {
				t.Errorf("… and %d more", len(ck.violations)-i)
				break
			}
			t.Errorf("%s", v)
		}
		t.Logf("faults:\n%s", d.faultLog())
		cd.logTail(60)
		t.Errorf("replay this run: SOAK_SEED=%d SOAK_DURATION=%s", seed, duration)
	}
}

// ---- Caddy, as a separate process ----

// newSoakCaddy prepares the soak's Caddy process (not started): one
// stream-mode handler at /events, with its metrics.
func newSoakCaddy(t *testing.T, redisURL, authURL string) *caddyProcess {
	t.Helper()
	routes := fmt.Sprintf(`
	metrics /metrics
	notify /events {
		redis {redis}
		stream %s
		auth_url {auth}
		broadcast
		history_entries %d
		replay_limit %d
		heartbeat 2s
	}`, soakStream, soakHistory, soakReplayLimit)
	return newCaddyProcess(t, redisURL, authURL, "grace_period 2s", routes)
}

// ---- what was published ----

// soakEntry is one entry the driver added.
type soakEntry struct {
	id        streamid.ID
	field     string // "data", or another field for a junk entry
	data      string
	users     []string // named recipients, without duplicates
	broadcast bool
	kind      string    // single, multi, broadcast, junk
	round     int       // the driver's round when it was added
	sentAt    time.Time // before XADD was sent
	removedAt time.Time // before the XDEL or XTRIM that removed it was sent; zero while retained
	removedBy string
	ackedAt   time.Time // after Redis answered the command that removed it
}

func (e *soakEntry) addressedTo(user string) bool {
	return e.broadcast || slices.Contains(e.users, user)
}

// watermark is the newest ID any client saw from any Caddy process: an
// event, a position or a reset's id. A process only sends an ID once its
// reader has read every entry up to it, so the driver removes only entries
// at or below it. An entry removed before any reader read it is, for
// Caddy, an entry never published (a live XREAD cannot see it, and a
// resume has no way to know it was there), so the invariant could not hold
// for it.
type watermark struct {
	mu sync.Mutex
	id streamid.ID
}

func (w *watermark) observe(id streamid.ID) {
	w.mu.Lock()
	w.id = streamid.Later(w.id, id)
	w.mu.Unlock()
}

func (w *watermark) get() streamid.ID {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.id
}

// ---- the driver ----

type soakFault struct {
	at     time.Duration // since the start
	round  int
	kind   string
	detail string
}

type soakDriver struct {
	t       *testing.T
	rng     *rand.Rand
	start   time.Time
	rs      *testkit.Redis
	pub     *redis.Client
	caddy   *caddyProcess
	users   []string
	clients []*soakClient
	mark    *watermark

	entries []*soakEntry // in ID order
	byID    map[streamid.ID]*soakEntry
	oldest  int // entries before it are all removed
	msgN    int

	round      int
	away       []int // round at which each client comes back; -1 while present
	leftAt     []int // round at which each client last left
	heavyBag   []string
	nextLight  int
	nextHeavy  int
	caddyUpAt  int // round at which a killed Caddy starts again; -1 while it runs
	redisUpAt  int // the same for Redis
	faults     []soakFault
	faultCount map[string]int
	server     map[string]float64 // caddy_notify_ counters summed over the processes
	drove      time.Duration      // how long the rounds took
}

func newSoakDriver(t *testing.T, seed uint64, rs *testkit.Redis, cd *caddyProcess, users []string) *soakDriver {
	d := &soakDriver{
		t: t, rng: rand.New(rand.NewPCG(seed, 0)), start: time.Now(), rs: rs, pub: rs.Client(), caddy: cd,
		users: users, mark: &watermark{}, byID: map[streamid.ID]*soakEntry{},
		caddyUpAt: -1, redisUpAt: -1, faultCount: map[string]int{}, server: map[string]float64{},
		nextLight: 5, nextHeavy: 20,
	}
	t.Cleanup(func() { d.pub.Close() })
	transport := &http.Transport{DisableKeepAlives: true, ResponseHeaderTimeout: 30 * time.Second}
	t.Cleanup(transport.CloseIdleConnections)
	httpc := &http.Client{Transport: transport}
	for i := range soakClients {
		d.clients = append(d.clients, &soakClient{
			n: i, user: users[i%len(users)], base: cd.base() + "/events", http: httpc,
			rng: rand.New(rand.NewPCG(seed, uint64(i)+1)), mark: d.mark, start: d.start,
			cmds: make(chan soakCmd, 64),
		})
		d.away = append(d.away, -1)
		d.leftAt = append(d.leftAt, -1)
	}
	return d
}

func (d *soakDriver) since() time.Duration { return time.Since(d.start) }

func (d *soakDriver) fault(kind, detail string) {
	d.faults = append(d.faults, soakFault{at: d.since(), round: d.round, kind: kind, detail: detail})
	d.faultCount[kind]++
}

// drive runs rounds until the duration is over. Every decision comes from
// the seeded generator and the driver's own state, in the same order in
// every run with the seed.
func (d *soakDriver) drive(duration time.Duration) {
	end := time.Now().Add(duration)
	for ; time.Now().Before(end); d.round++ {
		r := d.round
		for i, at := range d.away {
			if at == r {
				d.comeBack(i)
			}
		}
		if d.caddyUpAt == r {
			d.startCaddy()
		}
		if d.redisUpAt == r {
			d.redisUp()
		}
		redisUp, caddyUp := d.redisUpAt < 0, d.caddyUpAt < 0
		if redisUp && r >= d.nextLight {
			d.lightFault()
			d.nextLight = r + 3 + d.rng.IntN(13)
		}
		if redisUp && caddyUp && r >= d.nextHeavy {
			d.heavyFault()
			d.nextHeavy = r + 20 + d.rng.IntN(41)
		}
		n := d.rng.IntN(4)
		if d.redisUpAt < 0 {
			for range n {
				d.publish(d.randomMessage())
			}
		}
		if d.rng.IntN(5) == 0 {
			d.leave()
		}
		time.Sleep(time.Duration(30+d.rng.IntN(60)) * time.Millisecond)
	}
	d.drove = d.since()
}

// leave sends a present client away for a number of rounds: mostly short
// absences (memory), some longer than the window (Redis) or than
// replay_limit allows.
func (d *soakDriver) leave() {
	var present []int
	for i, at := range d.away {
		if at < 0 {
			present = append(present, i)
		}
	}
	p, pick := d.rng.IntN(100), d.rng.IntN(max(len(present), 1))
	if len(present) == 0 {
		return
	}
	var rounds int
	switch {
	case p < 60:
		rounds = 1 + d.rng.IntN(10)
	case p < 90:
		rounds = 10 + d.rng.IntN(50)
	default:
		rounds = 60 + d.rng.IntN(150)
	}
	i := present[pick]
	d.away[i], d.leftAt[i] = d.round+rounds, d.round
	d.clients[i].cmds <- soakCmd{leave: true}
}

// comeBack returns client i: with Last-Event-ID (50 %), last_event_id (47 %)
// or, rarely, an ID from the future, as a client holding an ID of another
// stream would (unknown_last_event_id).
func (d *soakDriver) comeBack(i int) {
	d.away[i] = -1
	cmd := soakCmd{via: viaHeader}
	switch p := d.rng.IntN(100); {
	case p < 3:
		cmd.via = viaBogus
		cmd.bogus = streamid.ID{Ms: uint64(time.Now().Add(24 * time.Hour).UnixMilli())}
	case p < 50:
		cmd.via = viaQuery
	}
	d.clients[i].cmds <- cmd
}

// randomMessage returns the field, the JSON and the recipients of a new
// entry.
func (d *soakDriver) randomMessage() *soakEntry {
	d.msgN++
	e := &soakEntry{field: "data"}
	user := func() string { return d.users[d.rng.IntN(len(d.users))] }
	var recipient string
	switch p := d.rng.IntN(100); {
	case p < 60:
		u := user()
		e.kind, e.users, recipient = "single", []string{u}, strconv.Quote(u)
	case p < 78:
		e.kind = "multi"
		var parts []string
		for range 2 + d.rng.IntN(3) {
			u := user() // duplicates stay: each stream gets the event once
			parts = append(parts, strconv.Quote(u))
			if !slices.Contains(e.users, u) {
				e.users = append(e.users, u)
			}
		}
		if d.rng.IntN(4) == 0 {
			parts = append(parts, "null")
		}
		recipient = "[" + strings.Join(parts, ",") + "]"
	case p < 92:
		e.kind, e.broadcast = "broadcast", true
		recipient = `"*"`
		if d.rng.IntN(2) == 0 {
			u := user()
			e.users, recipient = []string{u}, `["*",`+strconv.Quote(u)+`]`
		}
	default:
		// Reaches nobody: counted as dropped by Caddy, never delivered.
		e.kind = "junk"
		switch d.rng.IntN(5) {
		case 0:
			e.field, recipient = "other", strconv.Quote(user())
		case 1:
			e.data = "not json " + strconv.Itoa(d.msgN)
			return e
		case 2:
			recipient = "null"
		case 3:
			recipient = "true"
		default:
			recipient = "[]"
		}
	}
	sep := ","
	if d.rng.IntN(20) == 0 {
		sep = ",\n" // a message spanning lines: several data fields
	}
	e.data = fmt.Sprintf(`{"recipient_id":%s%s"n":%d}`, recipient, sep, d.msgN)
	return e
}

func (d *soakDriver) publish(e *soakEntry) {
	d.t.Helper()
	e.round, e.sentAt = d.round, time.Now()
	id, err := d.pub.XAdd(context.Background(), &redis.XAddArgs{Stream: soakStream, Values: []any{e.field, e.data}}).Result()
	if err != nil {
		d.t.Fatalf("XADD: %v", err)
	}
	var ok bool
	if e.id, ok = streamid.Parse(id); !ok {
		d.t.Fatalf("XADD returned %q", id)
	}
	if n := len(d.entries); n > 0 && !d.entries[n-1].id.Less(e.id) {
		d.t.Fatalf("XADD returned %s after %s", e.id, d.entries[n-1].id)
	}
	d.entries = append(d.entries, e)
	d.byID[e.id] = e
}

// retained returns the entries not removed, oldest first, and how many of
// them are at or below the watermark (the ones that may be removed).
func (d *soakDriver) retained() (live []*soakEntry, read int) {
	for d.oldest < len(d.entries) && !d.entries[d.oldest].removedAt.IsZero() {
		d.oldest++
	}
	w := d.mark.get()
	for _, e := range d.entries[d.oldest:] {
		if e.removedAt.IsZero() {
			live = append(live, e)
			if !w.Less(e.id) {
				read++
			}
		}
	}
	return live, read
}

// lightFault trims or deletes entries the readers have read: XTRIM MAXLEN or
// MINID, exact or approximate, keeping about 100 to 400 entries (1 time in
// 10, nearly nothing that was read), or XDEL of one to three entries, mostly
// ones an away client missed or recent ones.
func (d *soakDriver) lightFault() {
	d.t.Helper()
	kinds := []string{"xdel", "xdel", "xtrim_maxlen_approx", "xtrim_maxlen", "xtrim_minid_approx", "xtrim_minid"}
	kind := kinds[d.rng.IntN(len(kinds))]
	keep, harsh := 100+d.rng.IntN(300), d.rng.IntN(10) == 0
	r1, r2, r3, r4 := d.rng.IntN(1<<30), d.rng.IntN(1<<30), d.rng.IntN(1<<30), d.rng.IntN(3)
	live, read := d.retained()
	if read == 0 {
		return // nothing read yet: nothing may go
	}
	ctx := context.Background()
	before := time.Now()
	var err error
	var detail string
	switch kind {
	case "xdel":
		// Half of the time, entries an away client missed: a hole it
		// must be told about when it comes back. Otherwise mostly recent
		// entries: those a restarted Caddy loads into its window.
		missed := d.missed(live[:read])
		pick := func(r int) int {
			switch {
			case r%10 < 5 && len(missed) > 0:
				return missed[(r/10)%len(missed)]
			case r%10 < 8:
				return read - 1 - (r/10)%min(read, 2*soakHistory)
			}
			return r % read
		}
		picks := []int{pick(r1), pick(r2), pick(r3)}[:1+r4]
		if harsh {
			picks = append(picks, read-1) // the newest read entry
		}
		var ids []string
		for _, p := range picks {
			if id := live[p].id.String(); !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
		var n int64
		if n, err = d.pub.XDel(ctx, soakStream, ids...).Result(); err == nil && int(n) != len(ids) {
			d.t.Fatalf("XDEL %v deleted %d entries", ids, n)
		}
		acked := time.Now()
		for _, id := range ids {
			e := d.byID[mustParseID(d.t, id)]
			e.removedAt, e.removedBy, e.ackedAt = before, "xdel", acked
		}
		detail = strings.Join(ids, " ")
	case "xtrim_maxlen", "xtrim_maxlen_approx":
		// At least the unread entries stay.
		n := max(keep, len(live)-read)
		if harsh {
			n = len(live) - read
		}
		if kind == "xtrim_maxlen" {
			err = d.pub.XTrimMaxLen(ctx, soakStream, int64(n)).Err()
		} else {
			err = d.pub.XTrimMaxLenApprox(ctx, soakStream, int64(n), 0).Err()
		}
		detail = "maxlen " + strconv.Itoa(n)
	default:
		// MINID keeps entries from the threshold on: a read entry.
		j := min(max(len(live)-keep, 0), read-1)
		if harsh {
			j = read - 1
		}
		minID := live[j].id.String()
		if kind == "xtrim_minid" {
			err = d.pub.XTrimMinID(ctx, soakStream, minID).Err()
		} else {
			err = d.pub.XTrimMinIDApprox(ctx, soakStream, minID, 0).Err()
		}
		detail = "minid " + minID
	}
	if err != nil {
		d.t.Fatalf("%s: %v", kind, err)
	}
	if kind != "xdel" {
		// A trim removes from the front: what precedes the oldest entry
		// left is gone.
		first, err := d.pub.XRangeN(ctx, soakStream, "-", "+", 1).Result()
		if err != nil {
			d.t.Fatalf("XRANGE: %v", err)
		}
		removed := 0
		for _, e := range live {
			if len(first) == 0 || e.id.Less(mustParseID(d.t, first[0].ID)) {
				e.removedAt, e.removedBy, e.ackedAt = before, "trim", time.Now()
				removed++
			}
		}
		detail += fmt.Sprintf(": %d removed", removed)
	}
	d.fault(kind, detail)
	// The record must match the stream, or the checker would judge
	// against a wrong history.
	left, _ := d.retained()
	if n, err := d.pub.XLen(ctx, soakStream).Result(); err != nil || int(n) != len(left) {
		d.t.Fatalf("after %s: XLEN %d (%v), the record holds %d", kind, n, err, len(left))
	}
}

// missed returns the indexes of the entries an away client missed.
func (d *soakDriver) missed(entries []*soakEntry) []int {
	var out []int
	for j, e := range entries {
		for c, at := range d.away {
			if at >= 0 && e.round > d.leftAt[c] && e.addressedTo(d.clients[c].user) {
				out = append(out, j)
				break
			}
		}
	}
	return out
}

// startCaddy starts Caddy again after a kill. Half of the time it also
// deletes an entry an away client missed while the new process loads its
// window: a MONITOR connection shows the load's XINFO STREAM, and the XDEL
// goes out at once, racing the XREVRANGE that follows it.
func (d *soakDriver) startCaddy() {
	d.t.Helper()
	d.caddyUpAt = -1
	racing := d.rng.IntN(2) == 0
	var target *soakEntry
	if live, read := d.retained(); racing && read > 0 {
		// The newest such entry, likely in the window being loaded.
		if m := d.missed(live[:read]); len(m) > 0 {
			target = live[m[len(m)-1]]
		}
	}
	if target == nil {
		d.caddy.start()
		d.fault("caddy_start", "")
		return
	}
	mon, err := monitorRedis(d.rs.Addr())
	if err != nil {
		d.t.Fatalf("MONITOR: %v", err)
	}
	defer mon.Close()
	d.caddy.start()
	d.fault("caddy_start", "")
	if err := mon.waitFor(`"xinfo"`, 30*time.Second); err != nil {
		d.t.Logf("no XINFO from the new Caddy: %v", err)
		return
	}
	before := time.Now()
	if n, err := d.pub.XDel(context.Background(), soakStream, target.id.String()).Result(); err != nil || n != 1 {
		d.t.Fatalf("XDEL %s: %d, %v", target.id, n, err)
	}
	target.removedAt, target.removedBy, target.ackedAt = before, "xdel", time.Now()
	d.fault("xdel_during_load", target.id.String())
}

// redisMonitor is a raw MONITOR connection: go-redis's MonitorCmd polls in
// a busy loop.
type redisMonitor struct {
	net.Conn
	br *bufio.Reader
}

func monitorRedis(addr string) (*redisMonitor, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	m := &redisMonitor{Conn: conn, br: bufio.NewReader(conn)}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "MONITOR\r\n"); err != nil {
		conn.Close()
		return nil, err
	}
	if line, err := m.br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		conn.Close()
		return nil, fmt.Errorf("MONITOR answered %q, %v", line, err)
	}
	return m, nil
}

// waitFor reads commands until one contains s.
func (m *redisMonitor) waitFor(s string, timeout time.Duration) error {
	_ = m.SetReadDeadline(time.Now().Add(timeout))
	for {
		line, err := m.br.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.Contains(strings.ToLower(line), s) {
			return nil
		}
	}
}

func mustParseID(t *testing.T, s string) streamid.ID {
	id, ok := streamid.Parse(s)
	if !ok {
		t.Fatalf("bad entry ID %q", s)
	}
	return id
}

// heavyFault applies the next fault of a shuffled bag, so that every kind
// comes once per cycle.
func (d *soakDriver) heavyFault() {
	d.t.Helper()
	if len(d.heavyBag) == 0 {
		d.heavyBag = []string{"client_kill", "redis_restart", "caddy_kill", "caddy_reload"}
		d.rng.Shuffle(len(d.heavyBag), func(i, j int) { d.heavyBag[i], d.heavyBag[j] = d.heavyBag[j], d.heavyBag[i] })
	}
	kind := d.heavyBag[0]
	d.heavyBag = d.heavyBag[1:]
	down, long := d.rng.IntN(16), d.rng.IntN(10) < 3
	switch kind {
	case "client_kill":
		d.fault(kind, fmt.Sprintf("%d connections", d.killCaddyConns()))
	case "redis_restart":
		// Down for some rounds, with nothing published, then the same
		// port and AOF. go-redis's own retries hide an outage of up to
		// about 2 s from Caddy; a longer one gets clients 503.
		d.rs.Stop()
		rounds := 1 + 2*down
		if long {
			rounds = 40 + 3*down
		}
		d.redisUpAt = d.round + rounds
		d.fault(kind, fmt.Sprintf("down for %d rounds", rounds))
	case "caddy_kill":
		// Down for some rounds while publishing goes on: the restarted
		// Caddy loads its window from the stream.
		if err := d.caddy.waitUp("/events", 60*time.Second); err != nil {
			d.t.Fatal(err)
		}
		d.caddy.scrape(d.server)
		d.caddy.kill()
		d.caddyUpAt = d.round + 1 + down
		d.fault(kind, fmt.Sprintf("down for %d rounds", 1+down))
	case "caddy_reload":
		if err := d.caddy.waitUp("/events", 60*time.Second); err != nil {
			d.t.Fatal(err)
		}
		if err := d.caddy.reload(); err != nil {
			d.t.Fatalf("reload: %v", err)
		}
		d.fault(kind, "")
	}
}

var clientLineID = regexp.MustCompile(`(?:^| )id=(\d+) `)

// killCaddyConns kills every Redis connection named caddy-notify: the
// stream reader's, and any a resume holds.
func (d *soakDriver) killCaddyConns() int {
	d.t.Helper()
	ctx := context.Background()
	list, err := d.pub.ClientList(ctx).Result()
	if err != nil {
		d.t.Fatalf("CLIENT LIST: %v", err)
	}
	killed := 0
	for line := range strings.SplitSeq(list, "\n") {
		m := clientLineID.FindStringSubmatch(line)
		if m == nil || !strings.Contains(line, " name=caddy-notify ") {
			continue
		}
		if err := d.pub.Do(ctx, "CLIENT", "KILL", "ID", m[1]).Err(); err == nil {
			killed++
		}
	}
	return killed
}

func (d *soakDriver) redisUp() {
	d.redisUpAt = -1
	d.rs.Start()
	d.pub.Close()
	d.pub = d.rs.Client()
	d.fault("redis_start", "")
}

// finish brings everything up, brings every client back, publishes a
// broadcast marker, and waits until every client is past it, so that the
// checker judges complete histories.
func (d *soakDriver) finish() {
	d.t.Helper()
	if d.redisUpAt >= 0 {
		d.redisUp()
	}
	if d.caddyUpAt >= 0 {
		d.startCaddy()
	}
	if err := d.caddy.waitUp("/events", 60*time.Second); err != nil {
		d.t.Fatal(err)
	}
	for i, at := range d.away {
		if at >= 0 {
			d.away[i] = -1
			d.clients[i].cmds <- soakCmd{via: viaHeader}
		}
	}
	marker := &soakEntry{field: "data", kind: "broadcast", broadcast: true}
	d.msgN++
	marker.data = fmt.Sprintf(`{"recipient_id":"*","n":%d,"marker":true}`, d.msgN)
	d.publish(marker)
	deadline := time.Now().Add(2 * time.Minute)
	for _, c := range d.clients {
		for {
			pos, ok := c.position()
			if ok && !pos.Less(marker.id) {
				break
			}
			if time.Now().After(deadline) {
				d.t.Fatalf("client %d (%s) still at %v, not past the final marker %s, after 2 minutes; its last frames:\n%s",
					c.n, c.user, pos, marker.id, c.tail(20))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (d *soakDriver) faultLog() string {
	var b strings.Builder
	for _, f := range d.faults {
		fmt.Fprintf(&b, "  %8s round %4d  %s %s\n", f.at.Round(time.Millisecond), f.round, f.kind, f.detail)
	}
	return b.String()
}

// report logs the run's figures, in the table BENCHMARKS.md shows.
func (d *soakDriver) report(ck *soakChecker) {
	kinds := map[string]int{}
	removed := map[string]int{}
	for _, e := range d.entries {
		kinds[e.kind]++
		if !e.removedAt.IsZero() {
			removed[e.removedBy]++
		}
	}
	var st soakClientStats
	for _, c := range d.clients {
		st.add(c.stats)
	}
	var faults []string
	for _, k := range []string{"xdel", "xdel_during_load", "xtrim_maxlen", "xtrim_maxlen_approx", "xtrim_minid", "xtrim_minid_approx",
		"client_kill", "redis_restart", "caddy_kill", "caddy_reload"} {
		faults = append(faults, fmt.Sprintf("%s %d", k, d.faultCount[k]))
	}
	rows := [][2]string{
		{"duration / rounds", fmt.Sprintf("%s / %d", d.drove.Round(time.Second), d.round)},
		{"clients / users", fmt.Sprintf("%d / %d", len(d.clients), len(d.users))},
		{"entries added", fmt.Sprintf("%d (single %d, multi %d, broadcast %d, junk %d)",
			len(d.entries), kinds["single"], kinds["multi"], kinds["broadcast"], kinds["junk"])},
		{"entries removed", fmt.Sprintf("%d (trimmed %d, deleted %d)", removed["trim"]+removed["xdel"], removed["trim"], removed["xdel"])},
		{"events delivered (checked)", strconv.Itoa(ck.delivered)},
		{"streams opened", fmt.Sprintf("%d (new %d; resumed by Last-Event-ID %d, by last_event_id %d, from an ID from the future %d)",
			st.opened, st.fresh, st.viaHeader, st.viaQuery, st.viaBogus)},
		{"streams ended by the server / left by the client", fmt.Sprintf("%d / %d", st.ended, st.left)},
		{"refused (503) / connection errors", fmt.Sprintf("%d / %d", st.unavailable, st.netErrors)},
		{"faults", strings.Join(faults, ", ")},
		{"resets", fmt.Sprintf("history_truncated %d, replay_limit %d, unknown_last_event_id %d",
			ck.resets[sse.ResetTruncated], ck.resets[sse.ResetReplayOver], ck.resets[sse.ResetUnknownID])},
		{"gaps, each after a reset naming why", fmt.Sprintf("%d (%d entries)", ck.excusedGaps, ck.excusedEntries)},
		{"replayed by Caddy: memory / Redis", fmt.Sprintf("%.0f / %.0f",
			d.server[`caddy_notify_replayed_events_total{source="memory"}`], d.server[`caddy_notify_replayed_events_total{source="redis"}`])},
		{"resumes over entries removed before them / removed entries delivered", fmt.Sprintf("%d / %d", ck.overRemoved, ck.retractedReplays)},
		{"silent gaps", strconv.Itoa(ck.silentGaps)},
		{"other violations", strconv.Itoa(len(ck.violations) - ck.silentGaps)},
	}
	var b strings.Builder
	b.WriteString("| | |\n|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s |\n", r[0], r[1])
	}
	d.t.Logf("soak summary:\n%s", b.String())
	if st.viaBogus != ck.bogusStreams {
		d.t.Errorf("the clients opened %d streams from an ID from the future, the checker saw %d", st.viaBogus, ck.bogusStreams)
	}
}

// ---- clients ----

type soakVia int

const (
	viaHeader soakVia = iota // Last-Event-ID, as EventSource reconnects
	viaQuery                 // last_event_id, as a new page with a stored ID
	viaBogus                 // Last-Event-ID from the future (a command only)
)

// soakCmd tells a client to leave, or to come back.
type soakCmd struct {
	leave bool
	via   soakVia
	bogus streamid.ID
}

type recKind int

const (
	recConnect  recKind = iota // a stream opened; id: the ID it resumed from, or ""
	recPosition                // an id field alone
	recEvent                   // a message event
	recReset                   // a reset event; data: its reason
	recEnd                     // the stream ended (server, network, kill)
	recLeave                   // the client closed the stream
	recForget                  // the client's last ID was replaced by id (viaBogus)
	recError                   // something no client should see
)

// soakRec is one thing a client saw or did, in order.
type soakRec struct {
	kind  recKind
	at    time.Time
	id    string
	data  string
	via   soakVia   // viaHeader or viaQuery
	bogus bool      // the ID it resumed from is from the future
	sent  time.Time // recConnect: when the request was sent
}

type soakClientStats struct {
	opened, fresh, viaHeader, viaQuery, viaBogus int
	ended, left, unavailable, netErrors          int
}

func (s *soakClientStats) add(o soakClientStats) {
	s.opened += o.opened
	s.fresh += o.fresh
	s.viaHeader += o.viaHeader
	s.viaQuery += o.viaQuery
	s.viaBogus += o.viaBogus
	s.ended += o.ended
	s.left += o.left
	s.unavailable += o.unavailable
	s.netErrors += o.netErrors
}

// soakClient holds one user's stream like a browser tab: it keeps the last
// ID it saw, reconnects with it when the server ends the stream (as
// EventSource does, sending Last-Event-ID), retries after a short pause
// when refused, and leaves and comes back when the driver says so.
type soakClient struct {
	n     int
	user  string
	base  string
	http  *http.Client
	rng   *rand.Rand // retry pauses only
	mark  *watermark
	start time.Time
	cmds  chan soakCmd

	log   []soakRec // written by run only; read once it has returned
	stats soakClientStats

	// url is what the client requests: base, or base?last_event_id= after
	// a return with viaQuery. Like a reconnecting EventSource, it keeps
	// that URL and sends Last-Event-ID once it has an ID of its own.
	url        string
	sendHeader bool

	mu    sync.Mutex
	last  string // the last event ID, as EventSource keeps it
	bogus bool   // last is an ID from the future, given by the driver
}

func (c *soakClient) record(r soakRec) {
	r.at = time.Now()
	c.mu.Lock()
	c.log = append(c.log, r)
	c.mu.Unlock()
}

func (c *soakClient) setLast(id string, bogus bool) {
	c.mu.Lock()
	c.last, c.bogus = id, bogus
	c.mu.Unlock()
}

func (c *soakClient) getLast() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// position returns the client's last ID, for the final wait: none while
// it is an ID from the future.
func (c *soakClient) position() (streamid.ID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bogus {
		return streamid.ID{}, false
	}
	return streamid.Parse(c.last)
}

func (c *soakClient) run(ctx context.Context) {
	c.url, c.sendHeader = c.base, true
	away := false
	for ctx.Err() == nil {
		if away {
			select {
			case cmd := <-c.cmds:
				if !cmd.leave {
					away = false
					c.comeBack(cmd)
				}
			case <-ctx.Done():
				return
			}
			continue
		}
		s := c.open(ctx)
		if s == nil {
			away = c.pause(ctx, time.Duration(50+c.rng.IntN(150))*time.Millisecond)
			continue
		}
		away = c.read(ctx, s)
		if !away {
			away = c.pause(ctx, time.Duration(10+c.rng.IntN(40))*time.Millisecond)
		}
	}
}

// comeBack prepares the next request as the driver says.
func (c *soakClient) comeBack(cmd soakCmd) {
	c.url, c.sendHeader = c.base, true
	last := c.getLast()
	switch cmd.via {
	case viaQuery:
		if last != "" {
			c.url, c.sendHeader = c.base+"?last_event_id="+last, false
		}
	case viaBogus:
		c.setLast(cmd.bogus.String(), true)
		c.record(soakRec{kind: recForget, id: cmd.bogus.String()})
	}
}

// pause waits d, or less when told to leave; it reports whether to stay
// away.
func (c *soakClient) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case cmd := <-c.cmds:
		return cmd.leave
	case <-ctx.Done():
		return false
	}
}

// open requests a stream; nil when refused or unreachable.
func (c *soakClient) open(ctx context.Context) *testkit.Stream {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		panic(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.user+"-token")
	resume, via := "", viaHeader
	c.mu.Lock()
	last, bogus := c.last, c.bogus
	c.mu.Unlock()
	switch {
	case c.sendHeader && last != "":
		req.Header.Set("Last-Event-ID", last)
		resume = last
	case !c.sendHeader:
		resume, via = req.URL.Query().Get("last_event_id"), viaQuery
	}
	// An ID from the future stays the client's until a frame replaces
	// it: a return by last_event_id may carry it too.
	bogus = bogus && resume == last
	sent := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.stats.netErrors++
		}
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			c.stats.unavailable++
		} else {
			c.record(soakRec{kind: recError, data: fmt.Sprintf("status %d resuming from %q: %s", resp.StatusCode, resume, body)})
		}
		return nil
	}
	c.stats.opened++
	switch {
	case resume == "":
		c.stats.fresh++
	case bogus:
		c.stats.viaBogus++
	case via == viaQuery:
		c.stats.viaQuery++
	default:
		c.stats.viaHeader++
	}
	c.record(soakRec{kind: recConnect, id: resume, via: via, bogus: bogus, sent: sent})
	s := testkit.ReadStream(resp)
	return s
}

// read handles the stream's frames until it ends or the driver sends the
// client away; it reports whether the client is away.
func (c *soakClient) read(ctx context.Context, s *testkit.Stream) bool {
	defer func() { s.Close(); <-s.Done() }()
	for {
		select {
		case f := <-s.Frames():
			c.frame(f)
		case <-s.Done():
			for {
				select {
				case f := <-s.Frames():
					c.frame(f)
					continue
				default:
				}
				break
			}
			c.stats.ended++
			c.record(soakRec{kind: recEnd})
			return false
		case cmd := <-c.cmds:
			if cmd.leave {
				// Frames not yet handled are lost, as with
				// EventSource.close().
				c.stats.left++
				c.record(soakRec{kind: recLeave})
				return true
			}
		case <-ctx.Done():
			return false
		}
	}
}

func (c *soakClient) frame(f testkit.Frame) {
	var id string
	switch f.Kind {
	case testkit.FramePosition:
		c.record(soakRec{kind: recPosition, id: f.ID})
		id = f.ID
	case testkit.FrameEvent:
		switch f.Name {
		case "":
			c.record(soakRec{kind: recEvent, id: f.ID, data: f.Data})
			id = f.ID
		case "reset":
			var r struct{ Reason string }
			if err := json.Unmarshal([]byte(f.Data), &r); err != nil || f.Data != `{"reason":"`+r.Reason+`"}` {
				c.record(soakRec{kind: recError, data: "reset with data " + strconv.Quote(f.Data)})
				return
			}
			c.record(soakRec{kind: recReset, id: f.ID, data: r.Reason})
			id = f.ID
		default:
			c.record(soakRec{kind: recError, data: "unexpected event " + f.String()})
			return
		}
	default:
		return // retry field, heartbeat
	}
	if id == "" {
		return
	}
	parsed, ok := streamid.Parse(id)
	if !ok {
		c.record(soakRec{kind: recError, data: "bad id " + f.String()})
		return
	}
	c.mark.observe(parsed)
	c.setLast(id, false)
	c.sendHeader = true
}

// tail describes the client's last n records, for a failure message.
func (c *soakClient) tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records(max(0, len(c.log)-n), len(c.log)-1)
}

// records describes records from to through.
func (c *soakClient) records(from, through int) string {
	var b strings.Builder
	for _, r := range c.log[from : through+1] {
		fmt.Fprintf(&b, "    %s\n", c.describe(r))
	}
	return b.String()
}

func (c *soakClient) describe(r soakRec) string {
	at := r.at.Sub(c.start).Round(time.Millisecond)
	names := [...]string{"connect", "position", "event", "reset", "end", "leave", "forget", "error"}
	s := fmt.Sprintf("%8s %s", at, names[r.kind])
	if r.id != "" {
		s += " id=" + r.id
	}
	if r.kind == recConnect {
		s += [...]string{" via header", " via query"}[r.via]
		if r.bogus {
			s += " (an ID from the future)"
		}
	}
	if r.data != "" {
		s += " " + strconv.Quote(r.data)
	}
	return s
}

// ---- the checker ----

// soakChecker judges each client's records against the publisher's record.
type soakChecker struct {
	d          *soakDriver
	addressed  map[string][]*soakEntry // per user, in ID order: named or broadcast
	violations []string
	silentGaps int

	delivered      int
	bogusStreams   int // streams resumed from an ID from the future
	resets         map[string]int
	excusedGaps    int
	excusedEntries int
	// overRemoved counts the resumes whose range held an entry of their
	// user that Redis had removed before the request; retractedReplays,
	// the events of such removed entries delivered anyway (violations).
	overRemoved      int
	retractedReplays int
}

func newSoakChecker(d *soakDriver) *soakChecker {
	ck := &soakChecker{d: d, addressed: map[string][]*soakEntry{}, resets: map[string]int{}}
	for _, e := range d.entries {
		for _, u := range d.users {
			if e.addressedTo(u) {
				ck.addressed[u] = append(ck.addressed[u], e)
			}
		}
	}
	return ck
}

// between returns the user's entries after a and before b (or up to b
// when through is set).
func (ck *soakChecker) between(user string, a, b streamid.ID, through bool) []*soakEntry {
	list := ck.addressed[user]
	i := sort.Search(len(list), func(i int) bool { return a.Less(list[i].id) })
	var out []*soakEntry
	for ; i < len(list) && (list[i].id.Less(b) || through && list[i].id == b); i++ {
		out = append(out, list[i])
	}
	return out
}

// soakConn is the checker's state for one stream of a client.
type soakConn struct {
	index   int
	resumed bool
	from    streamid.ID // the ID it resumed from
	bogus   bool
	reset   *soakRec
	sent    time.Time // when its request was sent
	frames  int       // positions, events and resets seen
	checks  int       // gaps checked since it opened
}

// checkClient walks one client's records. P is the client's last ID, as
// EventSource keeps it: set by the position frame of its first stream, by
// each event, and by a reset's id. The client requires:
//
//   - every event is a published entry addressed to its user (named, or
//     broadcast), with the data published for that ID, carried once, with
//     an ID above P;
//   - a stream that resumes starts from P (the test client's own plumbing)
//     and gets no position frame; a new stream starts with one;
//   - a reset comes only first on a resumed stream, and its reason makes
//     sense: unknown_last_event_id only for an ID from the future (and
//     then always), history_truncated only when some entry at or after the
//     resume point had been removed (XDEL or XTRIM) before the reset
//     arrived, replay_limit only when more than replay_limit entries for
//     the user had been added after the resume point;
//   - no silent gap: between P and the next ID received, every entry
//     addressed to the user was received (for a reset's or a position's ID,
//     that ID included), unless a reset opened the stream, and then:
//     replay_limit and unknown_last_event_id excuse the first gap after
//     the resume point (the oldest events are cut, or the ID meant
//     nothing), and every other gap on that stream, and any gap after a
//     history_truncated reset, may only hold entries removed before the
//     reset arrived.
func (ck *soakChecker) checkClient(c *soakClient) {
	var P streamid.ID
	have := false
	seen := map[streamid.ID]bool{}
	var conn soakConn
	var forgotten string
	var i int // the record being checked
	fail := func(silent bool, format string, args ...any) {
		if silent {
			ck.silentGaps++
		}
		ck.violations = append(ck.violations, fmt.Sprintf("client %d (%s), stream %d, %s: %s\n  its records before:\n%s  faults around:\n%s",
			c.n, c.user, conn.index, c.describe(c.log[i]), fmt.Sprintf(format, args...),
			c.records(max(0, i-15), i), ck.faultsAround(c.log[i].at)))
	}
	gap := func(b streamid.ID, through bool) {
		conn.checks++
		if !have {
			return
		}
		missing := ck.between(c.user, P, b, through)
		if len(missing) == 0 {
			return
		}
		R := conn.reset
		if R == nil {
			fail(true, "silent gap after %s: %s", P, describeEntries(missing, c.start))
			return
		}
		if conn.checks == 1 && (R.data == sse.ResetReplayOver || R.data == sse.ResetUnknownID) {
			ck.excusedGaps++
			ck.excusedEntries += len(missing)
			return
		}
		for _, m := range missing {
			if m.removedAt.IsZero() || !m.removedAt.Before(R.at) {
				fail(true, "gap after %s holds %s, which was not removed before the %s reset",
					P, describeEntries([]*soakEntry{m}, c.start), R.data)
				return
			}
		}
		ck.excusedGaps++
		ck.excusedEntries += len(missing)
	}
	for i = range c.log {
		r := &c.log[i]
		switch r.kind {
		case recEnd:
			// A reload keeps the streams; only a killed Caddy ends them.
			if !ck.killedAround(r.at) {
				fail(false, "the stream ended with no Caddy kill before it (a reload keeps streams)")
			}
		case recForget:
			forgotten = r.id
		case recConnect:
			conn = soakConn{index: conn.index + 1, sent: r.sent}
			if r.id == "" {
				if have {
					fail(false, "a new stream although the client has %s", P)
				}
				break
			}
			conn.resumed = true
			conn.from, _ = streamid.Parse(r.id)
			for _, e := range ck.between(c.user, conn.from, streamid.ID{Ms: 1<<64 - 1}, false) {
				if !e.ackedAt.IsZero() && e.ackedAt.Before(conn.sent) {
					ck.overRemoved++
					break
				}
			}
			switch {
			case forgotten != "" && r.id == forgotten:
				conn.bogus = true
				ck.bogusStreams++
			case !have || conn.from != P:
				fail(false, "resumed from %s, but the client's last ID is %v", r.id, P)
			}
		case recPosition:
			id, _ := streamid.Parse(r.id)
			if conn.resumed || conn.frames > 0 {
				fail(false, "a position frame on a resumed stream or after other frames")
			}
			conn.frames++
			P, have = id, true
		case recReset:
			ck.resets[r.data]++
			if !conn.resumed || conn.frames > 0 {
				fail(false, "a reset that does not open a resumed stream")
			}
			conn.frames++
			conn.reset = r
			if msg := ck.checkReason(c, r, conn); msg != "" {
				fail(false, "%s", msg)
			}
			if r.id != "" {
				id, _ := streamid.Parse(r.id)
				if have && id.Less(P) && r.data != sse.ResetUnknownID {
					fail(false, "the reset's id is before the client's last ID %s", P)
				}
				gap(id, true)
				P, have, forgotten = id, true, ""
			}
		case recEvent:
			conn.frames++
			ck.delivered++
			id, _ := streamid.Parse(r.id)
			e := ck.d.byID[id]
			switch {
			case e == nil:
				fail(false, "an event that was never published")
				continue
			case e.data != r.data:
				fail(false, "data %q, published %q", r.data, e.data)
			case !e.addressedTo(c.user):
				fail(false, "someone else's event (%s)", e.data)
			}
			if !e.ackedAt.IsZero() && e.ackedAt.Before(conn.sent) {
				// Redis had said it was gone before the stream was asked
				// for: neither a replay nor a live read may carry it.
				ck.retractedReplays++
				fail(false, "%s was removed (%s) before the stream was requested", describeEntries([]*soakEntry{e}, c.start), e.removedBy)
			}
			if conn.bogus && conn.reset == nil {
				fail(false, "an event after resuming from an ID from the future, without an unknown_last_event_id reset")
			}
			if seen[id] {
				fail(false, "a duplicate")
				continue
			}
			seen[id] = true
			if !have {
				fail(false, "an event before any position")
			} else if !P.Less(id) {
				fail(false, "out of order: after %s", P)
			}
			gap(id, false)
			P, have, forgotten = id, true, ""
		case recError:
			fail(false, "%s", r.data)
		}
	}
}

// checkReason checks that a reset's reason fits what happened; it returns
// what does not.
func (ck *soakChecker) checkReason(c *soakClient, r *soakRec, conn soakConn) string {
	if conn.bogus != (r.data == sse.ResetUnknownID) {
		return fmt.Sprintf("reason %s after resuming from %s (an ID from the future: %v)", r.data, conn.from, conn.bogus)
	}
	switch r.data {
	case sse.ResetUnknownID:
		if r.id == "" {
			return "an unknown_last_event_id reset without an id"
		}
	case sse.ResetTruncated:
		// Redis keeps no record of what XTRIM removed: the reset may be a
		// false alarm when the entry at the resume point itself is gone.
		i := sort.Search(len(ck.d.entries), func(i int) bool { return !ck.d.entries[i].id.Less(conn.from) })
		for _, e := range ck.d.entries[i:] {
			if !e.removedAt.IsZero() && e.removedAt.Before(r.at) {
				return ""
			}
		}
		return fmt.Sprintf("history_truncated, but nothing at or after %s was removed", conn.from)
	case sse.ResetReplayOver:
		if r.id != "" {
			return "a replay_limit reset with an id"
		}
		n := 0
		for _, e := range ck.between(c.user, conn.from, streamid.ID{Ms: 1<<64 - 1}, false) {
			if e.sentAt.Before(r.at) {
				n++
			}
		}
		if n <= soakReplayLimit {
			return fmt.Sprintf("replay_limit, but only %d entries for the user followed %s", n, conn.from)
		}
	default:
		return fmt.Sprintf("unknown reason %q", r.data)
	}
	return ""
}

// killedAround reports whether a caddy_kill fault came within the 5 s
// before at, or just after it: the driver records a kill once it is done,
// and a client may see its stream end first.
func (ck *soakChecker) killedAround(at time.Time) bool {
	t := at.Sub(ck.d.start)
	for _, f := range ck.d.faults {
		if f.kind == "caddy_kill" && f.at <= t+time.Second && f.at > t-5*time.Second {
			return true
		}
	}
	return false
}

func (ck *soakChecker) faultsAround(at time.Time) string {
	t := at.Sub(ck.d.start)
	var b strings.Builder
	for _, f := range ck.d.faults {
		if f.at > t-10*time.Second && f.at < t+time.Second {
			fmt.Fprintf(&b, "    %8s %s %s\n", f.at.Round(time.Millisecond), f.kind, f.detail)
		}
	}
	return b.String()
}

func describeEntries(es []*soakEntry, start time.Time) string {
	var parts []string
	for i, e := range es {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("… %d in all", len(es)))
			break
		}
		s := fmt.Sprintf("%s (%s, added at %s", e.id, e.kind, e.sentAt.Sub(start).Round(time.Millisecond))
		if !e.removedAt.IsZero() {
			s += fmt.Sprintf(", %s at %s", e.removedBy, e.removedAt.Sub(start).Round(time.Millisecond))
		}
		parts = append(parts, s+")")
	}
	return strings.Join(parts, ", ")
}
