// Package echo is a service that answers with what it got: the bus's
// smallest real workload, for benchmarks and tests. A query can make it
// slow or fail: ?sleep=50ms waits (until the request's deadline at most),
// ?status=503 answers that status.
//
// A feature flag can make one version fail, to try a rollout's automatic
// rollback: while the flag echo-fail-<version> is on for a request (e.g.
// `terminator flag set echo-fail-v2 on`), the instances of that version
// answer it 500 "failing on purpose", and the others answer as usual.
package echo

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

// Service is the name echo registers under.
const Service = "echo"

// Register adds echo's handlers to n: GET and POST /echo.
func Register(n *nanobus.Node) error {
	fail := FailFlag(n.Version())
	handle := func(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
		if req.Flag(fail) {
			return nanobus.Reply{Status: 500, Body: failing}, nil
		}
		return handle(ctx, req)
	}
	return errors.Join(n.Handle("GET /echo", handle), n.Handle("POST /echo", handle))
}

// FailFlag is the feature flag that makes echo's instances of version fail.
func FailFlag(version string) string { return "echo-fail-" + version }

var failing = []byte("failing on purpose\n")

func handle(ctx context.Context, req *nanobus.Request) (nanobus.Reply, error) {
	if len(req.Query) > 0 {
		if d, err := time.ParseDuration(queryValue(req.Query, "sleep")); err == nil && d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nanobus.Reply{}, ctx.Err()
			}
		}
		if s, err := strconv.Atoi(queryValue(req.Query, "status")); err == nil && s >= 200 && s <= 599 {
			return nanobus.Reply{Status: s, Body: []byte("status " + strconv.Itoa(s) + "\n")}, nil
		}
	}
	if len(req.Body) == 0 {
		return nanobus.Reply{Body: hello}, nil
	}
	return nanobus.Reply{Body: req.Body}, nil
}

var hello = []byte("hello\n")

// queryValue finds name=value in a raw query without allocating a map.
func queryValue(q []byte, name string) string {
	for len(q) > 0 {
		var pair []byte
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, nil
		}
		if len(pair) > len(name) && string(pair[:len(name)]) == name && pair[len(name)] == '=' {
			return string(pair[len(name)+1:])
		}
	}
	return ""
}
