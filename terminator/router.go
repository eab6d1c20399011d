package terminator

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

// Route is one public route a service announced: requests whose method and
// path match go to one instance of Service. Its Timeout, when set, is the
// deadline the service asked for; 0 means the terminator's default.
type Route struct {
	nanobus.Route
	Service string `json:"service"` // "web"
}

// PublicRoutes are the public routes p declared, as the router takes them.
func PublicRoutes(p nanobus.Peer) []Route {
	var out []Route
	for _, r := range p.Routes {
		if r.Public() {
			out = append(out, Route{Route: r, Service: p.Service})
		}
	}
	return out
}

// Router maps method and path to a route. Lookups take no lock and
// allocate nothing; Set swaps in a whole new table.
type Router struct {
	table atomic.Pointer[table]
	log   *slog.Logger
	cors  *corsPolicy // the front's, for routes that declare none

	mu    sync.Mutex
	stats map[string]*routeStats // route key -> its counters, kept across Sets
}

// table is a routing table: a tree of path segments per method.
type table struct {
	roots   map[string]*segment
	methods []string // sorted: the order of Allow
}

// entry is a route ready to serve: what the hot path needs, precomputed.
type entry struct {
	Route
	key     []byte // Route.Name, sent as the wire route
	timeout time.Duration
	stats   *routeStats
	tags    []string    // statsd tags, built once
	cors    *corsPolicy // the route's own, or the front's; nil: none
}

func (e *entry) latencyTags() []string { return e.tags }

// segment is a node of the path tree.
type segment struct {
	static map[string]*segment
	param  *segment // {name}
	rest   *entry   // {name...}
	end    *entry   // a route ends here
}

// NewRouter returns an empty router.
func NewRouter(log *slog.Logger) *Router {
	r := &Router{log: log, stats: map[string]*routeStats{}}
	r.table.Store(&table{roots: map[string]*segment{}})
	return r
}

// Set replaces the routing table. When two services announce the same
// route, the first in routes wins and the conflict is logged.
func (r *Router) Set(routes []Route, defaultTimeout time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := &table{roots: map[string]*segment{}}
	for _, rt := range routes {
		if !rt.Public() {
			continue
		}
		root := t.roots[rt.Method]
		if root == nil {
			root = &segment{}
			t.roots[rt.Method] = root
			t.methods = append(t.methods, rt.Method)
		}
		e := &entry{Route: rt, key: []byte(rt.Name), timeout: rt.Timeout, tags: []string{"route:" + rt.Name}, cors: r.cors}
		if rt.CORS != nil {
			if err := checkCORS(rt.CORS); err != nil {
				r.log.Warn("route's CORS policy refused; the front's applies", "route", rt.Name, "service", rt.Service, "err", err)
			} else {
				e.cors = newCORS(rt.CORS) // the route's own, even when it allows no origin
			}
		}
		if e.timeout <= 0 {
			e.timeout = defaultTimeout
		}
		if e.stats = r.stats[rt.Name]; e.stats == nil {
			e.stats = &routeStats{key: rt.Name}
			r.stats[rt.Name] = e.stats
		}
		if prev := root.insert(rt.Segments(), e); prev != nil && prev.Service != rt.Service {
			r.log.Warn("route announced by two services; keeping the first", "route", rt.Name,
				"kept", prev.Service, "ignored", rt.Service)
		}
	}
	slices.Sort(t.methods)
	r.table.Store(t)
}

// Routes lists the current routes.
func (r *Router) Routes() []Route {
	var out []Route
	for _, e := range r.entries() {
		out = append(out, e.Route)
	}
	return out
}

// entries lists the current table's entries.
func (r *Router) entries() []*entry {
	var out []*entry
	var walk func(s *segment)
	walk = func(s *segment) {
		for _, e := range []*entry{s.end, s.rest} {
			if e != nil {
				out = append(out, e)
			}
		}
		if s.param != nil {
			walk(s.param)
		}
		for _, c := range s.static {
			walk(c)
		}
	}
	for _, root := range r.table.Load().roots {
		walk(root)
	}
	return out
}

// insert adds e under the pattern's segments; it returns the entry already
// there, if any, and then leaves it in place.
func (s *segment) insert(segs []string, e *entry) *entry {
	for i, seg := range segs {
		more := i < len(segs)-1
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "...}") && !more {
			if s.rest != nil {
				return s.rest
			}
			s.rest = e
			return nil
		}
		var next *segment
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			if s.param == nil {
				s.param = &segment{}
			}
			next = s.param
		} else {
			if s.static == nil {
				s.static = map[string]*segment{}
			}
			if next = s.static[seg]; next == nil {
				next = &segment{}
				s.static[seg] = next
			}
		}
		s = next
	}
	if s.end != nil {
		return s.end
	}
	s.end = e
	return nil
}

// lookup finds the route for method and path. Static segments win over
// {name}, which wins over {name...}.
func (r *Router) lookup(method, path []byte) *entry {
	root := r.table.Load().roots[string(method)]
	if root == nil || len(path) == 0 || path[0] != '/' {
		return nil
	}
	return root.match(path[1:])
}

func (s *segment) match(path []byte) *entry {
	seg, tail := path, []byte(nil)
	last := true
	for i, c := range path {
		if c == '/' {
			seg, tail, last = path[:i], path[i+1:], false
			break
		}
	}
	if next := s.static[string(seg)]; next != nil {
		if e := next.matchTail(tail, last); e != nil {
			return e
		}
	}
	if s.param != nil && len(seg) > 0 {
		if e := s.param.matchTail(tail, last); e != nil {
			return e
		}
	}
	return s.rest
}

func (s *segment) matchTail(tail []byte, last bool) *entry {
	if last {
		return s.end
	}
	return s.match(tail)
}
