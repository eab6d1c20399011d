package peers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// HTTPService is d's fasthttp handler: GET /<route>/<id>, e.g.
// GET /profiles.get/7, answers the stored bytes or the refusal's status.
func HTTPService(d *Domain) fasthttp.RequestHandler {
	prefix := "/" + routeOf[d.role] + "/"
	return func(rc *fasthttp.RequestCtx) {
		id, ok := strings.CutPrefix(string(rc.Path()), prefix)
		if !ok || !rc.IsGet() {
			rc.Error("no route", fasthttp.StatusNotFound)
			return
		}
		body, err := d.Answer(context.Background(), id)
		if err != nil {
			var se *StatusError
			if errors.As(err, &se) {
				rc.Error(se.Message, se.Status)
			} else {
				rc.Error(err.Error(), fasthttp.StatusInternalServerError)
			}
			return
		}
		rc.SetContentType("application/json")
		rc.SetBody(body)
	}
}

// HTTPCaller calls each domain role at its address (host:port) over
// HTTP/1.1 keep-alive connections, at most maxConns per role.
func HTTPCaller(addrs map[string]string, maxConns int) (Caller, error) {
	clients := map[string]*fasthttp.HostClient{}
	for _, role := range DomainRoles {
		addr, ok := addrs[role]
		if !ok {
			return nil, fmt.Errorf("peers: no address for %s", role)
		}
		clients[role] = &fasthttp.HostClient{Addr: addr, MaxConns: maxConns,
			// A page waits for a free connection rather than failing.
			MaxConnWaitTimeout: DefaultTimeout, NoDefaultUserAgentHeader: true}
	}
	return func(ctx context.Context, role, id string) ([]byte, error) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("/" + routeOf[role] + "/" + id)
		req.Header.SetHost(addrs[role])
		timeout := DefaultTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		}
		if err := clients[role].DoTimeout(req, resp, timeout); err != nil {
			if errors.Is(err, fasthttp.ErrTimeout) {
				return nil, context.DeadlineExceeded
			}
			return nil, fmt.Errorf("%s: %w", role, err)
		}
		body := append([]byte(nil), resp.Body()...)
		if s := resp.StatusCode(); s != fasthttp.StatusOK {
			return nil, &StatusError{Status: s, Message: string(body)}
		}
		return body, nil
	}, nil
}
