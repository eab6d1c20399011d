// Package transport is the bus's mangos transport for "tcp://" and
// "tls+tcp://". Importing it registers it with mangos for those schemes,
// in place of mangos' own, as mangos' transports are registered:
//
//	import _ "github.com/terminator-gw/terminator/nanobus/transport"
//
// It speaks the standard SP-over-TCP framing (an 8-byte SP header exchange,
// then each message as a 64-bit big-endian length and its bytes), so any SP
// peer interoperates. Why not mangos' stock tcp transports:
//   - mangos v3.4.2's listener writes a pipe's state during the handshake
//     without the lock its Close reads it under: a data race whenever a node
//     closes while a peer is connecting, which fails `go test -race`.
//   - the stock pipe allocates on every message and makes a syscall per
//     message each way; this one reads through a buffer and batches writes,
//     so a burst costs one syscall each way, and allocates nothing.
//   - it counts what it has written (OptionWritten), so a draining node can
//     wait until its last replies have left instead of cutting them off.
//   - it bounds what a peer can make a node hold: a frame deadline once a
//     frame's length has arrived (OptionFrameTimeout), a probation for
//     accepted connections that never send (OptionIdleTimeout), a cap on
//     accepted connections (OptionMaxConns), at which a connection silent
//     past the idle timeout makes room for a newcomer, and a budget for
//     large frames being read across them (OptionMaxBuffered), from which
//     a frame takes its declared length before it is read. What a limit
//     closes, and a connection closed for what its peer sent (a frame over
//     the maximum, a wrong SP header, a failed TLS handshake), is reported
//     through OptionOnRefuse with its cause, which nanobus counts and logs.
//
// A dialer sends one empty frame right after the handshake, a hello that
// ends the probation of a connection that has nothing to say yet (a caller
// with no calls in flight); receivers drop empty frames. A hello is not a
// message: a connection that carries nothing else is silent, and at the
// cap gives its slot to a newcomer.
package transport
