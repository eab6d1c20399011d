// Package limit is an adaptive concurrency limit driven by measured
// latency (a gradient limit, in the manner of Netflix's
// concurrency-limits): a Limiter admits work while fewer than its limit
// are in progress, and moves the limit toward the concurrency at which
// latency starts to grow. A nanobus node bounds the handlers it runs with
// one (nanobus.Config.Limiter); the terminator bounds the requests it
// waits on with another.
package limit
