// Package wire is the byte format of every message on the bus: requests,
// replies and error frames, and (protocol 2) cancels, events and their acks,
// and streams of replies, with (protocol 3) the asker's credit. It is written by hand on byte slices: encoding
// appends into the caller's buffer, decoding fills a struct with views into
// the frame (no copies), and neither allocates.
//
// # Layout, version 1 with the extension area
//
// All integers are unsigned and big-endian (network order) unless said
// otherwise. A "str16" is a 2-byte length followed by that many bytes; a
// "str32" is a 4-byte length followed by that many bytes. A frame is exactly
// one mangos message body: there are no bytes after its last field (the
// extension area, when flagged), and a decoder rejects any.
//
// The version byte stays 1: the format grows without breaking, by rules
// every node keeps since protocol 2:
//
//   - A decoder ignores flag bits it does not know (it interprets only its
//     own) and extension entries whose tags it does not know. A frame from
//     a newer node so still decodes, to every field this node knows.
//   - New fields go in the extension area; new meanings of a frame in flags
//     (which an older node ignores, so only for what it may ignore) or in a
//     new kind.
//   - A sender never sends a kind to a peer whose announced protocol (see
//     ProtocolVersion, in the node's registration) does not have it. A kind
//     a node does not know is answered with an error frame, code 6.
//
// Protocol 1 (requests, replies, errors) is what nodes spoke before this;
// its frames are those of today without flag 0x8000, byte for byte (the
// golden corpus in testdata/ keeps them), and a protocol 1 node refused
// unknown flags, bytes after the last field and unknown kinds (the last in
// silence): hence the rule on kinds, and no extension to such a peer.
//
// Every frame starts with the same 20-byte prefix:
//
//	offset size field
//	0      1    version, 1
//	1      1    kind: 1 request, 2 reply, 3 error; protocol 2: 4 cancel,
//	            5 event, 6 event ack, 7 chunk, 8 end; protocol 3: 9 credit
//	2      2    flags: in every kind, 0x8000 extension area (it follows
//	            the kind's last field). In a request, 0x1 ghost (a copy for
//	            a version under test: skip side effects), 0x2 timing (put a
//	            Server-Timing entry in the reply), 0x4 labels (the labels
//	            field is there). A decoder ignores the bits it does not know.
//	4      8    correlation ID, node: the asker's incarnation, random per process start
//	12     8    correlation ID, sequence: the asker's counter
//
// A request (kind 1) continues with:
//
//	20     8    deadline: signed, Unix time in nanoseconds; 0 means none
//	28     ...  from         str16  the asker's bus address, for logs: the reply goes back on the connection the request came in on
//	            service      str16  the service that owns the route, e.g. "profiles"
//	            route        str16  the handler key, e.g. "GET /profiles/{id}" or "profiles.get"
//	            method       str16  HTTP method, e.g. "GET" (may be empty for internal calls)
//	            path         str16  request path, e.g. "/profiles/42"
//	            query        str16  raw query without '?'
//	            client       str16  client address as the terminator saw it
//	            traceparent  str16  W3C traceparent header value, may be empty
//	                                (ParseTraceParent, AppendTraceParent)
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
//	20     2    code: 1 busy, 2 expired, 3 no route, 4 malformed (the
//	            request's prefix read, the rest did not decode), 5 unavailable,
//	            6 unknown kind (the frame's kind is not one the node knows)
//	22     ...  message      str16  human-readable detail
//
// A cancel (kind 4, asker to instance) is the prefix alone: the ID is the
// call's to stop. An instance not running that call (or running it for
// another connection) counts it, no more.
//
// An event (kind 5, sender to node), answered by an event ack (kind 6: the
// prefix alone, the event's ID) or an error frame:
//
//	20     8    deadline: as a request's
//	28     ...  topic        str16  not empty, e.g. "profiles.changed"
//	            headers             see below
//	            body         str32
//
// A stream of replies to one call (instance to asker) is chunks (kind 7)
// ended by an end frame (kind 8), never by silence:
//
//	chunk:
//	20     4    index: 0, 1, 2... in the order sent
//	24     2    status: in chunk 0 the response's, 100 to 999; 0 after
//	26     ...  headers             see below (chunk 0: the response's)
//	            body         str32
//	end:
//	20     4    chunks: how many chunks came before it
//	24     2    status: 0 complete; else 100 to 999, why it broke off
//	26     ...  message      str16
//
// A request asks for a stream with extension entry 1 (ExtStream, protocol
// 3): 4 bytes, the number of chunks the instance may send before it hears
// more. The asker grants more with credit frames (kind 9, asker to
// instance):
//
//	20     4    chunks: how many more chunks may come, 1 or more
//
// Headers are a 2-byte count followed by that many (name str16, value str16)
// pairs. Names are sent as received; readers compare them ASCII
// case-insensitively.
//
// The extension area, with flag 0x8000, after the kind's last field: a
// 2-byte count (1 to [MaxExtensions]) followed by that many (tag uint16,
// value str16) entries, at most [MaxExtBytes] in all. Tags defined: 1
// (ExtStream, in a request). A tag, once given a meaning, keeps it.
//
// # Limits
//
// A frame is at most [MaxFrameSize] bytes; a request carries at most
// [MaxHeaders] headers whose encoded entries take at most [MaxHeaderBytes];
// each str16 field has its own bound (see the Max* constants). Encoders and
// decoders enforce the same limits, so what one accepts the other accepts.
// A frame that breaks any rule decodes to an error wrapping one of the
// sentinel errors ([ErrTruncated], [ErrTooLarge], [ErrVersion], [ErrKind],
// [ErrTrailing], [ErrField]; encoders also [ErrFlags]); decoding never panics.
package wire
