package nbd

// Wire constants from the NBD protocol (NetworkBlockDevice/nbd doc/proto.md).
// All integers on the wire are big-endian.
const (
	magicNBD       = 0x4e42444d41474943 // "NBDMAGIC"
	magicIHaveOpt  = 0x49484156454F5054 // "IHAVEOPT"
	magicOptReply  = 0x0003e889045565a9
	magicRequest   = 0x25609513
	magicSimpleRep = 0x67446698
	magicChunk     = 0x668e33ef // a structured reply chunk
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle  = 1 << 0
	flagNoZeroes       = 1 << 1
	flagCFixedNewstyle = 1 << 0
	flagCNoZeroes      = 1 << 1
)

// Transmission flags.
const (
	tflagHasFlags        = 1 << 0
	tflagReadOnly        = 1 << 1
	tflagSendFlush       = 1 << 2
	tflagSendFUA         = 1 << 3
	tflagSendTrim        = 1 << 5
	tflagSendWriteZeroes = 1 << 6
	tflagSendDF          = 1 << 7
	tflagCanMultiConn    = 1 << 8
)

// Options.
const (
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10
)

// Option replies.
const (
	repAck         = 1
	repServer      = 2
	repInfo        = 3
	repMetaContext = 4
	repFlagError   = 1 << 31
	repErrUnsup    = repFlagError | 1
	repErrPolicy   = repFlagError | 2
	repErrInvalid  = repFlagError | 3
	repErrTLSReqd  = repFlagError | 5
	repErrUnknown  = repFlagError | 6
	repErrShutdown = repFlagError | 7
	repErrTooBig   = repFlagError | 9
)

// Info types for NBD_OPT_INFO and NBD_OPT_GO.
const (
	infoExport    = 0
	infoBlockSize = 3
)

// Commands and command flags.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6
	cmdBlockStatus = 7

	cmdFlagFUA    = 1 << 0
	cmdFlagNoHole = 1 << 1
	cmdFlagDF     = 1 << 2 // do not fragment a structured read reply
	cmdFlagReqOne = 1 << 3 // one block status extent is enough
)

// Structured reply chunk flags and types.
const (
	chunkFlagDone = 1 << 0

	chunkNone        = 0
	chunkOffsetData  = 1
	chunkOffsetHole  = 2
	chunkBlockStatus = 5
	chunkError       = 1<<15 | 1
)

// The one metadata context served, and the id it gets when selected
// (any nonzero number would do; 0 is what LIST_META_CONTEXT sends).
const (
	contextAllocation   = "base:allocation"
	contextAllocationID = 1

	stateHole = 1 << 0 // base:allocation: no storage behind the extent
	stateZero = 1 << 1 // base:allocation: the extent reads as zeros
)

// Error values for simple replies.
const (
	errPerm     = 1
	errIO       = 5
	errInval    = 22
	errNoSpc    = 28
	errShutdown = 108
)

// Block size constraints advertised in NBD_INFO_BLOCK_SIZE. The volume
// accepts any byte range, so the minimum is 1; the maximum is the payload
// every client honours (32 MiB) and bounds the memory one request can pin.
const (
	minBlock       = 1
	preferredBlock = 4096
	maxPayload     = 32 << 20
)

const (
	requestHeaderLen = 28
	replyHeaderLen   = 16
	chunkHeaderLen   = 20
	maxOptionLen     = 64 << 10 // bigger options are refused (names are <= 4 KiB)
	maxOptionDiscard = 16 << 20 // and past this the connection is dropped
)
