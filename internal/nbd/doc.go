// Package nbd serves exports (usually volumes) over the Network Block Device
// protocol, the way a host attaches a coffer disk. It owns the wire protocol
// only; which export a name means, and who may use it, is the Lookup
// function's business.
//
// # What is spoken
//
// The fixed newstyle handshake with NBD_FLAG_NO_ZEROES; options GO, INFO
// (NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE: minimum 1, preferred 4096,
// maximum 32 MiB), LIST (names from Server.List), ABORT, EXPORT_NAME,
// STRUCTURED_REPLY, LIST_META_CONTEXT and SET_META_CONTEXT (one context,
// base:allocation) and, when Server.TLS is set, STARTTLS (then mandatory:
// the FORCEDTLS mode of the spec). Extended headers and every other option
// get NBD_REP_ERR_UNSUP. Commands: READ, WRITE, FLUSH, TRIM, WRITE_ZEROES
// (NO_HOLE honoured through ZeroFiller), BLOCK_STATUS (with REQ_ONE), DISC,
// and the FUA flag on the writing ones. Exports are advertised with
// CAN_MULTI_CONN: every connection to a volume shares one page cache, so a
// FLUSH on one covers writes completed on all.
//
// # Structured replies and allocation
//
// Once a client negotiates structured replies, a READ is answered in
// chunks: one OFFSET_DATA chunk for data, and for a read of 64 KiB or more
// over ranges the export reports as zeros, OFFSET_HOLE chunks for those
// (NBD_CMD_FLAG_DF, advertised then, keeps the reply to one OFFSET_DATA
// chunk). Errors of a READ or BLOCK_STATUS are ERROR chunks; other
// commands keep simple replies, which the spec allows. BLOCK_STATUS, for a
// client that selected base:allocation for the export it attached,
// reports each run as NBD_STATE_HOLE|NBD_STATE_ZERO (nothing stored),
// NBD_STATE_ZERO (known zeros, such as the zero chunks of a disk still
// filling from a snapshot) or 0 (data). The map comes from the export
// through Mapper; an export without one is all data.

// # Errors
//
// A bad request (unknown command or flag, a READ or WRITE over 32 MiB, a
// range past the end, a BLOCK_STATUS without a selected context or of
// length 0) gets an error reply (EINVAL; ENOSPC for writes past
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
// A read of up to 64 KiB that the export vouches is in memory (Residency)
// is run inline by the reading goroutine instead: a hand-off costs more
// than such a read. Its reply is held, and the held replies go out in one
// writev before the reader could block and at least every 16.
//
// # Words
//
//   - export: a named byte range a client can attach (an Export).
//   - option haggling: the handshake phase, where the client picks an export.
//   - transmission: the phase of READ/WRITE/... requests and their replies.
//   - FUA: force unit access; the reply waits until that write is durable.
//   - structured reply: a reply in chunks, each with its own header; the
//     last carries the DONE flag.
//   - meta context: a kind of metadata BLOCK_STATUS reports; here only
//     base:allocation, which says where the data is.
//   - extent: a run of the export's bytes in one allocation state.
//   - resident: of a read, served from memory (the page cache) without
//     waiting for a device or a remote store.
//   - inline: run by the goroutine that read the request, not a worker.
package nbd
