// Package histogram counts latencies the way nanobus's numbers need them:
// a Recorder takes samples on the hot path (one atomic add, no lock) into
// log-linear buckets of microseconds, 8 per power of two, so quantiles are
// within 12.5%; a Histogram is a snapshot of its non-empty buckets, which
// adds up across nodes (Add) and differences between two readings (Sub),
// and travels as JSON. Cumulative and Sum give what a Prometheus histogram
// wants: counts under bounds (exact at a bucket's Start) and an estimated
// total.
package histogram
