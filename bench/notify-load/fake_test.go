package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestMain lets the tests run whole `notify-load run`s: the run starts its
// worker processes as `<executable> worker ...`, here the test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		os.Exit(workerMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// fakeNotify is a notify handler in miniature, for whole runs of the load
// tool in the tests: HTTP/1.1 event streams (token u<N> is user N; retry:
// 100; no ids), a publisher endpoint taking the load tool's messages one
// per POST (/publish, and /publish2 for a publisher that followed a
// changed reload), and the two calls of Caddy's admin API the reload uses:
// GET /config/ and POST /load, which ends every stream, as the module does
// today. loadMode makes the reload fail (500), hang, or kill the server, or
// (mute) succeed and leave the server answering no stream request.
type fakeNotify struct {
	srv      *httptest.Server
	loadMode string // "", "fail", "hang", "kill" or "mute"
	mute     atomic.Bool

	mu      sync.Mutex
	subs    map[string]map[chan string]struct{}
	end     chan struct{} // closed by a reload
	channel string
	loads   []string // the Cache-Control header of every POST /load
	posts   [2]atomic.Int64
}

func newFakeNotify(t *testing.T, loadMode string) *fakeNotify {
	f := &fakeNotify{loadMode: loadMode, subs: map[string]map[chan string]struct{}{}, end: make(chan struct{}), channel: "notifications"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", f.events)
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) { f.publish(w, r, 0) })
	mux.HandleFunc("POST /publish2", func(w http.ResponseWriter, r *http.Request) { f.publish(w, r, 1) })
	mux.HandleFunc("GET /config/", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		ch := f.channel
		f.mu.Unlock()
		fmt.Fprintf(w, `{"apps":{"http":{"grace_period":1000000000000000001,"servers":{"s":{"routes":[{"handle":[{"handler":"notify","channel":%q}]}]}}}}}`, ch)
	})
	mux.HandleFunc("POST /load", f.load)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		f.mu.Lock()
		select {
		case <-f.end:
		default:
			close(f.end)
		}
		f.mu.Unlock()
		f.srv.Close()
	})
	return f
}

func (f *fakeNotify) events(w http.ResponseWriter, r *http.Request) {
	if f.mute.Load() {
		<-r.Context().Done()
		return
	}
	user, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer u")
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	ch := make(chan string, 256)
	f.mu.Lock()
	if f.subs[user] == nil {
		f.subs[user] = map[chan string]struct{}{}
	}
	f.subs[user][ch] = struct{}{}
	end := f.end
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs[user], ch)
		f.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "retry: 100\n\n")
	w.(http.Flusher).Flush()
	for {
		select {
		case m := <-ch:
			fmt.Fprintf(w, "data: %s\n\n", m)
			w.(http.Flusher).Flush()
		case <-end:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// publish delivers a message to its recipient's streams; a fan-out
// message, to every stream (one group of every user, as -fan 1).
func (f *fakeNotify) publish(w http.ResponseWriter, r *http.Request, i int) {
	b, _ := io.ReadAll(r.Body)
	rcpt, _, _, ok := parseMessage(b)
	_, _, _, fan := parseFanMessage(b)
	if !ok && !fan {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.posts[i].Add(1)
	f.mu.Lock()
	for user, subs := range f.subs {
		if !fan && user != string(rcpt) {
			continue
		}
		for ch := range subs {
			select {
			case ch <- string(b):
			default:
			}
		}
	}
	f.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (f *fakeNotify) load(w http.ResponseWriter, r *http.Request) {
	var cfg struct {
		Apps struct {
			HTTP struct {
				GracePeriod json.Number `json:"grace_period"`
				Servers     map[string]struct {
					Routes []struct {
						Handle []struct {
							Channel string `json:"channel"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.NewDecoder(r.Body).Decode(&cfg); err != nil || cfg.Apps.HTTP.GracePeriod != "1000000000000000001" {
		http.Error(w, "bad config", http.StatusBadRequest) // numbers must come back as they were
		return
	}
	f.mu.Lock()
	f.loads = append(f.loads, r.Header.Get("Cache-Control"))
	f.channel = cfg.Apps.HTTP.Servers["s"].Routes[0].Handle[0].Channel
	f.mu.Unlock()
	switch f.loadMode {
	case "fail":
		http.Error(w, "loading new config: boom", http.StatusInternalServerError)
		return
	case "hang":
		<-r.Context().Done()
		return
	case "kill": // the server dies: every connection, this one included
		f.srv.Listener.Close()
		go f.srv.CloseClientConnections()
		panic(http.ErrAbortHandler)
	case "mute":
		f.mute.Store(true)
	}
	f.mu.Lock()
	close(f.end)
	f.end = make(chan struct{})
	f.mu.Unlock()
}

// runCaptured runs `notify-load run args...` in this process and returns
// its exit code, its output and its JSON summary.
func runCaptured(t *testing.T, args ...string) (int, string, *summary) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { _, _ = io.Copy(&out, r); close(done) }()
	code := runMain(args)
	os.Stdout = old
	w.Close()
	<-done
	var s *summary
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if line := sc.Bytes(); bytes.HasPrefix(line, []byte("{")) {
			s = new(summary)
			if err := json.Unmarshal(line, s); err != nil {
				t.Fatalf("summary: %v", err)
			}
		}
	}
	if s == nil {
		t.Fatalf("no summary in:\n%s", out.String())
	}
	return code, out.String(), s
}
