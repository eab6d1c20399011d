package nanobus

import (
	"context"
	"errors"
	"fmt"

	"github.com/terminator-gw/terminator/wire"
)

// Errors a caller branches on. StatusOf gives the HTTP status each one means.
var (
	ErrNoPeer      = errors.New("nanobus: no live instance of the service")
	ErrBusy        = errors.New("nanobus: in-flight bound reached")
	ErrDeadline    = errors.New("nanobus: deadline passed before the reply")
	ErrPeerLost    = errors.New("nanobus: connection to the peer lost")
	ErrNoRoute     = errors.New("nanobus: no handler for the route")
	ErrUnavailable = errors.New("nanobus: service shutting down")
	ErrMalformed   = errors.New("nanobus: peer could not decode the request")
	ErrClosed      = errors.New("nanobus: node closed")
)

// codeErrors maps an error frame's code to the caller's error.
var codeErrors = map[wire.Code]error{
	wire.CodeBusy:        ErrBusy,
	wire.CodeExpired:     ErrDeadline,
	wire.CodeNoRoute:     ErrNoRoute,
	wire.CodeMalformed:   ErrMalformed,
	wire.CodeUnavailable: ErrUnavailable,
	// A kind the peer does not know: this node sent it what its protocol
	// lacks. To the caller it is the peer not understanding the request.
	wire.CodeUnknownKind: ErrMalformed,
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

// Status is what an error means to an HTTP client.
type Status struct {
	Code       int    // HTTP status
	Message    string // the response body
	RetryAfter bool   // refused before any work: the client may come back (Retry-After)
}

// statusTable is the one mapping from errors to HTTP statuses: the
// terminator answers bus errors with it, and a node answers with it for
// whatever its handler returns. The first row whose error matches wins.
var statusTable = []struct {
	err error
	Status
}{
	{ErrNoRoute, Status{404, "no handler for the route", false}},
	{ErrNoPeer, Status{503, "no live instance of the service", true}},
	{ErrBusy, Status{503, "busy", true}},
	{ErrUnavailable, Status{503, "service shutting down", true}},
	{ErrClosed, Status{503, "service shutting down", true}},
	{ErrDeadline, Status{504, "deadline passed before the reply", false}},
	{context.DeadlineExceeded, Status{504, "deadline passed before the reply", false}},
	{context.Canceled, Status{503, "request cancelled", true}},
	{ErrPeerLost, Status{502, "connection to the service lost", false}},
	{ErrMalformed, Status{502, "the service could not decode the request", false}},
	// The request does not fit the bus's limits; with the body bounded by
	// the front far below a frame, that is its headers.
	{wire.ErrTooLarge, Status{431, "request headers over the bus's limits", false}},
	{wire.ErrField, Status{431, "request headers over the bus's limits", false}},
}

// StatusOf maps err to what an HTTP client is told: a *StatusError (see
// Errorf) is answered as it says, a bus error (matched with errors.Is) by
// the table below, and anything else is a 500 (a node logs a handler's).
//
//	error                                          status
//	ErrNoRoute                                     404
//	ErrNoPeer, ErrBusy, ErrUnavailable, ErrClosed  503 with Retry-After
//	context.Canceled                               503 with Retry-After
//	ErrDeadline, context.DeadlineExceeded          504
//	ErrPeerLost, ErrMalformed                      502
//	wire.ErrTooLarge, wire.ErrField                431
//	any other                                      500
func StatusOf(err error) Status {
	if err == nil {
		return Status{Code: 200}
	}
	var se *StatusError
	if errors.As(err, &se) {
		return Status{Code: se.Status, Message: se.Message}
	}
	for _, row := range statusTable {
		if errors.Is(err, row.err) {
			return row.Status
		}
	}
	return Status{Code: 500, Message: "internal error"}
}
