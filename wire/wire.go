package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the format version this package writes and reads: the first
// byte of every frame. It stays 1: the format grows by new kinds, flags and
// extension entries, which a decoder that does not know them skips, and a
// node tells its peers what it knows by ProtocolVersion.
const Version = 1

// ProtocolVersion is the protocol this package speaks: 1 is requests,
// replies and errors; 2 adds cancel, event, event ack, chunk and end; 3
// adds credit and the stream extension of a request (streams of replies
// with flow control). A node announces it, and sends a kind only to peers
// whose protocol has it (Kind.Protocol).
const ProtocolVersion = 3

// Kind says what a frame is.
type Kind uint8

// Frame kinds.
const (
	KindRequest Kind = 1
	KindReply   Kind = 2
	KindError   Kind = 3
	// Protocol 2.
	KindCancel   Kind = 4 // asker -> instance: stop the call the ID names
	KindEvent    Kind = 5 // sender -> node: an event to take
	KindEventAck Kind = 6 // node -> sender: the event the ID names was taken
	KindChunk    Kind = 7 // instance -> asker: one piece of a stream of replies to a call
	KindEnd      Kind = 8 // instance -> asker: the stream of replies to a call is over
	// Protocol 3.
	KindCredit Kind = 9 // asker -> instance: the stream may send that many more chunks

	maxKind = KindCredit
)

// Protocol is the protocol version that introduced k, 0 for a kind this
// package does not know.
func (k Kind) Protocol() int {
	switch {
	case k >= KindRequest && k <= KindError:
		return 1
	case k > KindError && k <= KindEnd:
		return 2
	case k == KindCredit:
		return 3
	}
	return 0
}

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindReply:
		return "reply"
	case KindError:
		return "error"
	case KindCancel:
		return "cancel"
	case KindEvent:
		return "event"
	case KindEventAck:
		return "event ack"
	case KindChunk:
		return "chunk"
	case KindEnd:
		return "end"
	case KindCredit:
		return "credit"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Limits. Encoders and decoders enforce the same ones.
const (
	MaxFrameSize   = 16 << 20 // whole frame
	MaxHeaders     = 128      // headers per frame
	MaxHeaderBytes = 64 << 10 // encoded header entries per frame
	MaxHeaderName  = 256
	MaxHeaderValue = 16 << 10
	MaxAddr        = 256 // from, client
	MaxName        = 256 // service
	MaxRoute       = 1024
	MaxMethod      = 32
	MaxPath        = 16 << 10
	MaxQuery       = 32 << 10
	MaxTraceParent = 128
	MaxLabels      = 4096 // request labels
	MaxMessage     = 1024 // error frame message
)

// Sentinel errors; every decode and encode error wraps one of them.
var (
	ErrTruncated = errors.New("frame truncated")
	ErrTooLarge  = errors.New("over the limit")
	ErrVersion   = errors.New("unknown version")
	ErrKind      = errors.New("unexpected kind")
	ErrFlags     = errors.New("unknown flags") // encoders only: a decoder ignores flags it does not know
	ErrTrailing  = errors.New("bytes after the last field")
	ErrField     = errors.New("invalid field")
)

func fieldError(field string, err error) error {
	return fmt.Errorf("wire: %s: %w", field, err)
}

const prefixSize = 20

// ID is a correlation ID. Node is the asker's incarnation, drawn at random
// when its process starts, so a late reply from an earlier life of the same
// address never matches a call of the new one; Seq counts the asker's calls.
type ID struct {
	Node uint64
	Seq  uint64
}

// Request flags.
const (
	// FlagGhost marks a copy of a request sent to a ghost version under
	// test: its reply is compared with the live one and never used, and
	// its handler should skip side effects.
	FlagGhost uint16 = 1 << 0
	// FlagTiming asks the handler's node to put its Server-Timing entry
	// (service, version, handler time) in the reply's headers.
	FlagTiming uint16 = 1 << 1
	// flagLabels says a labels field follows traceparent; the encoder sets
	// it exactly when Labels is not empty.
	flagLabels uint16 = 1 << 2
	// FlagNested marks a call a handler makes for the request it serves:
	// work already admitted upstream, which admission puts before new
	// work. (A node that does not know it ignores it.)
	FlagNested uint16 = 1 << 3

	requestFlags = FlagGhost | FlagTiming | flagLabels | FlagNested
)

// Request is a request frame. After DecodeRequest its slices are views into
// the frame and stay valid until the frame's buffer is reused.
type Request struct {
	ID          ID
	Flags       uint16 // FlagGhost, FlagTiming
	Deadline    int64  // Unix nanoseconds; 0 means none
	From        []byte
	Service     []byte
	Route       []byte
	Method      []byte
	Path        []byte
	Query       []byte
	Client      []byte
	TraceParent []byte
	// Labels are what the edge decided about the request and every call
	// made on its behalf: feature flags that are on ("+name") and A/B
	// variants ("experiment=variant"), comma separated.
	Labels []byte
	Header Headers
	Body   []byte
	Ext    Extensions
}

// Reply is a reply frame: what the handler answered.
type Reply struct {
	ID     ID
	Status int
	Header Headers
	Body   []byte
	Ext    Extensions
}

// Code says why the bus refused a request.
type Code uint16

// Error frame codes.
const (
	CodeBusy        Code = 1 // the service is over its in-flight bound
	CodeExpired     Code = 2 // the deadline passed before the handler ran
	CodeNoRoute     Code = 3 // no handler for the route
	CodeMalformed   Code = 4 // the request frame could not be decoded
	CodeUnavailable Code = 5 // the service is shutting down
	CodeUnknownKind Code = 6 // the frame's kind is not one the node knows
)

func (c Code) String() string {
	switch c {
	case CodeBusy:
		return "busy"
	case CodeExpired:
		return "expired"
	case CodeNoRoute:
		return "no route"
	case CodeMalformed:
		return "malformed"
	case CodeUnavailable:
		return "unavailable"
	case CodeUnknownKind:
		return "unknown kind"
	}
	return fmt.Sprintf("code(%d)", uint16(c))
}

// Error is an error frame.
type Error struct {
	ID      ID
	Code    Code
	Message []byte
	Ext     Extensions
}

// KindOf checks a frame's version and returns its kind, one this package
// knows (an unknown one is ErrKind: see PrefixOf to answer it).
func KindOf(frame []byte) (Kind, error) {
	if len(frame) < prefixSize {
		return 0, fieldError("prefix", ErrTruncated)
	}
	if frame[0] != Version {
		return 0, fieldError("version", ErrVersion)
	}
	k := Kind(frame[1])
	if k < KindRequest || k > maxKind {
		return 0, fieldError("kind", ErrKind)
	}
	return k, nil
}

// PrefixOf reads the prefix every frame starts with: its kind, known or not,
// and its ID. A frame whose prefix reads but whose rest does not decode (or
// whose kind is unknown) can so still be answered with an error frame.
func PrefixOf(frame []byte) (Kind, ID, error) {
	if len(frame) < prefixSize {
		return 0, ID{}, fieldError("prefix", ErrTruncated)
	}
	if frame[0] != Version {
		return 0, ID{}, fieldError("version", ErrVersion)
	}
	return Kind(frame[1]), ID{Node: binary.BigEndian.Uint64(frame[4:]), Seq: binary.BigEndian.Uint64(frame[12:])}, nil
}

// Size is the encoded size of r, for sizing a buffer before AppendRequest.
func (r *Request) Size() int {
	return prefixSize + 8 + 8*2 + len(r.From) + len(r.Service) + len(r.Route) +
		len(r.Method) + len(r.Path) + len(r.Query) + len(r.Client) + len(r.TraceParent) +
		r.labelsSize() + r.Header.size() + 4 + len(r.Body) + r.Ext.size()
}

func (r *Request) labelsSize() int {
	if len(r.Labels) == 0 {
		return 0
	}
	return 2 + len(r.Labels)
}

// AppendRequest appends r's encoding to dst.
func AppendRequest(dst []byte, r *Request) ([]byte, error) {
	if err := r.check(); err != nil {
		return dst, err
	}
	flags := r.Flags&^flagLabels | r.Ext.flag()
	if len(r.Labels) > 0 {
		flags |= flagLabels
	}
	dst = appendPrefix(dst, KindRequest, flags, r.ID)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Deadline))
	dst = appendStr16(dst, r.From)
	dst = appendStr16(dst, r.Service)
	dst = appendStr16(dst, r.Route)
	dst = appendStr16(dst, r.Method)
	dst = appendStr16(dst, r.Path)
	dst = appendStr16(dst, r.Query)
	dst = appendStr16(dst, r.Client)
	dst = appendStr16(dst, r.TraceParent)
	if len(r.Labels) > 0 {
		dst = appendStr16(dst, r.Labels)
	}
	dst = r.Header.appendTo(dst)
	dst = appendStr32(dst, r.Body)
	return r.Ext.appendTo(dst), nil
}

func (r *Request) check() error {
	switch {
	case r.Header.err != nil:
		return r.Header.err
	case r.Ext.err != nil:
		return r.Ext.err
	case len(r.From) > MaxAddr:
		return fieldError("from", ErrTooLarge)
	case len(r.Service) > MaxName:
		return fieldError("service", ErrTooLarge)
	case len(r.Route) > MaxRoute:
		return fieldError("route", ErrTooLarge)
	case len(r.Method) > MaxMethod:
		return fieldError("method", ErrTooLarge)
	case len(r.Path) > MaxPath:
		return fieldError("path", ErrTooLarge)
	case len(r.Query) > MaxQuery:
		return fieldError("query", ErrTooLarge)
	case len(r.Client) > MaxAddr:
		return fieldError("client", ErrTooLarge)
	case len(r.TraceParent) > MaxTraceParent:
		return fieldError("traceparent", ErrTooLarge)
	case len(r.Labels) > MaxLabels:
		return fieldError("labels", ErrTooLarge)
	case r.Flags&^requestFlags != 0:
		return fieldError("flags", ErrFlags)
	case r.Size() > MaxFrameSize:
		return fieldError("frame", ErrTooLarge)
	}
	return nil
}

// DecodeRequest decodes frame into r. r's slices point into frame.
func DecodeRequest(frame []byte, r *Request) error {
	d := decoder{b: frame}
	var flags uint16
	r.ID, flags = d.prefix(KindRequest, requestFlags)
	r.Flags = flags &^ (flagLabels | flagExt)
	r.Deadline = int64(d.u64("deadline"))
	r.From = d.str16("from", MaxAddr)
	r.Service = d.str16("service", MaxName)
	r.Route = d.str16("route", MaxRoute)
	r.Method = d.str16("method", MaxMethod)
	r.Path = d.str16("path", MaxPath)
	r.Query = d.str16("query", MaxQuery)
	r.Client = d.str16("client", MaxAddr)
	r.TraceParent = d.str16("traceparent", MaxTraceParent)
	r.Labels = nil
	if flags&flagLabels != 0 {
		// Canonical: the field is there exactly when it is not empty.
		if r.Labels = d.str16("labels", MaxLabels); len(r.Labels) == 0 && d.err == nil {
			d.fail("labels", ErrField)
		}
	}
	d.headers(&r.Header)
	r.Body = d.str32("body")
	return d.finish(flags, &r.Ext)
}

// Size is the encoded size of r.
func (r *Reply) Size() int { return prefixSize + 2 + r.Header.size() + 4 + len(r.Body) + r.Ext.size() }

// AppendReply appends r's encoding to dst.
func AppendReply(dst []byte, r *Reply) ([]byte, error) {
	switch {
	case r.Header.err != nil:
		return dst, r.Header.err
	case r.Ext.err != nil:
		return dst, r.Ext.err
	case r.Status < 100 || r.Status > 999:
		return dst, fieldError("status", ErrField)
	case r.Size() > MaxFrameSize:
		return dst, fieldError("frame", ErrTooLarge)
	}
	dst = appendPrefix(dst, KindReply, r.Ext.flag(), r.ID)
	dst = binary.BigEndian.AppendUint16(dst, uint16(r.Status))
	dst = r.Header.appendTo(dst)
	dst = appendStr32(dst, r.Body)
	return r.Ext.appendTo(dst), nil
}

// DecodeReply decodes frame into r. r's slices point into frame.
func DecodeReply(frame []byte, r *Reply) error {
	d := decoder{b: frame}
	var flags uint16
	r.ID, flags = d.prefix(KindReply, 0)
	r.Status = int(d.u16("status"))
	if d.err == nil && (r.Status < 100 || r.Status > 999) {
		d.fail("status", ErrField)
	}
	d.headers(&r.Header)
	r.Body = d.str32("body")
	return d.finish(flags, &r.Ext)
}

// Size is the encoded size of e.
func (e *Error) Size() int { return prefixSize + 2 + 2 + len(e.Message) + e.Ext.size() }

// AppendError appends e's encoding to dst.
func AppendError(dst []byte, e *Error) ([]byte, error) {
	switch {
	case e.Ext.err != nil:
		return dst, e.Ext.err
	case len(e.Message) > MaxMessage:
		return dst, fieldError("message", ErrTooLarge)
	}
	dst = appendPrefix(dst, KindError, e.Ext.flag(), e.ID)
	dst = binary.BigEndian.AppendUint16(dst, uint16(e.Code))
	dst = appendStr16(dst, e.Message)
	return e.Ext.appendTo(dst), nil
}

// DecodeError decodes frame into e. e.Message points into frame.
func DecodeError(frame []byte, e *Error) error {
	d := decoder{b: frame}
	var flags uint16
	e.ID, flags = d.prefix(KindError, 0)
	e.Code = Code(d.u16("code"))
	e.Message = d.str16("message", MaxMessage)
	return d.finish(flags, &e.Ext)
}

func appendPrefix(dst []byte, k Kind, flags uint16, id ID) []byte {
	dst = append(dst, Version, byte(k))
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = binary.BigEndian.AppendUint64(dst, id.Node)
	return binary.BigEndian.AppendUint64(dst, id.Seq)
}

func appendStr16[T string | []byte](dst []byte, s T) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

func appendStr32(dst, s []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// decoder reads fields off the front of b. After the first failure every
// read returns a zero value and err keeps the first error, so a decode
// function reads straight through and checks once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(field string, err error) {
	if d.err == nil {
		d.err = fieldError(field, err)
	}
	d.b = nil
}

// prefix reads the common prefix of a frame of kind want and returns its
// flags, only the bits in known and flagExt: a decoder ignores flags it
// does not know, which a newer sender may set.
func (d *decoder) prefix(want Kind, known uint16) (ID, uint16) {
	if len(d.b) > MaxFrameSize {
		d.fail("frame", ErrTooLarge)
		return ID{}, 0
	}
	k, err := KindOf(d.b)
	if err != nil {
		d.err, d.b = err, nil
		return ID{}, 0
	}
	if k != want {
		d.fail("kind", ErrKind)
		return ID{}, 0
	}
	flags := binary.BigEndian.Uint16(d.b[2:]) & (known | flagExt)
	id := ID{Node: binary.BigEndian.Uint64(d.b[4:]), Seq: binary.BigEndian.Uint64(d.b[12:])}
	d.b = d.b[prefixSize:]
	return id, flags
}

func (d *decoder) u16(field string) uint16 {
	if len(d.b) < 2 {
		d.fail(field, ErrTruncated)
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *decoder) u64(field string) uint64 {
	if len(d.b) < 8 {
		d.fail(field, ErrTruncated)
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) str16(field string, max int) []byte {
	n := int(d.u16(field))
	if n > max {
		d.fail(field, ErrTooLarge)
		return nil
	}
	return d.take(field, n)
}

func (d *decoder) str32(field string) []byte {
	if len(d.b) < 4 {
		d.fail(field, ErrTruncated)
		return nil
	}
	n := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	if n > MaxFrameSize {
		d.fail(field, ErrTooLarge)
		return nil
	}
	return d.take(field, int(n))
}

// take returns the next n bytes with their capacity cut, so that appending
// to a field can never overwrite the field after it.
func (d *decoder) take(field string, n int) []byte {
	if len(d.b) < n {
		d.fail(field, ErrTruncated)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// headers validates a header block and points h at it.
func (d *decoder) headers(h *Headers) {
	*h = Headers{}
	n := int(d.u16("header count"))
	if n > MaxHeaders {
		d.fail("header count", ErrTooLarge)
		return
	}
	start := d.b
	for i := 0; i < n && d.err == nil; i++ {
		if len(d.str16("header name", MaxHeaderName)) == 0 && d.err == nil {
			d.fail("header name", ErrField)
		}
		d.str16("header value", MaxHeaderValue)
	}
	if d.err != nil {
		return
	}
	size := len(start) - len(d.b)
	if size > MaxHeaderBytes {
		d.fail("headers", ErrTooLarge)
		return
	}
	h.raw, h.n = start[:size:size], n
}

// finish reads the extension area flags announce (or clears e), then
// checks that nothing follows it.
func (d *decoder) finish(flags uint16, e *Extensions) error {
	if flags&flagExt != 0 {
		d.extensions(e)
	} else {
		*e = Extensions{}
	}
	return d.end()
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("end", ErrTrailing)
	}
	return d.err
}
