package terminator

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/wire"
)

// exchange is the per-request state of the hot path, pooled: the wire
// request with its buffers, and the context of its bus call (see watch.go).
type exchange struct {
	req         wire.Request
	client      []byte
	reqID       []byte
	labels      []byte           // feature flags on and A/B variants, for req.Labels
	variants    []*variantCounts // the client's variants, to count its response in
	madeCookies [][2]string      // keys made up for this client: cookie name, value
	timing      []byte           // the front's Server-Timing value
	path        []byte           // the path as routed and sent: each segment decoded
	allow       []byte           // an Allow header's value, for a path routed for other methods
	detail      []byte           // what an error body says of the request
	body        []byte           // the request body, read from fasthttp's stream
	reserved    int              // bytes of the body budget this request holds
	bodyDone    bool             // the body was read whole (or there was none)
	ctx         reqContext

	// For the access log and the span.
	begin   time.Time     // when the handler got the request
	end     time.Time     // when the bus call's answer was in; zero without one (access reads the clock)
	route   *entry        // the route it matched, nil if none
	bus     time.Duration // the bus call's time, 0 without one
	version string        // the version that answered
	err     error         // the bus call's error
	gone    bool          // the client went away: a 499
	shed    bool          // refused by admission (or the body budget) before any work
	span    trace.Span    // the request's server span; nil without tracing
}

// maxKeptBody is the largest body buffer an exchange keeps in the pool:
// small bodies cost no allocation, and large ones are not held (outside
// the body budget) once their request is done.
const maxKeptBody = 16 << 10

var exchangePool = sync.Pool{New: func() any { return &exchange{ctx: newReqContext()} }}

// release returns x to the pool, keeping the buffers it owns (client
// address, request ID, encoded headers) and dropping its views into
// fasthttp's buffers, which fasthttp reuses for the next request. Its
// context keeps its channel, unless closed (see reqContext.prepare).
func (x *exchange) release() {
	h := x.req.Header
	h.Reset()
	x.req = wire.Request{Header: h}
	x.bodyDone = false
	if cap(x.body) > maxKeptBody {
		x.body = nil
	}
	clear(x.variants)
	x.variants, x.madeCookies = x.variants[:0], x.madeCookies[:0]
	x.route, x.bus, x.version, x.err, x.gone, x.shed = nil, 0, "", nil, false, false
	x.end = time.Time{}
	x.span, x.ctx.values = nil, nil
	exchangePool.Put(x)
}

// handle is the public handler: one HTTP request becomes one bus request to
// one instance of the route's service, and its reply becomes the response.
// fasthttp hands it the head and at most a small prefix of the body
// (StreamRequestBody): whatever it refuses, it refuses before reading the
// rest, and every reply it makes carries the request ID.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	x := exchangePool.Get().(*exchange)
	// The clock is read as few times as the request needs (a reading
	// costs 60-100 ns on a VM, and a page read it dozens of times): the
	// bus call's start and end serve for the route's latency,
	// Server-Timing and the access log.
	x.begin = time.Now()
	defer s.done(ctx, x)
	x.reqID = s.requestID(x.reqID[:0], ctx.Request.Header.Peek("X-Request-Id"))
	ctx.Response.Header.SetBytesV("X-Request-Id", x.reqID)
	if s.tracer != nil {
		s.startSpan(ctx, x)
	}

	if !strict(ctx) {
		s.counts.malformed.Add(1)
		s.badLog.Do(func() {
			s.log.Warn("malformed HTTP request", "peer", ctx.RemoteAddr().String(), "err", "not strict HTTP/1.1")
		})
		s.reply(ctx, x.reqID, fasthttp.StatusBadRequest, "malformed request")
		ctx.SetConnectionClose() // its framing is in doubt
		return
	}
	// Admission is decided first, so that a refusal costs next to nothing.
	// A request with a body looks now whether it would be refused (limit
	// reached, no room to wait) and takes its slot once the body is in: a
	// slow upload holds bytes of the body budget, never a slot that
	// requests waiting for replies need.
	if ctx.RequestBodyStream() != nil && s.limiter.Full() {
		s.counts.overloaded.Add(1)
		x.shed = true
		s.reply(ctx, x.reqID, fasthttp.StatusServiceUnavailable, "overloaded")
		return
	}
	var how int
	x.path, how = decodePath(x.path[:0], ctx.URI().PathOriginal())
	if how == pathBad {
		s.counts.badPath.Add(1)
		s.reply(ctx, x.reqID, fasthttp.StatusBadRequest, "bad path: encoded slash, dot or empty segment, or control byte")
		return
	}
	var e *entry
	head := false
	if how == pathOK {
		e, head = s.router.route(ctx.Method(), x.path)
	}
	if e != nil && x.span != nil {
		routeSpan(x, e)
	}
	if e == nil {
		s.noRoute(ctx, x, how)
		return
	}
	x.route = e
	if status := s.readBody(ctx, x); status != 0 {
		msg := "request body too large"
		switch status {
		case fasthttp.StatusServiceUnavailable:
			x.shed = true
			msg = "request bodies over the memory budget; retry"
		case fasthttp.StatusRequestTimeout:
			msg = "request timeout"
		case fasthttp.StatusBadRequest:
			msg = "malformed request body"
		}
		s.reply(ctx, x.reqID, status, msg)
		return
	}
	if !s.limiter.Admit() {
		s.counts.overloaded.Add(1)
		x.shed = true
		s.reply(ctx, x.reqID, fasthttp.StatusServiceUnavailable, "overloaded")
		return
	}
	start := time.Now()
	gone := false
	defer func() { s.release(start, gone) }()
	s.fill(x, ctx, e)
	if head {
		x.req.Method = strGET // the GET route's answer; fasthttp leaves out its body
	}
	s.decide(x, ctx)
	if !s.cfg.HideServerTiming {
		x.req.Flags |= wire.FlagTiming
	}
	fd := -1
	if c, ok := ctx.Conn().(*edgeConn); ok {
		fd = c.fd
	}
	x.ctx.prepare(start.Add(e.timeout), fd)
	s.watch.park(&x.ctx, start)
	resp, err := s.node.Do(&x.ctx, e.Service, &x.req)
	s.watch.unpark(&x.ctx)
	returned := time.Now()
	x.bus, x.end = returned.Sub(start), returned
	if err != nil && x.ctx.cancelled() && errors.Is(err, context.Canceled) {
		gone = true
		s.clientGone(ctx, x, e)
		return
	}
	status := fasthttp.StatusOK
	if err != nil {
		// Busy (an instance, or this node's bound on one, refused it at
		// once) is load shed, as an admission refusal is.
		x.err, x.shed = err, errors.Is(err, nanobus.ErrBusy)
		status = s.fail(ctx, x, err)
	} else {
		x.version = resp.Version
		status = resp.Status
		ctx.SetStatusCode(resp.Status)
		for k, v := range resp.Header.All() {
			if !hopByHop(k) && !bytes.EqualFold(k, hdrContentLength) {
				ctx.Response.Header.AddBytesKV(k, v)
			}
		}
		ctx.Response.SetBody(resp.Body)
		resp.Release()
	}
	if e.cors != nil {
		cors(ctx, e.cors)
	}
	if !s.cfg.HideServerTiming { // after the service's own entry
		x.timing = serverTiming(x.timing[:0], x.bus, returned.Sub(x.begin))
		ctx.Response.Header.AddBytesV("Server-Timing", x.timing)
	}
	e.stats.count(status)
	countVariants(x, status)
	took := x.bus // the answer's copy into the response is not the route's latency
	e.stats.latency.Record(took)
	s.metrics.latency(e, took)
}

// noRoute answers a request no route takes: 404 when no route has its
// path; else an OPTIONS request is answered at the front (204 with Allow,
// and a CORS preflight's answer) where a CORS policy applies, and any
// other method gets 405 with Allow.
func (s *Server) noRoute(ctx *fasthttp.RequestCtx, x *exchange, how int) {
	if how == pathOK {
		var cors bool
		x.allow, cors = s.router.allowed(x.allow[:0], x.path)
		if len(x.allow) > 0 {
			if cors && bytes.Equal(ctx.Method(), strOPTIONS) {
				s.counts.preflights.Add(1)
				s.preflight(ctx, x, x.allow)
				return
			}
			s.counts.badMethod.Add(1)
			s.replyOf(ctx, x.reqID, fasthttp.StatusMethodNotAllowed, "method not allowed: ", ctx.Method())
			ctx.Response.Header.SetBytesKV(hdrAllow, x.allow)
			return
		}
	}
	s.counts.noRoute.Add(1)
	x.detail = append(append(append(x.detail[:0], ctx.Method()...), ' '), ctx.URI().PathOriginal()...)
	s.replyOf(ctx, x.reqID, fasthttp.StatusNotFound, "no route for ", x.detail)
}

// release gives back the admission slot of a request admitted at start.
// Its latency is the limiter's sample, unless its client went away: how
// long a client waits before it leaves says nothing of the service's load.
func (s *Server) release(start time.Time, gone bool) {
	if gone {
		s.limiter.Forget()
		return
	}
	s.limiter.Release(time.Since(start))
}

// clientGone ends a request whose client went away while its call was
// parked (the watcher cancelled the call): nothing is written, the
// connection is closed, and it is counted and logged (the access log) as
// nginx's 499.
func (s *Server) clientGone(ctx *fasthttp.RequestCtx, x *exchange, e *entry) {
	e.stats.cancelled.Add(1)
	x.gone = true
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(dropConn) // fasthttp then closes the connection, writing nothing
}

func dropConn(net.Conn) {}

// done ends a request: its share of the body budget goes back, and a
// body left unread (the request was refused) closes the connection rather
// than have fasthttp read it away. Otherwise the connection scans the next
// request's head, when it knows where it starts (see edgeConn.nextHead).
func (s *Server) done(ctx *fasthttp.RequestCtx, x *exchange) {
	if x.reserved > 0 {
		s.bodyBytes.Add(-int64(x.reserved))
		x.reserved = 0
	}
	stream := ctx.RequestBodyStream() != nil
	if !x.bodyDone && stream {
		ctx.SetConnectionClose()
	} else if c, ok := ctx.Conn().(*edgeConn); ok {
		switch cl := ctx.Request.Header.ContentLength(); {
		case !stream:
			c.nextHead(0)
		case cl >= 0:
			c.nextHead(int64(cl))
		}
	}
	if x.span != nil {
		endSpan(ctx, x)
	}
	s.access(ctx, x)
	x.release()
}

var (
	hdrContentLength = []byte("Content-Length")
	hdrConnection    = []byte("Connection")
	hdrRequestID     = []byte("X-Request-Id")
	hdrTraceParent   = []byte("Traceparent")
	spoofable        = [][]byte{[]byte("X-Forwarded-For"), []byte("X-Real-Ip"), []byte("X-Forwarded-Proto"), []byte("X-Forwarded-Host")}
	hopHeaders       = [][]byte{[]byte("Connection"), []byte("Keep-Alive"), []byte("Te"), []byte("Trailer"),
		[]byte("Transfer-Encoding"), []byte("Upgrade")}
)

// hopByHop reports a header that belongs to one connection and never
// crosses into a message (RFC 9110 7.6.1).
func hopByHop(k []byte) bool {
	if len(k) > 6 && bytes.EqualFold(k[:6], []byte("Proxy-")) {
		return true
	}
	for _, h := range hopHeaders {
		if bytes.EqualFold(k, h) {
			return true
		}
	}
	return false
}

// fill turns the HTTP request into the wire request.
func (s *Server) fill(x *exchange, ctx *fasthttp.RequestCtx, e *entry) {
	h := &ctx.Request.Header
	peer, trusted := s.peer(ctx)
	x.client = s.clientAddr(peer, trusted, h).AppendTo(x.client[:0])
	r := &x.req
	r.Route = e.key
	r.Method = ctx.Method()
	r.Path = x.path
	r.Query = ctx.URI().QueryString()
	r.Client = x.client
	r.TraceParent = h.Peek("Traceparent")
	r.Header.Reset()
	conn := h.PeekBytes(hdrConnection) // headers it names are hop-by-hop too
	for k, v := range h.All() {
		switch {
		case hopByHop(k), bytes.EqualFold(k, hdrContentLength), bytes.EqualFold(k, hdrRequestID),
			bytes.EqualFold(k, hdrTraceParent), len(conn) > 0 && listsToken(conn, k),
			!trusted && isSpoofable(k):
			continue
		}
		r.Header.AddBytes(k, v)
	}
	r.Header.AddBytes(hdrRequestID, x.reqID)
}

func isSpoofable(k []byte) bool {
	for _, h := range spoofable {
		if bytes.EqualFold(k, h) {
			return true
		}
	}
	return false
}

// listsToken reports whether the comma-separated list names token.
func listsToken(list, token []byte) bool {
	for len(list) > 0 {
		var item []byte
		if i := bytes.IndexByte(list, ','); i >= 0 {
			item, list = list[:i], list[i+1:]
		} else {
			item, list = list, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(item), token) {
			return true
		}
	}
	return false
}

// peer is the direct peer's address and whether it is a trusted proxy. A
// peer on the unix socket has no address (the zero Addr): it is trusted
// with Config.TrustUnix, and the client's address is then its headers'.
func (s *Server) peer(ctx *fasthttp.RequestCtx) (netip.Addr, bool) {
	if s.unix {
		return netip.Addr{}, s.cfg.TrustUnix
	}
	var a netip.Addr
	if t, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		a, _ = netip.AddrFromSlice(t.IP)
		a = a.Unmap()
	}
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return a, true
		}
	}
	return a, false
}

// clientAddr is the client's address: the direct peer's, unless that is a
// trusted proxy, whose X-Real-IP or X-Forwarded-For (the rightmost address
// not itself a trusted proxy) is then believed. Behind a proxy on the unix
// socket, which has no address of its own, a chain of trusted addresses
// alone gives the nearest of them (nginx's own client on loopback, e.g. a
// local health check), and no header at all no address.
func (s *Server) clientAddr(peer netip.Addr, trusted bool, h *fasthttp.RequestHeader) netip.Addr {
	if !trusted {
		return peer
	}
	if v := h.Peek("X-Real-Ip"); len(v) > 0 {
		if a, err := netip.ParseAddr(string(bytes.TrimSpace(v))); err == nil {
			return a.Unmap()
		}
	}
	xff := h.Peek("X-Forwarded-For")
	for len(xff) > 0 {
		var item []byte
		if i := bytes.LastIndexByte(xff, ','); i >= 0 {
			item, xff = xff[i+1:], xff[:i]
		} else {
			item, xff = xff, nil
		}
		a, err := netip.ParseAddr(string(bytes.TrimSpace(item)))
		if err != nil {
			break
		}
		a = a.Unmap()
		if !s.isTrusted(a) {
			return a
		}
		if !peer.IsValid() {
			peer = a
		}
	}
	return peer
}

func (s *Server) isTrusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// requestID returns the client's X-Request-ID when it is sane, else a new
// one: this process's random prefix and a counter.
func (s *Server) requestID(dst, given []byte) []byte {
	if validRequestID(given) {
		return append(dst, given...)
	}
	dst = append(dst, s.idPrefix...)
	return strconv.AppendUint(dst, s.idSeq.Add(1), 36)
}

func validRequestID(b []byte) bool {
	if len(b) == 0 || len(b) > 128 {
		return false
	}
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// fail writes the response for a bus error, by nanobus's status table.
func (s *Server) fail(ctx *fasthttp.RequestCtx, x *exchange, err error) int {
	st := nanobus.StatusOf(err)
	s.reply(ctx, x.reqID, st.Code, st.Message)
	if st.RetryAfter {
		ctx.Response.Header.SetBytesV("Retry-After", s.retryAfter)
	}
	return st.Code
}

// refusedUnread reports whether ctx's body was refused before fasthttp
// read it (see headerReceived): fasthttp has reset the request by now.
func refusedUnread(ctx *fasthttp.RequestCtx) bool {
	c, ok := ctx.Conn().(*edgeConn)
	return ok && c.tooLarge.Load()
}

// httpError answers requests fasthttp could not parse: 431, 413 or 400.
// Its reply carries a request ID too: the client's, when its head got as
// far as a valid one, else a new one.
func (s *Server) httpError(ctx *fasthttp.RequestCtx, err error) {
	id := s.requestID(nil, ctx.Request.Header.Peek("X-Request-Id"))
	defer s.accessRefused(ctx, id)
	if s.tracer != nil {
		defer s.errorSpan(ctx, id)
	}
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		s.counts.headerTooLarge.Add(1)
		s.reply(ctx, id, fasthttp.StatusRequestHeaderFieldsTooLarge, "request headers too large")
	case errors.Is(err, fasthttp.ErrBodyTooLarge), refusedUnread(ctx):
		s.counts.bodyTooLarge.Add(1)
		s.reply(ctx, id, fasthttp.StatusRequestEntityTooLarge, "request body too large")
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.counts.timeouts.Add(1)
			s.reply(ctx, id, fasthttp.StatusRequestTimeout, "request timeout")
			return
		}
		s.counts.malformed.Add(1)
		s.badLog.Do(func() { s.log.Warn("malformed HTTP request", "peer", ctx.RemoteAddr().String(), "err", err) })
		s.reply(ctx, id, fasthttp.StatusBadRequest, "malformed request")
	}
}

// accessRefused writes the access line of a request fasthttp could not
// read (httpError answered it): what it got of it, with its status.
func (s *Server) accessRefused(ctx *fasthttp.RequestCtx, id []byte) {
	x := exchangePool.Get().(*exchange)
	x.begin, x.reqID = ctx.Time(), append(x.reqID[:0], id...)
	s.access(ctx, x)
	x.release()
}
