// Package busopt names the options that nanobus hands the bus's transport
// (nanobus/transport) through mangos' option maps, and the types of their
// values, in one place: both sides import it, so a name cannot drift
// between them. Their meanings are documented on nanobus/transport's
// Option* constants, which are these.
package busopt

import (
	"sync/atomic"

	"go.nanomsg.org/mangos/v3"
)

// Option names, set on dialers and listeners (Send is read from a pipe).
const (
	Written      = "nanobus.written"       // *atomic.Uint64
	FrameTimeout = "nanobus.frame-timeout" // time.Duration
	IdleTimeout  = "nanobus.idle-timeout"  // time.Duration
	PeerTimeout  = "nanobus.peer-timeout"  // time.Duration
	MaxConns     = "nanobus.max-conns"     // int
	MaxBuffered  = "nanobus.max-buffered"  // int
	OnRefuse     = "nanobus.on-refuse"     // OnRefuseFunc
	Deliver      = "nanobus.deliver"       // DeliverFunc
	Send         = "nanobus.send"          // SendFunc
)

// DeliverFunc is the type of Deliver's value: called by each pipe, on its
// reading goroutine, with every message it receives.
type DeliverFunc = func(m *mangos.Message, reply func([]byte) error, share *atomic.Int64) bool

// OnRefuseFunc is the type of OnRefuse's value: called for every
// connection closed by a limit or for what its peer sent, with one of the
// Refused* reasons.
type OnRefuseFunc = func(reason string, err error)

// SendFunc is the type of Send's value: writes one message on the pipe.
type SendFunc = func([]byte) error

// Reasons passed to OnRefuse.
const (
	RefusedConns        = "conns"         // over MaxConns, no silent connection to close instead
	RefusedFrameTimeout = "frame-timeout" // a frame not finished in time
	RefusedIdle         = "idle"          // no frame within IdleTimeout, or silent and closed to make room
	RefusedBuffered     = "buffered"      // a frame over MaxBuffered
	RefusedTooLong      = "too-long"      // a frame length over mangos.OptionMaxRecvSize
	RefusedBadHeader    = "bad-header"    // not an SP header for our peer protocol
	RefusedTLS          = "tls"           // the TLS handshake failed
)
