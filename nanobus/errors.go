package nanobus

import (
	"errors"
	"fmt"

	"github.com/terminator-gw/terminator/wire"
)

// Errors a caller branches on. Each maps to one row of the terminator's
// HTTP status table (see DESIGN.md).
var (
	ErrNoPeer      = errors.New("nanobus: no live instance of the service")   // 503
	ErrBusy        = errors.New("nanobus: in-flight bound reached")           // 503 with Retry-After
	ErrDeadline    = errors.New("nanobus: deadline passed before the reply")  // 504
	ErrPeerLost    = errors.New("nanobus: connection to the peer lost")       // 502
	ErrNoRoute     = errors.New("nanobus: no handler for the route")          // 404
	ErrUnavailable = errors.New("nanobus: service shutting down")             // 503
	ErrMalformed   = errors.New("nanobus: peer could not decode the request") // 502
	ErrClosed      = errors.New("nanobus: node closed")
)

// codeErrors maps an error frame's code to the caller's error.
var codeErrors = map[wire.Code]error{
	wire.CodeBusy:        ErrBusy,
	wire.CodeExpired:     ErrDeadline,
	wire.CodeNoRoute:     ErrNoRoute,
	wire.CodeMalformed:   ErrMalformed,
	wire.CodeUnavailable: ErrUnavailable,
}

// StatusError is a handler's answer that is not a success: the node sends
// it as a reply with Status and Message as the body.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Message) }

// Errorf returns a *StatusError, for handlers: return nanobus.Errorf(404, "no profile %q", id).
func Errorf(status int, format string, args ...any) error {
	return &StatusError{Status: status, Message: fmt.Sprintf(format, args...)}
}
