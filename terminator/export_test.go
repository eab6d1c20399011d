package terminator

// The watcher's counters, for the tests of package terminator_test.

// Parked is the number of requests parked on the bus now.
func Parked(s *Server) int { return s.watch.parkedNow() }

// Polled is the number of client sockets the watcher has polled.
func Polled(s *Server) uint64 { return s.watch.polled.Load() }

// Pipelined is the number of times the watcher found a parked request's
// socket readable with data (a pipelined request) and left it alone.
func Pipelined(s *Server) uint64 { return s.watch.pipelined.Load() }
