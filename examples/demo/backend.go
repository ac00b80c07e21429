package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log"
	"mime"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-notify/notify/client"
)

const (
	// authPath is the demo auth API that Caddy calls for each new stream.
	authPath = "/api/v1/is_user_auth/"
	// tokenCookie holds the demo token in the browser; the notify handler
	// and /send both read it.
	tokenCookie = "notify_token"
	// maxText bounds the text of a test notification, in characters.
	maxText = 280
)

// demoUser is one account of the demo. Tokens are public on purpose: this is
// a demo, not a login system.
type demoUser struct {
	ID    string
	Token string
}

// demoUsers are the accounts the auth API knows; the page also offers
// "mallory", whose token the auth API refuses.
var demoUsers = []demoUser{
	{ID: "alice", Token: "alice-token"},
	{ID: "bob", Token: "bob-token"},
}

// userForToken is the demo's whole auth logic, shared by the auth API and
// /send.
func userForToken(token string) (string, bool) {
	for _, u := range demoUsers {
		if token != "" && token == u.Token {
			return u.ID, true
		}
	}
	return "", false
}

//go:embed web
var webFS embed.FS

var pageTmpl = template.Must(template.ParseFS(webFS, "web/index.html"))

// backend is the demo's own web app, behind Caddy's reverse_proxy: the page,
// its static files, POST /send and the auth API.
type backend struct {
	rdb  *redis.Client
	page pageData
	sent atomic.Int64
}

// pageData fills web/index.html.
type pageData struct {
	Users    []pageUser
	Channel  string
	RedisCLI string // redis-cli and the options that reach the demo's Redis
	Redis    string // where that Redis is, for humans
}

type pageUser struct {
	ID, Token string
	Valid     bool
}

func newBackend(rdb *redis.Client, a addrs) *backend {
	p := pageData{Channel: channel, RedisCLI: a.redisCLI()}
	for _, u := range demoUsers {
		p.Users = append(p.Users, pageUser{ID: u.ID, Token: u.Token, Valid: true})
	}
	p.Users = append(p.Users, pageUser{ID: "mallory", Token: "mallory-token"})
	if a.Embedded {
		p.Redis = "embedded miniredis at " + a.RedisAddr
	} else {
		p.Redis = "Redis at " + a.RedisAddr + " (REDIS_URL)"
	}
	return &backend{rdb: rdb, page: p}
}

func (b *backend) routes() http.Handler {
	static, err := fs.Sub(webFS, "web/static")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", b.index)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	// The browser client, from the repository's client/ directory (the
	// examples module uses this checkout of the plugin's module).
	mux.HandleFunc("GET /static/notify.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, client.Files, "notify.js")
	})
	mux.HandleFunc("POST /send", b.send)
	mux.HandleFunc("GET "+authPath, b.isUserAuth)
	return mux
}

func (b *backend) index(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'")
	if err := pageTmpl.Execute(w, b.page); err != nil {
		log.Printf("demo: rendering the page: %v", err)
	}
}

// isUserAuth is the demo auth API: GET with "Authorization: Bearer <token>",
// answering 200 {"user_id": "..."} or 401 {"detail": "Invalid token"}.
func (b *backend) isUserAuth(w http.ResponseWriter, r *http.Request) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if strings.EqualFold(scheme, "Bearer") {
		if user, ok := userForToken(strings.TrimSpace(token)); ok {
			writeJSON(w, http.StatusOK, map[string]string{"user_id": user})
			return
		}
	}
	w.Header().Set("WWW-Authenticate", "Bearer")
	writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Invalid token"})
}

// userFromRequest identifies the caller the way the notify handler does: the
// Authorization header when present, else the token cookie.
func userFromRequest(r *http.Request) (string, bool) {
	if h, ok := r.Header["Authorization"]; ok {
		v := ""
		if len(h) > 0 {
			v = strings.TrimSpace(h[0])
		}
		scheme, token, _ := strings.Cut(v, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", false
		}
		return userForToken(strings.TrimSpace(token))
	}
	if c, err := r.Cookie(tokenCookie); err == nil {
		return userForToken(c.Value)
	}
	return "", false
}

// notification is the message the demo publishes; recipient_id is the
// notify handler's default recipient field.
type notification struct {
	RecipientID string `json:"recipient_id"`
	Type        string `json:"type"`
	Text        string `json:"text"`
}

// send publishes a test notification to the caller — and only to the
// caller: the recipient comes from the token, never from the request body.
// The body is optional JSON {"text": "..."}. Requiring a JSON content type
// keeps other sites from posting here with the user's cookie (a cross-site
// form cannot send it without a CORS preflight, which this server refuses).
func (b *backend) send(w http.ResponseWriter, r *http.Request) {
	user, ok := userFromRequest(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Invalid token"})
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"detail": "Send a JSON body: {\"text\": \"...\"}"})
		return
	}
	var req struct {
		Text string `json:"text"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"detail": "The body is not a JSON object like {\"text\": \"...\"}"})
		return
	}
	text := strings.TrimSpace(req.Text)
	if text == "" {
		text = fmt.Sprintf("Test notification #%d for %s", b.sent.Add(1), user)
	}
	if utf8.RuneCountInString(text) > maxText {
		writeJSON(w, http.StatusBadRequest, map[string]string{"detail": fmt.Sprintf("The text is longer than %d characters", maxText)})
		return
	}
	msg, err := json.Marshal(notification{RecipientID: user, Type: "test", Text: text})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"detail": "Cannot encode the message"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	n, err := b.rdb.Publish(ctx, channel, msg).Result()
	if err != nil {
		log.Printf("demo: publishing to Redis: %v", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"detail": "Redis is unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"channel":           channel,
		"message":           json.RawMessage(msg),
		"redis_subscribers": n, // notify gateways subscribed, not browsers
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"detail":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
