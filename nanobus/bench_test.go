package nanobus_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
)

func benchPair(b *testing.B) *nanobus.Node {
	svc := newNode(b, nanobus.Config{Service: "echo"})
	must(b, svc.Handle("echo", echo))
	caller := newNode(b, nanobus.Config{})
	connect(b, caller, svc)
	return caller
}

// reportCPU adds the process's CPU time per op (user and system, both
// nodes, the kernel's loopback work included) to b's results, from now to
// the end of b: on a shared box, time others take from the CPU shows in
// ns/op, not in cpu-ns/op.
func reportCPU(b *testing.B) {
	start := cpuTime()
	b.Cleanup(func() {
		if b.N > 0 {
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		}
	})
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// One call at a time: the latency of a round trip on loopback.
func BenchmarkRoundTrip(b *testing.B) {
	caller := benchPair(b)
	body := make([]byte, 128)
	ctx := context.Background()
	b.ReportAllocs()
	reportCPU(b)
	for b.Loop() {
		resp, err := caller.Call(ctx, "echo", "echo", body)
		if err != nil {
			b.Fatal(err)
		}
		resp.Release()
	}
}

// Many calls outstanding at once (64 per core): pipelined throughput.
func BenchmarkRoundTripParallel(b *testing.B) { benchParallel(b, 64) }

// As many calls outstanding as the page has at 1024 connections.
func BenchmarkRoundTripParallel1024(b *testing.B) { benchParallel(b, 1024) }

func benchParallel(b *testing.B, perCore int) {
	caller := benchPair(b)
	body := make([]byte, 128)
	b.ReportAllocs()
	reportCPU(b)
	b.SetParallelism(perCore)
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
