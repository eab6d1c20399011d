package wire

import (
	"encoding/binary"
	"iter"
)

// flagExt, in the flags of a frame of any kind, says an extension area
// follows the kind's last field. The encoder sets it exactly when the frame
// has extensions.
const flagExt uint16 = 1 << 15

// Extension limits.
const (
	MaxExtensions = 64       // entries per frame
	MaxExtBytes   = 64 << 10 // encoded entries per frame
)

// Extensions are a frame's extension area: (tag, value) entries a later
// version of the protocol adds without a new frame kind. A decoder keeps
// them all as views and interprets only the tags it knows; as Headers, an
// Extensions built with Add owns its buffer.
type Extensions struct {
	raw []byte // count × (tag uint16, str16 value), without the count
	n   int
	err error // first limit broken by Add, reported by the encoder
}

// Len is the number of entries.
func (e *Extensions) Len() int { return e.n }

// Add appends an entry. Limits are checked when the frame is encoded.
func (e *Extensions) Add(tag uint16, value []byte) {
	e.n++
	switch {
	case e.err != nil:
	case len(value) > 0xffff:
		e.err = fieldError("extension", ErrTooLarge)
	case e.n > MaxExtensions || len(e.raw)+4+len(value) > MaxExtBytes:
		e.err = fieldError("extensions", ErrTooLarge)
	}
	e.raw = binary.BigEndian.AppendUint16(e.raw, tag)
	e.raw = appendStr16(e.raw, value)
}

// Reset empties e and keeps its buffer.
func (e *Extensions) Reset() {
	e.raw = e.raw[:0]
	e.n = 0
	e.err = nil
}

// Get returns the value of the first entry with tag.
func (e *Extensions) Get(tag uint16) ([]byte, bool) {
	for t, v := range e.All() {
		if t == tag {
			return v, true
		}
	}
	return nil, false
}

// All yields every (tag, value) entry in order. The values are views.
func (e *Extensions) All() iter.Seq2[uint16, []byte] {
	return func(yield func(uint16, []byte) bool) {
		b := e.raw
		for i := 0; i < e.n; i++ {
			tag := binary.BigEndian.Uint16(b)
			var v []byte
			v, b = splitStr16(b[2:])
			if !yield(tag, v) {
				return
			}
		}
	}
}

// size is the encoded size of the area, 0 when there is none.
func (e *Extensions) size() int {
	if e.n == 0 {
		return 0
	}
	return 2 + len(e.raw)
}

// flag is flagExt when the area is there.
func (e *Extensions) flag() uint16 {
	if e.n == 0 {
		return 0
	}
	return flagExt
}

func (e *Extensions) appendTo(dst []byte) []byte {
	if e.n == 0 {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(e.n))
	return append(dst, e.raw...)
}

// extensions reads the extension area, which the flags say is there, into
// e. (Decoders check the flag themselves: a frame without the area, the
// hot path, pays one branch.) Canonical: a flagged area has at least one
// entry.
func (d *decoder) extensions(e *Extensions) {
	*e = Extensions{}
	if d.err != nil {
		return
	}
	n := int(d.u16("extension count"))
	switch {
	case d.err != nil:
		return
	case n == 0:
		d.fail("extension count", ErrField)
		return
	case n > MaxExtensions:
		d.fail("extension count", ErrTooLarge)
		return
	}
	start := d.b
	for i := 0; i < n && d.err == nil; i++ {
		d.u16("extension tag")
		d.str16("extension value", 0xffff)
	}
	if d.err != nil {
		return
	}
	size := len(start) - len(d.b)
	if size > MaxExtBytes {
		d.fail("extensions", ErrTooLarge)
		return
	}
	e.raw, e.n = start[:size:size], n
}
