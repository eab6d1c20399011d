package wire

import "encoding/binary"

// The frames protocols 2 and 3 add: cancels (nanobus sends them when a call
// is cancelled), events and their acks (known, not yet used: a node refuses
// an event as having no route), and streams of replies (chunks, an end, and
// the asker's credit). A node sends one only to peers whose protocol has
// it.

// MaxTopic bounds an event's topic.
const MaxTopic = 1024

// Cancel asks the instance a call went to to stop it: ID is the call's.
type Cancel struct {
	ID  ID
	Ext Extensions
}

// Size is the encoded size of c.
func (c *Cancel) Size() int { return prefixSize + c.Ext.size() }

// AppendCancel appends c's encoding to dst.
func AppendCancel(dst []byte, c *Cancel) ([]byte, error) {
	if c.Ext.err != nil {
		return dst, c.Ext.err
	}
	dst = appendPrefix(dst, KindCancel, c.Ext.flag(), c.ID)
	return c.Ext.appendTo(dst), nil
}

// DecodeCancel decodes frame into c.
func DecodeCancel(frame []byte, c *Cancel) error {
	d := decoder{b: frame}
	var flags uint16
	c.ID, flags = d.prefix(KindCancel, 0)
	return d.finish(flags, &c.Ext)
}

// Event is an event for a node to take; its ack (or an error frame) names
// the event's ID and comes back on the connection the event came in on.
type Event struct {
	ID       ID
	Deadline int64  // Unix nanoseconds; 0 means none
	Topic    []byte // what the event is about, e.g. "profiles.changed"; not empty
	Header   Headers
	Body     []byte
	Ext      Extensions
}

// Size is the encoded size of e.
func (e *Event) Size() int {
	return prefixSize + 8 + 2 + len(e.Topic) + e.Header.size() + 4 + len(e.Body) + e.Ext.size()
}

// AppendEvent appends e's encoding to dst.
func AppendEvent(dst []byte, e *Event) ([]byte, error) {
	switch {
	case e.Header.err != nil:
		return dst, e.Header.err
	case e.Ext.err != nil:
		return dst, e.Ext.err
	case len(e.Topic) == 0:
		return dst, fieldError("topic", ErrField)
	case len(e.Topic) > MaxTopic:
		return dst, fieldError("topic", ErrTooLarge)
	case e.Size() > MaxFrameSize:
		return dst, fieldError("frame", ErrTooLarge)
	}
	dst = appendPrefix(dst, KindEvent, e.Ext.flag(), e.ID)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Deadline))
	dst = appendStr16(dst, e.Topic)
	dst = e.Header.appendTo(dst)
	dst = appendStr32(dst, e.Body)
	return e.Ext.appendTo(dst), nil
}

// DecodeEvent decodes frame into e. e's slices point into frame.
func DecodeEvent(frame []byte, e *Event) error {
	d := decoder{b: frame}
	var flags uint16
	e.ID, flags = d.prefix(KindEvent, 0)
	e.Deadline = int64(d.u64("deadline"))
	if e.Topic = d.str16("topic", MaxTopic); len(e.Topic) == 0 && d.err == nil {
		d.fail("topic", ErrField)
	}
	d.headers(&e.Header)
	e.Body = d.str32("body")
	return d.finish(flags, &e.Ext)
}

// EventAck says the event ID names was taken.
type EventAck struct {
	ID  ID
	Ext Extensions
}

// Size is the encoded size of a.
func (a *EventAck) Size() int { return prefixSize + a.Ext.size() }

// AppendEventAck appends a's encoding to dst.
func AppendEventAck(dst []byte, a *EventAck) ([]byte, error) {
	if a.Ext.err != nil {
		return dst, a.Ext.err
	}
	dst = appendPrefix(dst, KindEventAck, a.Ext.flag(), a.ID)
	return a.Ext.appendTo(dst), nil
}

// DecodeEventAck decodes frame into a.
func DecodeEventAck(frame []byte, a *EventAck) error {
	d := decoder{b: frame}
	var flags uint16
	a.ID, flags = d.prefix(KindEventAck, 0)
	return d.finish(flags, &a.Ext)
}

// Chunk is one piece of a stream of replies to the call ID names. Chunks
// are numbered from 0; chunk 0 carries the response's status and headers
// (later chunks have status 0 and may carry headers of their own, e.g. an
// SSE event's fields). An End frame closes the stream.
type Chunk struct {
	ID     ID
	Index  uint32
	Status int // chunk 0: 100 to 999; later chunks: 0
	Header Headers
	Body   []byte
	Ext    Extensions
}

// Size is the encoded size of c.
func (c *Chunk) Size() int {
	return prefixSize + 4 + 2 + c.Header.size() + 4 + len(c.Body) + c.Ext.size()
}

func chunkStatusOK(index uint32, status int) bool {
	if index == 0 {
		return status >= 100 && status <= 999
	}
	return status == 0
}

// AppendChunk appends c's encoding to dst.
func AppendChunk(dst []byte, c *Chunk) ([]byte, error) {
	switch {
	case c.Header.err != nil:
		return dst, c.Header.err
	case c.Ext.err != nil:
		return dst, c.Ext.err
	case !chunkStatusOK(c.Index, c.Status):
		return dst, fieldError("status", ErrField)
	case c.Size() > MaxFrameSize:
		return dst, fieldError("frame", ErrTooLarge)
	}
	dst = appendPrefix(dst, KindChunk, c.Ext.flag(), c.ID)
	dst = binary.BigEndian.AppendUint32(dst, c.Index)
	dst = binary.BigEndian.AppendUint16(dst, uint16(c.Status))
	dst = c.Header.appendTo(dst)
	dst = appendStr32(dst, c.Body)
	return c.Ext.appendTo(dst), nil
}

// DecodeChunk decodes frame into c. c's slices point into frame.
func DecodeChunk(frame []byte, c *Chunk) error {
	d := decoder{b: frame}
	var flags uint16
	c.ID, flags = d.prefix(KindChunk, 0)
	c.Index = d.u32("index")
	c.Status = int(d.u16("status"))
	if d.err == nil && !chunkStatusOK(c.Index, c.Status) {
		d.fail("status", ErrField)
	}
	d.headers(&c.Header)
	c.Body = d.str32("body")
	return d.finish(flags, &c.Ext)
}

// End closes the stream of replies to the call ID names. Chunks is how
// many chunks were sent before it, so that the asker knows it has them all.
// Status 0 means the stream is complete; otherwise it is the HTTP status of
// why it broke off (a handler's failure, a deadline), with Message.
type End struct {
	ID      ID
	Chunks  uint32
	Status  int // 0, or 100 to 999
	Message []byte
	Ext     Extensions
}

// Size is the encoded size of e.
func (e *End) Size() int { return prefixSize + 4 + 2 + 2 + len(e.Message) + e.Ext.size() }

func endStatusOK(status int) bool { return status == 0 || status >= 100 && status <= 999 }

// AppendEnd appends e's encoding to dst.
func AppendEnd(dst []byte, e *End) ([]byte, error) {
	switch {
	case e.Ext.err != nil:
		return dst, e.Ext.err
	case !endStatusOK(e.Status):
		return dst, fieldError("status", ErrField)
	case len(e.Message) > MaxMessage:
		return dst, fieldError("message", ErrTooLarge)
	}
	dst = appendPrefix(dst, KindEnd, e.Ext.flag(), e.ID)
	dst = binary.BigEndian.AppendUint32(dst, e.Chunks)
	dst = binary.BigEndian.AppendUint16(dst, uint16(e.Status))
	dst = appendStr16(dst, e.Message)
	return e.Ext.appendTo(dst), nil
}

// DecodeEnd decodes frame into e. e.Message points into frame.
func DecodeEnd(frame []byte, e *End) error {
	d := decoder{b: frame}
	var flags uint16
	e.ID, flags = d.prefix(KindEnd, 0)
	e.Chunks = d.u32("chunks")
	e.Status = int(d.u16("status"))
	if d.err == nil && !endStatusOK(e.Status) {
		d.fail("status", ErrField)
	}
	e.Message = d.str16("message", MaxMessage)
	return d.finish(flags, &e.Ext)
}

// Credit lets the instance streaming replies to the call ID names send
// Chunks more chunks (protocol 3). A stream starts with the credit its
// request's ExtStream entry gives.
type Credit struct {
	ID     ID
	Chunks uint32 // not 0
	Ext    Extensions
}

// Size is the encoded size of c.
func (c *Credit) Size() int { return prefixSize + 4 + c.Ext.size() }

// AppendCredit appends c's encoding to dst.
func AppendCredit(dst []byte, c *Credit) ([]byte, error) {
	switch {
	case c.Ext.err != nil:
		return dst, c.Ext.err
	case c.Chunks == 0:
		return dst, fieldError("chunks", ErrField)
	}
	dst = appendPrefix(dst, KindCredit, c.Ext.flag(), c.ID)
	dst = binary.BigEndian.AppendUint32(dst, c.Chunks)
	return c.Ext.appendTo(dst), nil
}

// DecodeCredit decodes frame into c.
func DecodeCredit(frame []byte, c *Credit) error {
	d := decoder{b: frame}
	var flags uint16
	c.ID, flags = d.prefix(KindCredit, 0)
	if c.Chunks = d.u32("chunks"); c.Chunks == 0 && d.err == nil {
		d.fail("chunks", ErrField)
	}
	return d.finish(flags, &c.Ext)
}

// ExtStream, a request's extension entry, asks for the answer as a stream
// of chunks (protocol 3): its value, 4 bytes, is the stream's first
// credit, in chunks (1 or more). A node that does not know it answers with
// one reply, which the asker takes as a stream of one.
const ExtStream uint16 = 1

// StreamCredit returns the first credit r's ExtStream entry gives, 0 if r
// asks for no stream (or the entry is not 4 bytes, or is 0).
func StreamCredit(r *Request) uint32 {
	v, ok := r.Ext.Get(ExtStream)
	if !ok || len(v) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

// AskStream adds r's ExtStream entry, for a stream with credit chunks.
func AskStream(r *Request, credit uint32) {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], credit)
	r.Ext.Add(ExtStream, v[:])
}

func (d *decoder) u32(field string) uint32 {
	if len(d.b) < 4 {
		d.fail(field, ErrTruncated)
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}
