// Package wire is the byte format of every message on the bus: requests,
// replies and error frames. It is written by hand on byte slices: encoding
// appends into the caller's buffer, decoding fills a struct with views into
// the frame (no copies), and neither allocates.
//
// # Layout, version 1
//
// All integers are unsigned and big-endian (network order) unless said
// otherwise. A "str16" is a 2-byte length followed by that many bytes; a
// "str32" is a 4-byte length followed by that many bytes. A frame is exactly
// one mangos message body: there are no bytes after its last field, and a
// decoder rejects any.
//
// Every frame starts with the same 20-byte prefix:
//
//	offset size field
//	0      1    version, 1
//	1      1    kind: 1 request, 2 reply, 3 error
//	2      2    flags: in a request, 0x1 ghost (a copy for a version under
//	            test: skip side effects), 0x2 timing (put a Server-Timing
//	            entry in the reply), 0x4 labels (the labels field is there);
//	            0 in replies and errors. A decoder rejects unknown bits.
//	4      8    correlation ID, node: the asker's incarnation, random per process start
//	12     8    correlation ID, sequence: the asker's counter
//
// A request (kind 1) continues with:
//
//	20     8    deadline: signed, Unix time in nanoseconds; 0 means none
//	28     ...  from         str16  the asker's bus address; the reply goes there and nowhere else
//	            service      str16  the service that owns the route, e.g. "profiles"
//	            route        str16  the handler key, e.g. "GET /profiles/{id}" or "profiles.get"
//	            method       str16  HTTP method, e.g. "GET" (may be empty for internal calls)
//	            path         str16  request path, e.g. "/profiles/42"
//	            query        str16  raw query without '?'
//	            client       str16  client address as the terminator saw it
//	            traceparent  str16  W3C traceparent header value, may be empty
//	            labels       str16  only with flag 0x4, and then not empty: feature
//	                                flags on ("+name") and A/B variants
//	                                ("experiment=variant"), comma separated
//	            headers             see below
//	            body         str32
//
// A reply (kind 2) continues with:
//
//	20     2    status: an HTTP status code, 100 to 999
//	22     ...  headers             see below
//	            body         str32
//
// An error frame (kind 3) tells the asker the bus, not the handler, refused
// the request:
//
//	20     2    code: 1 busy, 2 expired, 3 no route, 4 malformed, 5 unavailable
//	22     ...  message      str16  human-readable detail
//
// Headers are a 2-byte count followed by that many (name str16, value str16)
// pairs. Names are sent as received; readers compare them ASCII
// case-insensitively.
//
// # Limits
//
// A frame is at most [MaxFrameSize] bytes; a request carries at most
// [MaxHeaders] headers whose encoded entries take at most [MaxHeaderBytes];
// each str16 field has its own bound (see the Max* constants). Encoders and
// decoders enforce the same limits, so what one accepts the other accepts.
// A frame that breaks any rule decodes to an error wrapping one of the
// sentinel errors ([ErrTruncated], [ErrTooLarge], [ErrVersion], [ErrKind],
// [ErrFlags], [ErrTrailing], [ErrField]); decoding never panics.
package wire
