// Package nbd serves exports (usually volumes) over the Network Block Device
// protocol, the way a host attaches a coffer disk. It owns the wire protocol
// only; which export a name means, and who may use it, is the Lookup
// function's business.
//
// # What is spoken
//
// The fixed newstyle handshake with NBD_FLAG_NO_ZEROES; options GO, INFO
// (NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE: minimum 1, preferred 4096,
// maximum 32 MiB), LIST (names from Server.List), ABORT, EXPORT_NAME and,
// when Server.TLS is set, STARTTLS (then mandatory: the FORCEDTLS mode of the
// spec). STRUCTURED_REPLY and every other option get NBD_REP_ERR_UNSUP, so
// transmission uses simple replies only. Commands: READ, WRITE, FLUSH, TRIM,
// WRITE_ZEROES (NO_HOLE honoured through ZeroFiller), DISC, and the FUA flag
// on the writing ones. Exports are advertised with CAN_MULTI_CONN: every
// connection to a volume shares one page cache, so a FLUSH on one covers
// writes completed on all.
//
// # Errors
//
// A bad request (unknown command or flag, a READ or WRITE over 32 MiB, a
// range past the end) gets an error reply (EINVAL; ENOSPC for writes past
// the end; EPERM on a read-only export) and the connection goes on. Only a
// broken framing (bad magic, unknown client flags) drops the connection, and
// only that one.
//
// # Concurrency
//
// Per connection, one goroutine reads requests (write payloads into pooled
// buffers) and hands them to a fixed pool of Server.Workers goroutines that
// run them against the export. Replies are serialised by a mutex with flat
// combining: a worker that finishes queues its reply and, if no one is
// writing, writes every queued reply in one writev; otherwise it returns at
// once and the current writer sends its reply too. Replies go out in
// completion order; the client matches them by handle. A bound on requests
// read but not yet answered caps the memory a client that stops reading
// replies can pin.
//
// # Words
//
//   - export: a named byte range a client can attach (an Export).
//   - option haggling: the handshake phase, where the client picks an export.
//   - transmission: the phase of READ/WRITE/... requests and their replies.
//   - FUA: force unit access; the reply waits until that write is durable.
package nbd
