package terminator

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// The HTTP edge: what the front refuses before any bus work, and the
// connection and memory bounds it keeps. See docs/status-codes.md.

// capListener holds the open connections to Config.MaxConns: one over it
// is answered 503 with Retry-After by the front itself, counted and closed,
// so fasthttp's own connection limit (which answers without either) is
// never the one that refuses.
type capListener struct {
	net.Listener
	s *Server
	// refusing bounds the goroutines answering refused connections: a
	// flood beyond it is closed unanswered (and still counted).
	refusing chan struct{}
}

const maxRefusing = 64

func (l *capListener) Accept() (net.Conn, error) {
	s := l.s
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if s.conns.Add(1) > int64(s.cfg.MaxConns) {
			s.conns.Add(-1)
			s.counts.connsRefused.Add(1)
			select {
			case l.refusing <- struct{}{}:
				go func() {
					s.refuseConn(c)
					<-l.refusing
				}()
			default:
				_ = c.Close()
			}
			continue
		}
		return &edgeConn{Conn: c, s: s, scanning: true, fd: rawFD(c)}, nil
	}
}

// rawFD is c's socket, for the watcher to poll while a request of c's is
// parked (see watch.go), or -1. The number stays c's until c is closed,
// which fasthttp does only once no request of c's runs.
func rawFD(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if rc.Control(func(s uintptr) { fd = int(s) }) != nil {
		return -1
	}
	return fd
}

// refuseConn answers a connection over the cap and closes it, lingering.
func (s *Server) refuseConn(c net.Conn) {
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	id := s.requestID(nil, nil)
	const body = "too many connections\n"
	b := make([]byte, 0, 256)
	b = append(b, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\nRetry-After: "...)
	b = append(b, s.retryAfter...)
	b = append(b, "\r\nX-Request-Id: "...)
	b = append(b, id...)
	b = append(b, "\r\nConnection: close\r\n\r\n"+body...)
	if _, err := c.Write(b); err != nil {
		return
	}
	linger(c)
}

// linger shuts c's write side and reads away, for a moment, what the
// client still sends: closing with unread bytes resets the connection, and
// the client could lose the answer it was just sent (nginx's lingering
// close).
func linger(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
	if hc, ok := c.(interface{ CloseWrite() error }); ok { // TCP and unix sockets
		_ = hc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// errBareLF is a request head with a line ended by LF alone (RFC 9112 2.2
// lets a server refuse it; nginx does).
var errBareLF = errors.New("bare LF in the request head")

// edgeConn is an accepted connection: it gives its slot back when closed,
// and watches the bytes of each request head for a line ended by a bare LF.
// fasthttp waits for CRLFCRLF before it parses a head, so a head ended by
// bare LFs alone would sit until the read timeout (408); the scan turns it
// into an error of the next read, which fasthttp hands to the error
// handler (400), or, when fasthttp did parse the head, a flag the handler
// checks. It scans heads only: bodies may hold any bytes. The scan fields
// belong to the connection's serving goroutine (fasthttp reads and runs
// the handler on it).
type edgeConn struct {
	net.Conn
	s      *Server
	closed atomic.Bool
	fd     int // the socket, or -1 (see rawFD)

	scanning bool        // reading a request head
	sawLine  bool        // the head has a non-empty line (empty ones before the request line are ignored)
	bareLF   bool        // a head line ended in a bare LF; every later read fails
	lineLen  int         // bytes of the current line so far
	last     byte        // the last byte read
	read     int64       // bytes read in all
	headEnd  int64       // offset just past the current head
	tooLarge atomic.Bool // the current request's body is refused unread (see headerReceived)
}

// SetReadDeadline notes a deadline already due: headerReceived's way of
// ending fasthttp's wait for a body it refuses, which httpError then
// answers 413 rather than 408.
func (c *edgeConn) SetReadDeadline(t time.Time) error {
	c.tooLarge.Store(!t.IsZero() && time.Until(t) <= 0) // the monotonic clock alone: fasthttp's deadlines have a reading of it
	return c.Conn.SetReadDeadline(t)
}

func (c *edgeConn) Read(p []byte) (int, error) {
	if c.bareLF {
		return 0, errBareLF
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if c.scanning {
			c.scan(p[:n])
		}
		c.read += int64(n)
	}
	return n, err
}

// scan follows the lines of a head through p, up to the empty line that
// ends it.
func (c *edgeConn) scan(p []byte) {
	for i := 0; c.scanning; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			c.lineLen += len(p) - i
			break
		}
		k := i + j
		prev := c.last
		if k > 0 {
			prev = p[k-1]
		}
		line := c.lineLen + j // with its CR
		c.lineLen = 0
		i = k + 1
		switch {
		case prev != '\r':
			c.bareLF, c.scanning = true, false
		case line > 1:
			c.sawLine = true
		case c.sawLine: // CRLF alone: the end of the head
			c.scanning = false
			c.headEnd = c.read + int64(i)
		}
	}
	c.last = p[len(p)-1]
}

// nextHead is called once a request's body of n bytes has been read whole:
// what follows is the next head, to be scanned. When the client has
// already sent more (pipelined requests read along with this one), those
// bytes went by unscanned, and the connection is left unscanned (fasthttp
// still needs CRLFCRLF, and the handler still checks raw headers).
func (c *edgeConn) nextHead(n int64) {
	if c.scanning || c.bareLF || c.read != c.headEnd+n {
		return
	}
	c.scanning, c.sawLine, c.lineLen, c.last = true, false, 0, 0
}

func (c *edgeConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.s.conns.Add(-1)
		if c.tooLarge.Load() { // its 413 is out; the body it refused may still come
			linger(c.Conn)
		}
	}
	return c.Conn.Close()
}

var (
	strHTTP11 = []byte("HTTP/1.1")
	strHTTP10 = []byte("HTTP/1.0")
)

// strict reports whether the request's head is one RFC 9112 allows
// without leniency: HTTP/1.0 or 1.1, every line ended by CRLF, no obs-fold
// (a line continuing the previous header; fasthttp joins it, and another
// hop may not, which is how requests get smuggled).
func strict(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Request.Header
	if p := h.Protocol(); !bytes.Equal(p, strHTTP11) && !bytes.Equal(p, strHTTP10) {
		return false
	}
	if c, ok := ctx.Conn().(*edgeConn); ok && c.bareLF {
		return false
	}
	raw := h.RawHeaders() // the header lines as they came, folds and all
	for i := 0; ; {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			return true
		}
		k := i + j
		if k == 0 || raw[k-1] != '\r' {
			return false
		}
		if k+1 < len(raw) && (raw[k+1] == ' ' || raw[k+1] == '\t') {
			return false
		}
		i = k + 1
	}
}

// Why a path is not routed.
const (
	pathOK          = iota
	pathNotRoutable // not an origin-form path ("*"): no route
	pathBad         // 400
)

// decodePath appends the routing form of raw, the path as the client sent
// it (undecoded), to dst: '/'-separated segments, each percent-decoded on
// its own, so an encoded slash ("%2F") is never a separator. It refuses
// (pathBad) what could route differently here than at another hop or at
// the service, which splits the decoded path on '/' again: a segment
// decoding to one with '/', to "." or "..", an empty segment before the
// last ("//"), a control byte, or a malformed escape. Dot segments are
// refused rather than removed (RFC 3986 5.2.4): a client sending them is
// broken or probing, and refusing keeps one meaning per path.
func decodePath(dst, raw []byte) ([]byte, int) {
	if len(raw) == 0 || raw[0] != '/' {
		return dst, pathNotRoutable
	}
	dst = append(dst, '/')
	for rest := raw[1:]; ; {
		seg, tail, more := bytes.Cut(rest, slash)
		if len(seg) == 0 && more {
			return dst, pathBad
		}
		start := len(dst)
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if c == '%' {
				if i+2 >= len(seg) {
					return dst, pathBad
				}
				hi, lo := unhex(seg[i+1]), unhex(seg[i+2])
				if hi < 0 || lo < 0 {
					return dst, pathBad
				}
				c = byte(hi<<4 | lo)
				i += 2
				if c == '/' {
					return dst, pathBad
				}
			}
			if c < 0x20 || c == 0x7f {
				return dst, pathBad
			}
			dst = append(dst, c)
		}
		if d := dst[start:]; len(d) > 0 && len(d) <= 2 && d[0] == '.' && (len(d) == 1 || d[1] == '.') {
			return dst, pathBad
		}
		if !more {
			return dst, pathOK
		}
		dst = append(dst, '/')
		rest = tail
	}
}

var slash = []byte("/")

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// chunkStep is how much of a chunked body is reserved from the budget at a
// time, as it arrives.
const chunkStep = 16 << 10

// readBody reads the request's body into x.body, within -max-body and the
// process-wide -body-budget: a declared length is reserved before a byte
// past what fasthttp prefetched is read (at most 8 KiB of it), a chunked
// body as it arrives. It returns 0, or the status refusing the body.
func (s *Server) readBody(ctx *fasthttp.RequestCtx, x *exchange) int {
	stream := ctx.RequestBodyStream()
	if stream == nil { // no body, or one set directly (the handler driven without a connection)
		x.req.Body = ctx.Request.Body()
		x.bodyDone = true
		return 0
	}
	cl := ctx.Request.Header.ContentLength()
	if cl >= 0 {
		if s.tooLarge(cl) {
			s.counts.bodyTooLarge.Add(1)
			return fasthttp.StatusRequestEntityTooLarge
		}
		if !s.reserve(x, cl) {
			s.counts.bodyBudget.Add(1)
			return fasthttp.StatusServiceUnavailable
		}
		if cap(x.body) < cl {
			x.body = make([]byte, cl)
		}
		x.body = x.body[:cl]
		if _, err := io.ReadFull(stream, x.body); err != nil {
			return s.bodyReadError(err)
		}
		x.req.Body, x.bodyDone = x.body, true
		return 0
	}
	// Chunked: the wire length is unknown here, so the next head on this
	// connection goes unscanned (see edgeConn.nextHead).
	x.body = x.body[:0]
	for {
		if len(x.body) == x.reserved {
			if len(x.body) > s.cfg.MaxBodyBytes {
				s.counts.bodyTooLarge.Add(1)
				return fasthttp.StatusRequestEntityTooLarge
			}
			if !s.reserve(x, chunkStep) {
				s.counts.bodyBudget.Add(1)
				return fasthttp.StatusServiceUnavailable
			}
			if cap(x.body) < x.reserved {
				b := make([]byte, len(x.body), x.reserved)
				copy(b, x.body)
				x.body = b
			}
		}
		n, err := stream.Read(x.body[len(x.body):x.reserved])
		x.body = x.body[:len(x.body)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return s.bodyReadError(err)
		}
	}
	if len(x.body) > s.cfg.MaxBodyBytes {
		s.counts.bodyTooLarge.Add(1)
		return fasthttp.StatusRequestEntityTooLarge
	}
	x.req.Body, x.bodyDone = x.body, true
	return 0
}

func (s *Server) bodyReadError(err error) int {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.counts.timeouts.Add(1)
		return fasthttp.StatusRequestTimeout
	}
	s.counts.malformed.Add(1)
	return fasthttp.StatusBadRequest
}

// reserve takes n bytes from the body budget for x, or reports that they
// are not there.
func (s *Server) reserve(x *exchange, n int) bool {
	if s.bodyBytes.Add(int64(n)) > int64(s.cfg.BodyBudget) {
		s.bodyBytes.Add(-int64(n))
		return false
	}
	x.reserved += n
	return true
}

// headerReceived runs once a request's head is in, before fasthttp reads
// the first 8 KiB of its body for the handler. A declared length that will
// be refused (over -max-body or the whole budget) is refused now, as nginx
// does, not after a wait for body bytes the client may hold back: a read
// deadline already due ends that wait at once (edgeConn notes it), and the
// refusal is a 413 either way (httpError's, or the handler's when the bytes
// were there).
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if s.tooLarge(h.ContentLength()) {
		return fasthttp.RequestConfig{ReadTimeout: time.Nanosecond}
	}
	return fasthttp.RequestConfig{}
}

// tooLarge reports whether a declared body length is refused whatever
// else happens: over -max-body, or over the whole body budget.
func (s *Server) tooLarge(contentLength int) bool {
	return contentLength > s.cfg.MaxBodyBytes || contentLength > s.cfg.BodyBudget
}

// expect decides an "Expect: 100-continue" request from its head before
// the 100 is sent (fasthttp sends it when this returns 100): whatever the
// handler would refuse without the body is refused now, and the client
// never sends the body. Admission and the budget are looked at, not taken:
// the handler takes them, and may still refuse.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	x := exchangePool.Get().(*exchange)
	defer x.release()
	status, msg := 0, ""
	cl := ctx.Request.Header.ContentLength()
	var how int
	x.path, how = decodePath(x.path[:0], ctx.URI().PathOriginal())
	switch {
	case !strict(ctx):
		s.counts.malformed.Add(1)
		status, msg = fasthttp.StatusBadRequest, "malformed request"
	case s.tooLarge(cl):
		s.counts.bodyTooLarge.Add(1)
		status, msg = fasthttp.StatusRequestEntityTooLarge, "request body too large"
	case how == pathBad:
		s.counts.badPath.Add(1)
		status, msg = fasthttp.StatusBadRequest, "bad path"
	case how == pathNotRoutable || s.noEntry(ctx, x):
		// 404, 405, or OPTIONS answered at the front, as the handler would.
		x.reqID = s.requestID(x.reqID[:0], ctx.Request.Header.Peek("X-Request-Id"))
		ctx.Response.Header.SetBytesV("X-Request-Id", x.reqID)
		s.noRoute(ctx, x, how)
		return ctx.Response.StatusCode()
	case s.limiter.Full():
		s.counts.overloaded.Add(1)
		status, msg = fasthttp.StatusServiceUnavailable, "overloaded"
	case cl > 0 && s.bodyBytes.Load()+int64(cl) > int64(s.cfg.BodyBudget):
		s.counts.bodyBudget.Add(1)
		status, msg = fasthttp.StatusServiceUnavailable, "request bodies over the memory budget; retry"
	default:
		return fasthttp.StatusContinue
	}
	x.reqID = s.requestID(x.reqID[:0], ctx.Request.Header.Peek("X-Request-Id"))
	s.reply(ctx, x.reqID, status, msg)
	return status
}

// noEntry reports whether no route takes the request.
func (s *Server) noEntry(ctx *fasthttp.RequestCtx, x *exchange) bool {
	e, _ := s.router.route(ctx.Method(), x.path)
	return e == nil
}
