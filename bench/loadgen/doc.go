// Package loadgen is the project's HTTP load generator: a small, bounded,
// loopback-only cousin of wrk (closed loop) and wrk2 (open loop).
//
// A run is described by Options and executed by Run:
//
//	res, err := loadgen.Run(ctx, loadgen.Options{
//		URLs:        []string{"http://127.0.0.1:8080/echo"},
//		Connections: 64,
//		Duration:    5 * time.Second,
//		Warmup:      time.Second,
//		Rate:        50000, // 0: closed loop
//	})
//
// Closed loop (Rate == 0): each of the N connections sends its next request
// as soon as the previous answer arrives; latency is the request's round trip.
// This measures throughput, but it under-reports latency under a stall because
// a stalled connection stops sending ("coordinated omission").
//
// Open loop (Rate > 0): requests follow a fixed schedule, Rate per second,
// and latency is measured from the *intended* send time, so every request
// scheduled during a stall is charged the time it waited. One dispatcher
// releases each request at its intended time to the worker that went idle
// last (one connection each: only as many are used as the load needs, and
// they stay warm); when a request falls due and every connection is waiting
// for an answer, the generator opens another (up to Options.MaxConnections,
// at most 512 being opened at once, from 16 loopback source addresses), as
// the internet would: a slow answer does not hold back the next request.
// Result.Late counts the requests it still sent more than LateAfter (1 ms)
// after their intended time (the bound reached, or the generator's own CPU
// or timer slack: Go's timers wake up to ~1 ms late on an idle process),
// Result.SendLag holds that delay for every request, Result.Unsent the
// requests of the window it never sent, and Result.CPU its own CPU time
// over the window. With MaxConnections at most Connections, the set is
// fixed and a due request waits in the generator for a free connection
// (charged from its intended time all the same).
//
// A request belongs to the measurement when its (intended) send time falls
// after the warm-up and before the end of the run; latencies go into an
// HdrHistogram (1µs..60s, 3 significant digits). Every run is bounded by
// Warmup + Duration plus one request timeout. Targets must be loopback unless
// Options.AllowRemote is set: this tool exists to measure a box, not to load
// somebody else's.
package loadgen
