package peers

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
)

// Hello is the fasthttp hello world: the ceiling of an HTTP server in Go.
func Hello(rc *fasthttp.RequestCtx) {
	rc.SetContentType("text/plain")
	rc.SetBodyString("hello\n")
}

// NewServer is a fasthttp server for h as the peers run it: no Server
// header (the terminator sends none either).
func NewServer(h fasthttp.RequestHandler) *fasthttp.Server {
	return &fasthttp.Server{Handler: h, NoDefaultServerHeader: true}
}

// ReverseProxy is net/http/httputil's reverse proxy in front of upstream
// (host:port), with a keep-alive pool big enough for c=1024.
func ReverseProxy(upstream string) (*http.Server, error) {
	u, err := url.Parse("http://" + upstream)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", upstream, err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute}
	// Errors at shutdown (cancelled requests) are expected noise.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	return &http.Server{Handler: rp, ReadHeaderTimeout: 5 * time.Second}, nil
}
