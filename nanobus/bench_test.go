package nanobus_test

import (
	"context"
	"testing"

	"github.com/terminator-gw/terminator/nanobus"
)

func benchPair(b *testing.B) *nanobus.Node {
	svc := newNode(b, nanobus.Config{Service: "echo"})
	must(b, svc.Handle("echo", echo))
	caller := newNode(b, nanobus.Config{})
	connect(b, caller, svc)
	return caller
}

// One call at a time: the latency of a round trip on loopback.
func BenchmarkRoundTrip(b *testing.B) {
	caller := benchPair(b)
	body := make([]byte, 128)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := caller.Call(ctx, "echo", "echo", body)
		if err != nil {
			b.Fatal(err)
		}
		resp.Release()
	}
}

// Many calls outstanding at once (64 per core): pipelined throughput.
func BenchmarkRoundTripParallel(b *testing.B) {
	caller := benchPair(b)
	body := make([]byte, 128)
	b.ReportAllocs()
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			resp, err := caller.Call(ctx, "echo", "echo", body)
			if err != nil {
				b.Fatal(err)
			}
			resp.Release()
		}
	})
}
