package nanobus

import (
	"fmt"
	"strings"
	"time"
)

// Route is what a handler serves, as the node declares it to its callers
// (discovery publishes it in etcd). A public route is "METHOD /pattern": the
// terminator sends it the HTTP requests that match. An internal route is a
// plain name such as "profiles.get", called by other services.
type Route struct {
	Name    string `json:"name"`              // as registered: "GET /profiles/{id}" or "profiles.get"
	Method  string `json:"method,omitempty"`  // "GET" for a public route; "" for an internal one
	Pattern string `json:"pattern,omitempty"` // "/profiles/{id}" for a public route: {name} matches one segment, a final {name...} the rest

	// Timeout is the deadline callers give a request that comes without
	// one (the terminator's requests, calls whose context has none);
	// 0 leaves it to the caller's default.
	Timeout time.Duration `json:"timeout_ns,omitempty"`
	// Idempotent says a request may run twice with the effect of once, so
	// a caller that lost its peer before the reply retries it once on
	// another instance. Public GET and HEAD routes are idempotent unless
	// declared otherwise; nothing else is unless declared.
	Idempotent bool `json:"idempotent,omitempty"`
	// GhostSafe says a copy of the request may be sent to a ghost version
	// under test even though the route is not idempotent: the handler
	// skips its side effects when Request.Ghost is set.
	GhostSafe bool `json:"ghost_safe,omitempty"`
	// Hedge says callers may send a second copy of a request to another
	// instance when the first is slow (see the Hedge option), after
	// HedgeAfter, or after the route's p95 as the caller measures it when
	// HedgeAfter is 0. Only an idempotent route hedges.
	Hedge      bool          `json:"hedge,omitempty"`
	HedgeAfter time.Duration `json:"hedge_after_ns,omitempty"`
	// Stream says the route answers with a stream of chunks
	// (HandleStream): call it with Node.Stream.
	Stream bool `json:"stream,omitempty"`
	// CORS, on a public route, is the cross-origin policy browsers are
	// told for it; it replaces the front's own (-cors-*). nil: the front's.
	CORS *CORS `json:"cors,omitempty"`
}

// CORS is a public route's cross-origin policy: the origins whose pages
// may call it ("*" for any), and what the front answers their preflights
// with. Methods empty: the methods the route's path serves.
type CORS struct {
	Origins     []string      `json:"origins"`
	Methods     []string      `json:"methods,omitempty"`
	Headers     []string      `json:"headers,omitempty"`     // request headers allowed beyond the CORS-safelisted
	MaxAge      time.Duration `json:"max_age_ns,omitempty"`  // how long a browser may cache a preflight's answer
	Credentials bool          `json:"credentials,omitempty"` // cookies and auth allowed (never with "*": the origin is echoed)
}

// WithCORS declares the route's cross-origin policy (see Route.CORS).
func WithCORS(c CORS) RouteOption { return func(r *Route) { r.CORS = &c } }

// Public reports whether the route is served to HTTP clients.
func (r Route) Public() bool { return r.Method != "" }

// String is the route's name.
func (r Route) String() string { return r.Name }

// A RouteOption declares something about a route to Handle.
type RouteOption func(*Route)

// Timeout sets the deadline callers give the route's requests when they
// come without one.
func Timeout(d time.Duration) RouteOption { return func(r *Route) { r.Timeout = d } }

// Idempotent declares that a request may safely run twice: a call lost with
// its peer is retried once on another instance.
func Idempotent() RouteOption { return func(r *Route) { r.Idempotent = true } }

// NotIdempotent declares a public GET or HEAD route unsafe to repeat.
func NotIdempotent() RouteOption { return func(r *Route) { r.Idempotent = false } }

// GhostSafe declares that copies of the route's requests may go to a ghost
// version even though it is not idempotent (see Route.GhostSafe).
func GhostSafe() RouteOption { return func(r *Route) { r.GhostSafe = true } }

// Limits of a route's name.
const (
	maxRouteName = 256
	maxMethod    = 16
)

// ParseRoute checks a route's name and splits a public one into method and
// pattern. Anything with a space or a '/' must be a well-formed public route
// ("GET/profiles" is an error, not an internal name); an internal name is 1
// to 256 of [A-Za-z0-9._:-].
func ParseRoute(name string) (Route, error) {
	if name == "" || len(name) > maxRouteName {
		return Route{}, fmt.Errorf("route %q: want 1 to %d bytes", name, maxRouteName)
	}
	if !strings.ContainsAny(name, " /") {
		for _, c := range []byte(name) {
			if !nameByte(c) {
				return Route{}, fmt.Errorf("route %q: an internal route is a name of [A-Za-z0-9._:-]; a public one is \"METHOD /path\"", name)
			}
		}
		return Route{Name: name}, nil
	}
	method, pattern, ok := strings.Cut(name, " ")
	if !ok || method == "" || len(method) > maxMethod || !strings.HasPrefix(pattern, "/") {
		return Route{}, fmt.Errorf("route %q: want \"METHOD /path\", e.g. \"GET /profiles/{id}\"", name)
	}
	for _, c := range []byte(method) {
		if c < 'A' || c > 'Z' {
			return Route{}, fmt.Errorf("route %q: method %q: want upper-case letters, e.g. GET", name, method)
		}
	}
	// A request's path never holds these (the query and fragment are
	// split off, control bytes and spaces are refused or escaped), so a
	// pattern with them could never match.
	for _, c := range []byte(pattern) {
		if c <= ' ' || c == 0x7f || c == '?' || c == '#' {
			return Route{}, fmt.Errorf("route %q: path: no spaces, control characters, '?' or '#'", name)
		}
	}
	segs := strings.Split(pattern[1:], "/")
	seen := map[string]bool{}
	for i, seg := range segs {
		if seg == "" && i < len(segs)-1 {
			return Route{}, fmt.Errorf("route %q: empty path segment", name)
		}
		if w, ok := wildcard(seg); ok {
			rest := strings.HasSuffix(w, "...")
			w = strings.TrimSuffix(w, "...")
			switch {
			case w == "" || strings.ContainsAny(w, "{}."):
				return Route{}, fmt.Errorf("route %q: bad wildcard %q", name, seg)
			case rest && i < len(segs)-1:
				return Route{}, fmt.Errorf("route %q: {%s...} must be the last segment", name, w)
			case seen[w]:
				return Route{}, fmt.Errorf("route %q: wildcard {%s} twice", name, w)
			}
			seen[w] = true
			continue
		}
		if strings.ContainsAny(seg, "{} ") {
			return Route{}, fmt.Errorf("route %q: segment %q: a wildcard is a whole segment, {name} or {name...}", name, seg)
		}
	}
	return Route{Name: name, Method: method, Pattern: pattern, Idempotent: method == "GET" || method == "HEAD"}, nil
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
}

// wildcard returns w for a segment "{w}".
func wildcard(seg string) (string, bool) {
	if len(seg) >= 2 && seg[0] == '{' && seg[len(seg)-1] == '}' {
		return seg[1 : len(seg)-1], true
	}
	return "", false
}

// Segments splits a public route's pattern on '/', for matching. It is
// empty for an internal route.
func (r Route) Segments() []string {
	if !r.Public() {
		return nil
	}
	return strings.Split(r.Pattern[1:], "/")
}

// pathValue returns the part of path matching wildcard name in segs ("" if
// none): "id" in [profiles {id}] and "/profiles/42" gives "42"; a final
// {name...} matches the rest of the path.
func pathValue(segs []string, path, name string) string {
	path = strings.TrimPrefix(path, "/")
	for _, seg := range segs {
		var part string
		part, path, _ = strings.Cut(path, "/")
		w, ok := wildcard(seg)
		if !ok {
			continue
		}
		if rest, ok := strings.CutSuffix(w, "..."); ok {
			if rest != name {
				return ""
			}
			if path == "" {
				return part
			}
			return part + "/" + path
		}
		if w == name {
			return part
		}
	}
	return ""
}
