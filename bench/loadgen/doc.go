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
// Open loop (Rate > 0): requests follow a fixed schedule, Rate per second
// spread over the connections, and latency is measured from the *intended*
// send time, so every request scheduled during a stall is charged the time it
// waited. (When a worker is early it sleeps, and the clock then starts at the
// actual send, so the runtime's timer slack is not charged to the target.)
// Requests whose intended time fell in the window but that never got
// sent before the end are counted in Result.Unsent.
//
// A request belongs to the measurement when its (intended) send time falls
// after the warm-up and before the end of the run; latencies go into an
// HdrHistogram (1µs..60s, 3 significant digits). Every run is bounded by
// Warmup + Duration plus one request timeout. Targets must be loopback unless
// Options.AllowRemote is set: this tool exists to measure a box, not to load
// somebody else's.
package loadgen
