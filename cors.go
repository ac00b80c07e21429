package notify

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
)

// corsPolicy answers cross-origin requests for the origins a handler allows.
type corsPolicy struct {
	enabled bool
	any     bool     // "*": every origin, never with credentials
	origins []string // exact origins allowed with credentials
}

func newCORSPolicy(origins []string) corsPolicy {
	return corsPolicy{
		enabled: len(origins) > 0,
		any:     slices.Contains(origins, "*"),
		origins: origins,
	}
}

// apply sets the CORS response headers for r and reports whether its origin
// is allowed. Requests without an Origin header are same-origin or not from a
// browser and need no headers.
func (p corsPolicy) apply(hdr http.Header, r *http.Request) bool {
	if !p.enabled {
		return false
	}
	origin := r.Header.Get("Origin")
	if p.any {
		if origin != "" {
			hdr.Set("Access-Control-Allow-Origin", "*")
		}
		return true
	}
	// The answer depends on Origin, so caches must key on it.
	hdr.Add("Vary", "Origin")
	if origin == "" || !slices.Contains(p.origins, origin) {
		return false
	}
	// Echoing the one listed origin, never an arbitrary one: with
	// credentials allowed that would let any site read a user's stream.
	hdr.Set("Access-Control-Allow-Origin", origin)
	hdr.Set("Access-Control-Allow-Credentials", "true")
	return true
}

// preflight answers an OPTIONS preflight request without authenticating it.
func (p corsPolicy) preflight(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	if !p.apply(hdr, r) || r.Header.Get("Origin") == "" {
		writeError(w, http.StatusForbidden, "Origin not allowed.")
		return
	}
	hdr.Set("Access-Control-Allow-Methods", "GET, HEAD")
	hdr.Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control")
	hdr.Set("Access-Control-Max-Age", "86400")
	w.WriteHeader(http.StatusNoContent)
}

// checkOrigin accepts "*" or a serialized origin: scheme://host[:port].
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("%q is not an origin such as https://app.example.com", o)
	}
	return nil
}
