// Package limit is an adaptive concurrency limit driven by measured
// latency (a gradient limit, in the manner of Netflix's
// concurrency-limits): a Limiter admits work while fewer than its limit
// are in progress, and moves the limit toward the concurrency at which
// latency starts to grow. A nanobus node bounds the handlers it runs with
// one (nanobus.Config.Limiter); the terminator bounds the requests it
// waits on with another.
//
// PerSecond is a plain rate cap (at most Max events a second, the rest
// counted), lock-free: the error log of a node and the front's access log
// are sampled with it.
package limit
