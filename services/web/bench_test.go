package web_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/services/web"
	"github.com/terminator-gw/terminator/wire"
)

// BenchmarkPage is GET /profiles/{id} without HTTP: a caller node asks web,
// which asks profiles and notifications (real Pebble stores) at once, over
// loopback bus sockets: three round trips per page. Allocations per op are
// the whole chain's.
//
//	go test -run '^$' -bench Page -benchmem ./services/web
func BenchmarkPage(b *testing.B) {
	s := newStack(b, 5*time.Second)
	const profiles = 100
	for i := 1; i <= profiles; i++ {
		if code, body := s.do(b, "PUT", "/profiles/"+strconv.Itoa(i), `{"name":"Ann","age":31,"city":"Lyon","bio":"hiker"}`); code != 201 {
			b.Fatalf("seed: %d %s", code, body)
		}
	}
	caller := node(b, "")
	link(b, caller, s.web)
	paths := make([][]byte, profiles)
	for i := range paths {
		paths[i] = fmt.Appendf(nil, "/profiles/%d", i+1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		var req wire.Request
		for i := 0; pb.Next(); i++ {
			req = wire.Request{Route: []byte("GET /profiles/{id}"), Method: []byte("GET"), Path: paths[i%profiles]}
			resp, err := caller.Do(ctx, web.Service, &req)
			if err != nil || resp.Status != 200 {
				b.Fatalf("page: %v %v", err, resp)
			}
			resp.Release()
		}
	})
}
