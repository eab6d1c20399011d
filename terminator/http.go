package terminator

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/terminator-gw/terminator/nanobus"
)

// What the front answers by HTTP's own rules, before any bus work: HEAD
// from GET routes, 405 with Allow, CORS preflights, and its own errors as
// text or as application/problem+json (RFC 9457). See docs/status-codes.md.

var (
	strGET     = []byte("GET")
	strHEAD    = []byte("HEAD")
	strOPTIONS = []byte("OPTIONS")

	ctText    = []byte("text/plain; charset=utf-8")
	ctProblem = []byte("application/problem+json")

	hdrOrigin     = []byte("Origin")
	hdrVary       = []byte("Vary")
	hdrAllow      = []byte("Allow")
	hdrACRM       = []byte("Access-Control-Request-Method")
	hdrACAO       = []byte("Access-Control-Allow-Origin")
	hdrACAM       = []byte("Access-Control-Allow-Methods")
	hdrACAH       = []byte("Access-Control-Allow-Headers")
	hdrACMA       = []byte("Access-Control-Max-Age")
	hdrACAC       = []byte("Access-Control-Allow-Credentials")
	hdrACEH       = []byte("Access-Control-Expose-Headers")
	strOriginV    = []byte("Origin")
	strPreflightV = []byte("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	strStar       = []byte("*")
	strTrue       = []byte("true")
	// The front's own headers a page's script may read.
	strExposed = []byte("X-Request-Id, Server-Timing, Retry-After")
)

// route finds the entry for method and path: HEAD is served by the GET
// route when the service declared no HEAD route of its own.
func (r *Router) route(method, path []byte) (e *entry, head bool) {
	if e = r.lookup(method, path); e != nil {
		return e, false
	}
	if bytes.Equal(method, strHEAD) {
		if e = r.lookup(strGET, path); e != nil {
			return e, true
		}
	}
	return nil, false
}

// allowed appends to dst the methods path is routed for, as an Allow
// header value ("GET, HEAD, POST"): HEAD wherever GET is, OPTIONS wherever
// a CORS policy applies. Empty: no route has the path.
func (r *Router) allowed(dst, path []byte) (allow []byte, cors bool) {
	t := r.table.Load()
	if len(path) == 0 || path[0] != '/' {
		return dst, false
	}
	headRouted := false
	if h := t.roots["HEAD"]; h != nil {
		headRouted = h.match(path[1:]) != nil
	}
	var options bool
	for _, m := range t.methods {
		e := t.roots[m].match(path[1:])
		if e == nil {
			continue
		}
		cors = cors || e.cors != nil
		if len(dst) > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, m...)
		switch m {
		case "GET":
			if !headRouted { // served from GET, listed beside it
				dst = append(dst, ", HEAD"...)
			}
		case "OPTIONS":
			options = true
		}
	}
	if cors && !options {
		dst = append(dst, ", OPTIONS"...)
	}
	return dst, cors
}

// corsPolicy is a CORS policy ready for the hot path: its header values
// made once.
type corsPolicy struct {
	anyOrigin   bool
	origins     [][]byte
	methods     []byte // Access-Control-Allow-Methods; nil: the path's Allow
	headers     []byte
	maxAge      []byte
	credentials bool
}

// checkCORS refuses a policy browsers would misread or that gives away
// more than it seems: an origin that is not "*" or scheme://host[:port],
// a method that is not an upper-case token, a header that is not a token,
// and credentials for any origin ("*" with credentials would let every
// site call as its visitors).
func checkCORS(c *nanobus.CORS) error {
	for _, o := range c.Origins {
		if o == "*" {
			if c.Credentials {
				return errors.New("CORS: credentials for any origin (*): list the origins that may call with credentials")
			}
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.TrimSuffix(u.Path, "/") != "" ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("CORS origin %q: want * or scheme://host[:port], e.g. https://app.example", o)
		}
	}
	for _, m := range c.Methods {
		if m == "" || strings.TrimFunc(m, func(r rune) bool { return r >= 'A' && r <= 'Z' }) != "" {
			return fmt.Errorf("CORS method %q: want an upper-case method, e.g. GET", m)
		}
	}
	for _, h := range c.Headers {
		if h == "" || strings.IndexFunc(h, func(r rune) bool { return !tokenChar(r) }) >= 0 {
			return fmt.Errorf("CORS header %q: want a header name, e.g. Content-Type", h)
		}
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("CORS max age %v: want 0 or more", c.MaxAge)
	}
	return nil
}

// tokenChar reports a character of an HTTP token (RFC 9110 5.6.2).
func tokenChar(r rune) bool {
	return r < 0x7f && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r))
}

// newCORS compiles c; nil when c allows no origin.
func newCORS(c *nanobus.CORS) *corsPolicy {
	if c == nil || len(c.Origins) == 0 {
		return nil
	}
	p := &corsPolicy{credentials: c.Credentials}
	for _, o := range c.Origins {
		if o == "*" {
			p.anyOrigin = true
			continue
		}
		p.origins = append(p.origins, []byte(strings.TrimSuffix(o, "/")))
	}
	if len(c.Methods) > 0 {
		p.methods = []byte(strings.Join(c.Methods, ", "))
	}
	if len(c.Headers) > 0 {
		p.headers = []byte(strings.Join(c.Headers, ", "))
	}
	if c.MaxAge > 0 {
		p.maxAge = []byte(strconv.FormatInt(int64(c.MaxAge/time.Second), 10))
	}
	return p
}

func (p *corsPolicy) allows(origin []byte) bool {
	if len(origin) == 0 {
		return false
	}
	if p.anyOrigin {
		return true
	}
	for _, o := range p.origins {
		if bytes.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// allowOrigin sets the headers of an answer to an allowed origin: the
// origin itself (or "*" when any origin may call, without credentials).
func (p *corsPolicy) allowOrigin(h *fasthttp.ResponseHeader, origin []byte) {
	if p.anyOrigin && !p.credentials {
		h.SetBytesKV(hdrACAO, strStar)
	} else {
		h.SetBytesKV(hdrACAO, origin)
	}
	if p.credentials {
		h.SetBytesKV(hdrACAC, strTrue)
	}
}

// cors adds to an actual response the CORS headers its route's policy
// gives the request's Origin: none to a disallowed origin (the browser
// then keeps the answer from the page), and Vary: Origin either way, so
// that caches keep answers to different origins apart.
func cors(ctx *fasthttp.RequestCtx, p *corsPolicy) {
	origin := ctx.Request.Header.PeekBytes(hdrOrigin)
	if len(origin) == 0 {
		return
	}
	h := &ctx.Response.Header
	h.AddBytesKV(hdrVary, strOriginV)
	if p.allows(origin) {
		p.allowOrigin(h, origin)
		h.SetBytesKV(hdrACEH, strExposed)
	}
}

// preflight answers an OPTIONS request on a routed path: 204 with Allow,
// and for a CORS preflight (Origin and Access-Control-Request-Method) whose
// origin and method the policy of the route asked for allows, what the
// browser may send. No service hears of it.
func (s *Server) preflight(ctx *fasthttp.RequestCtx, x *exchange, allow []byte) {
	h := &ctx.Response.Header
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	h.SetBytesKV(hdrAllow, allow)
	origin := ctx.Request.Header.PeekBytes(hdrOrigin)
	want := ctx.Request.Header.PeekBytes(hdrACRM)
	if len(origin) == 0 || len(want) == 0 {
		return
	}
	h.AddBytesKV(hdrVary, strPreflightV)
	e, _ := s.router.route(want, x.path)
	if e == nil || e.cors == nil || !e.cors.allows(origin) {
		return
	}
	p := e.cors
	p.allowOrigin(h, origin)
	if p.methods != nil {
		h.SetBytesKV(hdrACAM, p.methods)
	} else {
		h.SetBytesKV(hdrACAM, allow)
	}
	if p.headers != nil {
		h.SetBytesKV(hdrACAH, p.headers)
	}
	if p.maxAge != nil {
		h.SetBytesKV(hdrACMA, p.maxAge)
	}
}

// acceptsJSON reports whether an Accept header names JSON:
// application/json, application/problem+json or any other +json type.
func acceptsJSON(accept []byte) bool {
	if !bytes.Contains(accept, strJSON) { // most clients: */*, text/html, ...
		return false
	}
	for len(accept) > 0 {
		var item []byte
		item, accept, _ = bytes.Cut(accept, comma)
		mt, params, _ := bytes.Cut(item, semicolon)
		mt = bytes.TrimSpace(mt)
		if !bytes.EqualFold(mt, mtJSON) && !(len(mt) > 5 && bytes.EqualFold(mt[len(mt)-5:], plusJSON)) {
			continue
		}
		if q := bytes.TrimSpace(params); bytes.HasPrefix(q, qZero) && len(bytes.Trim(q[3:], "0.")) == 0 {
			continue // q=0: not acceptable
		}
		return true
	}
	return false
}

var (
	comma     = []byte(",")
	semicolon = []byte(";")
	mtJSON    = []byte("application/json")
	plusJSON  = []byte("+json")
	strJSON   = []byte("json")
	qZero     = []byte("q=0")
)

// maxDetail bounds what of a request (its method and path) an error
// body repeats.
const maxDetail = 200

// replyOf answers with the front's own error: as application/problem+json
// (RFC 9457: type, title, status, detail) when the client accepts JSON,
// else as plain text; detail is msg followed by subject (cut to
// maxDetail). The request ID goes on every one, Retry-After on every 503
// (each is a refusal the client may retry). It allocates nothing.
func (s *Server) replyOf(ctx *fasthttp.RequestCtx, id []byte, status int, msg string, subject []byte) {
	resp := &ctx.Response
	resp.Reset() // headers go after it
	resp.SetStatusCode(status)
	if len(subject) > maxDetail {
		subject = subject[:maxDetail]
	}
	if acceptsJSON(ctx.Request.Header.Peek("Accept")) {
		resp.Header.SetContentTypeBytes(ctProblem)
		var buf [512]byte
		b := append(buf[:0], `{"type":"about:blank","title":`...)
		b = appendJSONString(b, fasthttp.StatusMessage(status), nil)
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(status), 10)
		b = append(b, `,"detail":`...)
		b = appendJSONString(b, msg, subject)
		b = append(b, "}\n"...)
		resp.AppendBody(b)
	} else {
		resp.Header.SetContentTypeBytes(ctText)
		resp.AppendBodyString(msg)
		resp.AppendBody(subject)
	}
	resp.Header.SetBytesV("X-Request-Id", id)
	if status == fasthttp.StatusServiceUnavailable {
		resp.Header.SetBytesV("Retry-After", s.retryAfter)
	}
}

// reply is replyOf without a subject.
func (s *Server) reply(ctx *fasthttp.RequestCtx, id []byte, status int, msg string) {
	s.replyOf(ctx, id, status, msg, nil)
}

// appendJSONString appends s and then b as one JSON string.
func appendJSONString(dst []byte, s string, b []byte) []byte {
	dst = append(dst, '"')
	dst = appendJSONBody(dst, s)
	dst = appendJSONBody(dst, b)
	return append(dst, '"')
}

// appendJSONBody appends s escaped for a JSON string: runs of plain bytes
// at once, the others escaped (also <, > and &, as encoding/json does).
func appendJSONBody[T string | []byte](dst []byte, s T) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f && c != '<' && c != '>' && c != '&' {
			continue
		}
		dst = append(dst, s[start:i]...)
		if c == '"' || c == '\\' {
			dst = append(dst, '\\', c)
		} else {
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	return append(dst, s[start:]...)
}
