package wire

// TraceParentLen is the length of a version 00 W3C traceparent value:
// "00-" trace ID (32 hex) "-" parent ID (16 hex) "-" flags (2 hex).
const TraceParentLen = 55

// ParseTraceParent reads a W3C traceparent value (Trace Context, level 1):
// the trace ID, the parent (span) ID and the trace flags. It reports false
// for a value that is malformed, of version ff, or whose trace or parent
// ID is all zeros; a later version than 00 is read by its first four
// fields, as the recommendation says. It allocates nothing.
func ParseTraceParent(b []byte) (traceID [16]byte, spanID [8]byte, flags byte, ok bool) {
	if len(b) < TraceParentLen || b[2] != '-' || b[35] != '-' || b[52] != '-' {
		return traceID, spanID, 0, false
	}
	version, ok1 := hexByte(b[0], b[1])
	if !ok1 || version == 0xff || (version == 0 && len(b) != TraceParentLen) ||
		(len(b) > TraceParentLen && b[TraceParentLen] != '-') {
		return traceID, spanID, 0, false
	}
	if !hexDecode(traceID[:], b[3:35]) || !hexDecode(spanID[:], b[36:52]) {
		return traceID, spanID, 0, false
	}
	flags, ok1 = hexByte(b[53], b[54])
	if !ok1 || traceID == ([16]byte{}) || spanID == ([8]byte{}) {
		return traceID, spanID, 0, false
	}
	return traceID, spanID, flags, true
}

// AppendTraceParent appends the version 00 traceparent value of a span to
// dst.
func AppendTraceParent(dst []byte, traceID [16]byte, spanID [8]byte, flags byte) []byte {
	dst = append(dst, '0', '0', '-')
	dst = appendHex(dst, traceID[:])
	dst = append(dst, '-')
	dst = appendHex(dst, spanID[:])
	dst = append(dst, '-')
	return appendHex(dst, []byte{flags})
}

const lowerHex = "0123456789abcdef"

func appendHex(dst, src []byte) []byte {
	for _, c := range src {
		dst = append(dst, lowerHex[c>>4], lowerHex[c&0xf])
	}
	return dst
}

// hexDecode decodes lowercase hex src into dst (len(src) == 2*len(dst)).
// The specification allows lowercase only.
func hexDecode(dst, src []byte) bool {
	for i := range dst {
		v, ok := hexByte(src[2*i], src[2*i+1])
		if !ok {
			return false
		}
		dst[i] = v
	}
	return true
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := hexNibble(hi)
	l, ok2 := hexNibble(lo)
	return h<<4 | l, ok1 && ok2
}

func hexNibble(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
