package wire

import (
	"encoding/binary"
	"iter"
)

// Headers is an ordered list of (name, value) pairs in their encoded form.
// A decoded frame's Headers are a view into the frame; a Headers built with
// Add owns its buffer and can be reused after Reset without allocating.
type Headers struct {
	raw []byte // count × (str16 name, str16 value), without the count
	n   int
	err error // first limit broken by Add, reported by the encoder
}

// Len is the number of headers.
func (h *Headers) Len() int { return h.n }

// Add appends a header. Limits are checked when the frame is encoded.
func (h *Headers) Add(name, value string) {
	h.addEntry(len(name), len(value))
	h.raw = appendStr16(h.raw, name)
	h.raw = appendStr16(h.raw, value)
}

// AddBytes is Add for byte slices; it copies them.
func (h *Headers) AddBytes(name, value []byte) {
	h.addEntry(len(name), len(value))
	h.raw = appendStr16(h.raw, name)
	h.raw = appendStr16(h.raw, value)
}

func (h *Headers) addEntry(nameLen, valueLen int) {
	h.n++
	switch {
	case h.err != nil:
	case nameLen == 0 || nameLen > MaxHeaderName:
		h.err = fieldError("header name", ErrField)
	case valueLen > MaxHeaderValue:
		h.err = fieldError("header value", ErrTooLarge)
	case h.n > MaxHeaders:
		h.err = fieldError("headers", ErrTooLarge)
	case len(h.raw)+4+nameLen+valueLen > MaxHeaderBytes:
		h.err = fieldError("headers", ErrTooLarge)
	}
}

// Reset empties h and keeps its buffer.
func (h *Headers) Reset() {
	h.raw = h.raw[:0]
	h.n = 0
	h.err = nil
}

// All yields every (name, value) pair in order. The slices are views: copy
// them to keep them.
func (h *Headers) All() iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		b := h.raw
		for i := 0; i < h.n; i++ {
			var name, value []byte
			name, b = splitStr16(b)
			value, b = splitStr16(b)
			if !yield(name, value) {
				return
			}
		}
	}
}

// Get returns the value of the first header called name (ASCII
// case-insensitive), or nil.
func (h *Headers) Get(name string) []byte {
	b := h.raw
	for i := 0; i < h.n; i++ {
		var k, v []byte
		k, b = splitStr16(b)
		v, b = splitStr16(b)
		if equalFold(k, name) {
			return v
		}
	}
	return nil
}

// size is the encoded size including the count.
func (h *Headers) size() int { return 2 + len(h.raw) }

func (h *Headers) appendTo(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.n))
	return append(dst, h.raw...)
}

// splitStr16 splits a str16 off b. It is only used on header blocks the
// decoder (or Add) has already validated, so it trusts the lengths.
func splitStr16(b []byte) (field, rest []byte) {
	n := int(binary.BigEndian.Uint16(b))
	return b[2 : 2+n : 2+n], b[2+n:]
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
