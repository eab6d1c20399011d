package nanobus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.nanomsg.org/mangos/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/terminator-gw/terminator/wire"
)

// Handler answers one request. ctx ends at the request's deadline (or when
// the node closes). req and its slices are valid until the handler returns.
// A returned error is answered as StatusOf says: a *StatusError (see
// Errorf) with its status, a bus error from a call the handler made with
// the status it means (ErrDeadline is a 504, ErrNoPeer a 503...), anything
// else 500, logged.
type Handler func(ctx context.Context, req *Request) (Reply, error)

// Reply is a handler's answer.
type Reply struct {
	Status int // 0 means 200
	Header wire.Headers
	Body   []byte
}

// Request is a request as a handler sees it: the decoded frame (views into
// it) and the route it matched.
type Request struct {
	wire.Request
	route *route
}

// PathValue returns the path segment matching the wildcard {name} of the
// route's pattern ("GET /profiles/{id}" and path "/profiles/42" give "42"
// for "id"), or "" if there is none. A final {name...} matches the rest.
func (r *Request) PathValue(name string) string {
	if r.route == nil {
		return ""
	}
	return pathValue(r.route.segments, string(r.Path), name)
}

// route is a registered handler with what serving it needs.
type route struct {
	Route
	handler  Handler
	stream   StreamHandler // instead of handler, for a stream route
	segments []string      // the pattern split on '/', for PathValue
	stats    routeCounters
}

var requestPool = sync.Pool{New: func() any { return new(Request) }}

// Handle registers h for route, with what opts declare about it (Timeout,
// Idempotent, GhostSafe). A public route is "METHOD /path" with {name}
// wildcards ("GET /profiles/{id}"); an internal route is a plain name
// ("profiles.get"). A malformed route, or one registered already, is an
// error. Register every route before the node is announced (discovery
// publishes the routes it has then).
func (n *Node) Handle(name string, h Handler, opts ...RouteOption) error {
	if h == nil {
		return fmt.Errorf("route %q: nil handler", name)
	}
	return n.handle(name, &route{handler: h}, opts)
}

func (n *Node) handle(name string, rt *route, opts []RouteOption) error {
	r, err := ParseRoute(name)
	if err != nil {
		return err
	}
	for _, o := range opts {
		o(&r)
	}
	if r.Timeout < 0 || r.Timeout > maxDeadline {
		return fmt.Errorf("route %q: timeout %v: want 0 to %v", name, r.Timeout, maxDeadline)
	}
	if r.Hedge && (!r.Idempotent || r.HedgeAfter < 0 || r.HedgeAfter > maxDeadline) {
		return fmt.Errorf("route %q: hedging needs an idempotent route and a delay of 0 to %v", name, maxDeadline)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	old := *n.routes.Load()
	if _, dup := old[name]; dup {
		return fmt.Errorf("route %q: registered already", name)
	}
	next := make(map[string]*route, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	rt.Route, rt.segments = r, r.Segments()
	next[name] = rt
	n.routes.Store(&next)
	return nil
}

// Routes lists the registered routes, sorted by name.
func (n *Node) Routes() []Route {
	m := *n.routes.Load()
	out := make([]Route, 0, len(m))
	for _, r := range m {
		out = append(out, r.Route)
	}
	slices.SortFunc(out, func(a, b Route) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// serve runs one request through its handler and sends the reply back on
// the connection the request came in on, and nowhere else.
func (n *Node) serve(j job) {
	defer n.serving.Add(-1)
	n.stats.serving.Add(1)
	defer n.stats.serving.Add(-1)
	defer j.m.Free() // after the reply is encoded: its body may point into m
	defer n.running.remove(j.ctx)

	req := requestPool.Get().(*Request)
	defer func() { *req = Request{}; requestPool.Put(req) }()
	if err := wire.DecodeRequest(j.m.Body, &req.Request); err != nil {
		// Its prefix read (deliver checked it): the asker is told at once,
		// rather than waiting out its deadline.
		n.stats.malformed.Add(1)
		warnSometimes(&n.badLog, n.log, "malformed request answered", "size", len(j.m.Body), "err", err)
		n.answerError(j.reply, j.id, wire.CodeMalformed, "request does not decode")
		return
	}
	n.stats.requests.Add(1)
	if j.ctx.byAsker.Load() {
		return // cancelled while it waited for a worker: the asker has gone
	}
	now := time.Now() // one reading for the deadline check and the handler's start: a reading costs 60-100 ns on a VM
	rt, deadline, ok := n.admit(j, req, now)
	if !ok {
		return
	}
	defer j.share.Add(-1)
	n.answer(j, req, rt, deadline, now)
}

// admit decides whether req runs, and until when. It answers what it
// refuses. Admitted, the request holds one of its connection's share of
// handlers (j.share), which the caller gives back.
func (n *Node) admit(j job, req *Request, now time.Time) (rt *route, deadline time.Time, ok bool) {
	if deadline = deadlineOf(&req.Request); !deadline.IsZero() {
		// The same instant, with now's monotonic reading: every later
		// look at the deadline (Err, Done's timer, the calls the handler
		// makes) then reads only the monotonic clock, half of what a
		// wall-clock reading costs.
		deadline = now.Add(deadline.Sub(now))
	}
	if !deadline.IsZero() && !now.Before(deadline) {
		// Promise 4: work whose deadline has passed is dropped before it
		// starts. The asker has given up already; no reply is sent.
		n.stats.expiredOnArrival.Add(1)
		return nil, deadline, false
	}
	// The asker bounds its own calls to us; one that does not (a
	// misconfigured bound, or a peer that means harm) gets no more than its
	// share of the node's handlers: refused, counted.
	if j.share.Add(1) > int64(n.cfg.MaxInFlight) {
		j.share.Add(-1)
		n.stats.overload.Add(1)
		warnSometimes(&n.errLog, n.log, "asker over its share of handlers", "from", string(req.From))
		n.refuse(j.reply, req, wire.CodeBusy, "over the in-flight bound")
		return nil, deadline, false
	}
	refuse := func(code wire.Code, msg string) (*route, time.Time, bool) {
		j.share.Add(-1)
		n.refuse(j.reply, req, code, msg)
		return nil, deadline, false
	}
	if n.draining.Load() {
		return refuse(wire.CodeUnavailable, "draining")
	}
	rt = (*n.routes.Load())[string(req.Route)]
	if rt == nil {
		n.stats.noRoute.Add(1)
		return refuse(wire.CodeNoRoute, "no handler")
	}
	req.route = rt
	// A request runs no longer than its route's own timeout (the node's,
	// for a route that declares none), whatever deadline the asker claims.
	limit := now.Add(cmp.Or(rt.Timeout, n.cfg.Timeout))
	if deadline.IsZero() || deadline.After(limit) {
		deadline = limit
	}
	// A stream may be held for minutes: the adaptive limit, which learns
	// from latency, is for requests (a stream is bounded by its asker's
	// share, MaxInFlight, and its credit).
	if lim := n.cfg.Limiter; lim != nil && rt.stream == nil && !n.acquire(lim, req.Flags) {
		n.stats.overload.Add(1)
		return refuse(wire.CodeBusy, "over the concurrency limit")
	}
	return rt, deadline, true
}

// answer runs the handler of an admitted request, admitted at start, and
// sends its reply.
func (n *Node) answer(j job, req *Request, rt *route, deadline, start time.Time) {
	ctx := j.ctx
	ctx.deadline = deadline // before the handler, the only one to read it, runs
	if len(req.Labels) > 0 {
		ctx.labels = string(req.Labels)
	}
	ctx.ghost = req.Flags&wire.FlagGhost != 0
	ctx.req = req
	var span trace.Span
	if n.tracer != nil {
		span = n.startServerSpan(ctx, req, rt)
	}
	var rep Reply
	var err error
	var w *StreamWriter
	switch {
	case rt.stream == nil:
		rep, err = n.run(ctx, rt, req)
	case wire.StreamCredit(&req.Request) == 0:
		err = Errorf(400, "%s is a stream route: call it with Node.Stream", rt.Name)
	default:
		w = n.newStreamWriter(j, req, ctx)
		err = n.runStream(ctx, rt, req, w)
	}
	ctx.end(context.Canceled) // like a CancelFunc: the handler is done, and so are the calls it left
	now := time.Now()
	if lim := n.cfg.Limiter; lim != nil && rt.stream == nil {
		lim.Release(now.Sub(start)) // a panic in the handler is an error by now (run)
	}
	if ctx.byAsker.Load() {
		// The asker cancelled: it waits for no reply, and the handler's
		// answer (context.Canceled, as a rule) is no error of the route.
		rt.stats.cancelled.Add(1)
		if span != nil {
			endServerSpan(span, 0, err, true)
		}
		return
	}
	if err != nil {
		st := StatusOf(err)
		if st.Code == 500 && !errors.As(err, new(*StatusError)) {
			n.stats.handlerErrors.Add(1)
		}
		rep = Reply{Status: st.Code, Body: []byte(st.Message)}
		if st.RetryAfter {
			rep.Header.Add("Retry-After", "1")
		}
	} else if w != nil {
		rep = Reply{Status: w.Status, Header: w.Header} // a stream that sent nothing: its head alone
	}
	if rep.Status == 0 {
		rep.Status = 200
	}
	rt.stats.record(rep.Status, now.Sub(start), err)
	if rep.Status >= 500 && n.logsFailure(slog.LevelError) {
		// Every 5xx with its cause, at every hop: the ID ties it to the
		// front's line and to the lines of the calls it made.
		cause := "answered with status " + strconv.Itoa(rep.Status)
		if err != nil {
			cause = err.Error()
		}
		n.requestLog(slog.LevelError, "request failed", &req.Request, slog.Int("status", rep.Status),
			slog.String("err", cause), slog.Duration("took", now.Sub(start)))
	}
	if span != nil {
		endServerSpan(span, rep.Status, err, false)
	}
	if w != nil && w.sent > 0 {
		w.end(rep, err) // the head went out: the stream ends with an end frame
		return
	}
	// Past the asker's own deadline nobody waits for the reply. (Past a
	// deadline this node set shorter, the asker still does: it gets the
	// handler's answer, a 504 as a rule.)
	if asked := deadlineOf(&req.Request); !asked.IsZero() && !now.Before(asked) {
		n.stats.expiredInHandler.Add(1)
		if n.logsFailure(slog.LevelWarn) {
			n.requestLog(slog.LevelWarn, "reply dropped: the asker's deadline passed while the handler ran", &req.Request,
				slog.Int("status", rep.Status), slog.Duration("took", now.Sub(start)))
		}
		return
	}
	n.stats.handled.Add(1)
	if req.Flags&wire.FlagTiming != 0 {
		h := n.withTiming(rep.Header, now.Sub(start))
		defer headersPool.Put(h)
		rep.Header = *h
	}
	out := wire.Reply{ID: req.ID, Status: rep.Status, Header: rep.Header, Body: rep.Body}
	reply := mangos.NewMessage(out.Size())
	if reply.Body, err = wire.AppendReply(reply.Body[:0], &out); err != nil {
		n.stats.handlerErrors.Add(1)
		warnSometimes(&n.errLog, n.log, "reply does not encode", "route", rt.Name, "err", err)
		reply.Body, _ = wire.AppendReply(reply.Body[:0], &wire.Reply{ID: req.ID, Status: 500, Body: []byte("reply does not encode")})
	}
	if !n.send(j.reply, reply) && n.logsFailure(slog.LevelWarn) {
		n.requestLog(slog.LevelWarn, "reply dropped: the asker's connection is gone", &req.Request,
			slog.Int("status", rep.Status), slog.Duration("took", now.Sub(start)))
	}
}

var headersPool = sync.Pool{New: func() any { return new(wire.Headers) }}

var hdrServerTiming = []byte("Server-Timing")

// withTiming returns a copy of h (the handler's, which it may share) with
// this node's Server-Timing entry added: service, version and handler time,
// e.g. `profiles;desc="v2";dur=0.412`. Put it back in headersPool when the
// reply is encoded.
func (n *Node) withTiming(h wire.Headers, d time.Duration) *wire.Headers {
	out := headersPool.Get().(*wire.Headers)
	out.Reset()
	for k, v := range h.All() {
		out.AddBytes(k, v)
	}
	var buf [128]byte
	v := append(buf[:0], n.timingPrefix...)
	v = strconv.AppendFloat(v, float64(d)/1e6, 'f', 3, 64)
	out.AddBytes(hdrServerTiming, v)
	return out
}

// run calls the handler, turning a panic into an error.
func (n *Node) run(ctx context.Context, rt *route, req *Request) (rep Reply, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return rt.handler(ctx, req)
}

// refuse answers req with an error frame.
func (n *Node) refuse(reply func([]byte) error, req *Request, code wire.Code, msg string) {
	n.answerError(reply, req.ID, code, msg)
}

// answerError sends an error frame for id through reply.
func (n *Node) answerError(reply func([]byte) error, id wire.ID, code wire.Code, msg string) {
	e := wire.Error{ID: id, Code: code, Message: readOnlyBytes(msg)}
	m := mangos.NewMessage(e.Size())
	m.Body, _ = wire.AppendError(m.Body[:0], &e)
	if !n.send(reply, m) {
		warnSometimes(&n.errLog, n.log, "reply undeliverable: the asker's connection is gone")
	}
}

// send writes a reply or error frame on the asker's connection, the one
// its request came in on: it crosses the network once, to the asker only.
// A connection that is gone is not waited for: the reply is dropped,
// counted, and the handler's slot is free at once. It reports whether the
// reply went out; the caller logs one that did not.
func (n *Node) send(reply func([]byte) error, m *mangos.Message) bool {
	n.replies.sent.Add(1)
	ok := !n.closed.Load() && reply(m.Body) == nil
	if !ok {
		n.replies.sent.Add(^uint64(0))
		n.stats.undeliverable.Add(1)
	}
	m.Free()
	return ok
}

// JSON is a reply with v encoded as JSON, for handlers that answer JSON:
// return nanobus.JSON(200, profile).
func JSON(status int, v any) (Reply, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Reply{}, fmt.Errorf("encode reply: %w", err)
	}
	return RawJSON(status, b), nil
}

// RawJSON is a reply whose body is JSON already (a stored document, a page
// assembled by hand). Its Content-Type header is shared by every such
// reply, built once: add no header to it.
func RawJSON(status int, body []byte) Reply {
	return Reply{Status: status, Header: jsonHeader, Body: body}
}

var jsonHeader = func() (h wire.Headers) {
	h.Add("Content-Type", "application/json")
	return h
}()

// runningRequests finds the handler context of a request being served by
// the pipe it came on and its ID, for cancel and credit frames. Keyed by a
// hash of the ID (a uint64 key keeps the map on its fast path) and checked
// against the pipe and the whole ID, so that no peer reaches another's
// request; sharded, as pending is. Two requests whose IDs hash alike (from
// two askers, by chance) keep one entry: the other cannot be cancelled,
// and runs to its deadline, which is all that a lost cancel costs.
type runningRequests struct {
	shards [64]runningShard
}

type runningShard struct {
	sync.Mutex
	m map[uint64]*handlerContext
	_ [48]byte // with the mutex and the map pointer, a cache line
}

func runningKey(id wire.ID) uint64 { return id.Seq ^ id.Node*0x9e3779b97f4a7c15 }

func (r *runningRequests) shard(key uint64) *runningShard {
	return &r.shards[key%uint64(len(r.shards))]
}

func (r *runningRequests) add(pipe *atomic.Int64, id wire.ID, hc *handlerContext) {
	hc.pipe, hc.id = pipe, id
	k := runningKey(id)
	s := r.shard(k)
	s.Lock()
	if s.m == nil {
		s.m = map[uint64]*handlerContext{}
	}
	s.m[k] = hc
	s.Unlock()
}

func (r *runningRequests) get(pipe *atomic.Int64, id wire.ID) *handlerContext {
	k := runningKey(id)
	s := r.shard(k)
	s.Lock()
	hc := s.m[k]
	s.Unlock()
	if hc == nil || hc.pipe != pipe || hc.id != id {
		return nil
	}
	return hc
}

// remove forgets hc's request, unless the entry is another's.
func (r *runningRequests) remove(hc *handlerContext) {
	k := runningKey(hc.id)
	s := r.shard(k)
	s.Lock()
	if s.m[k] == hc {
		delete(s.m, k)
	}
	s.Unlock()
}

// acquire takes a handler's slot: a nested call before new work, when
// the limiter knows the difference.
func (n *Node) acquire(lim Limiter, flags uint16) bool {
	if n.nested != nil && flags&wire.FlagNested != 0 {
		return n.nested.AcquireNested()
	}
	return lim.Acquire()
}
