package nbd

import (
	"github.com/coffer-backup/coffer/internal/errs"
)

// Export is what the server serves: a fixed-size range of bytes. Every
// method may be called from many goroutines at once (one connection runs
// several requests concurrently, and a client may open several connections).
type Export interface {
	// Size is the export's size in bytes, fixed for the life of a
	// connection (it is read once, at the handshake).
	Size() int64
	// ReadAt fills p from off. The server only asks for ranges inside Size.
	ReadAt(p []byte, off int64) (int, error)
	// WriteAt stores p at off; the data need not be durable until Flush.
	WriteAt(p []byte, off int64) (int, error)
	// Zero makes the range read as zeros; it may free the space.
	Zero(off, n int64) error
	// Flush makes every completed WriteAt and Zero durable.
	Flush() error
	// ReadOnly reports that writes must be refused. The server checks it
	// once per connection and answers writes with EPERM itself.
	ReadOnly() bool
}

// ZeroFiller is an Export that can zero a range while keeping it allocated,
// for WRITE_ZEROES with NBD_CMD_FLAG_NO_HOLE. Without it the server writes
// zero buffers.
type ZeroFiller interface {
	ZeroFill(off, n int64) error
}

// Extent is a run of an export's bytes that share one allocation state.
type Extent struct {
	Len int64
	// Hole: no storage is allocated for the run (NBD_STATE_HOLE).
	Hole bool
	// Zero: the run reads as zeros (NBD_STATE_ZERO).
	Zero bool
}

// Mapper is an Export that knows where its data is. It answers
// NBD_CMD_BLOCK_STATUS for base:allocation and lets structured reads send
// zero runs as holes instead of bytes. An Export without it is reported as
// all data, which is always correct, only slower for sparse copies.
type Mapper interface {
	// Extents describes [off, off+n) (inside Size, n > 0) as consecutive
	// runs starting at off. They may stop short of off+n (then the caller
	// asks again from where they end) but cover at least one byte and never
	// more than n. A run reported Zero must read as zeros unless a write
	// overlapping it runs concurrently; a run not reported Zero may still
	// hold zeros. It may be called from many goroutines at once.
	Extents(off, n int64) ([]Extent, error)
}

// Residency is an Export that can tell cheaply whether a read would be
// served from memory. The server then runs a small read that is on the
// goroutine that received it: handing it to a worker costs a wake-up,
// often of a thread, that takes longer than copying a few KiB out of the
// page cache. A read it cannot vouch for goes to a worker, so a slow read
// never stops the connection's other requests from being received.
type Residency interface {
	// Resident reports whether ReadAt of [off, off+n) (inside Size, n > 0)
	// would complete without waiting for a device or a remote store. It is
	// a hint: it may be stale once it returns, and should say false when
	// it cannot tell. It may be called from many goroutines at once.
	Resident(off, n int64) bool
}

// extentsOf is Extents of e, or one data run if e is no Mapper.
func extentsOf(e Export, off, n int64) ([]Extent, error) {
	if m, ok := e.(Mapper); ok {
		return m.Extents(off, n)
	}
	return []Extent{{Len: n}}, nil
}

// ReadOnly wraps e so that it reports itself read-only and refuses writes
// with errs.Forbidden even if called directly.
func ReadOnly(e Export) Export { return readOnly{e} }

type readOnly struct{ Export }

var (
	_ Export    = readOnly{}
	_ Mapper    = readOnly{}
	_ Residency = readOnly{}
)

func (r readOnly) Extents(off, n int64) ([]Extent, error) { return extentsOf(r.Export, off, n) }

func (r readOnly) Resident(off, n int64) bool {
	x, ok := r.Export.(Residency)
	return ok && x.Resident(off, n)
}

func (readOnly) ReadOnly() bool { return true }

func (readOnly) WriteAt([]byte, int64) (int, error) {
	return 0, errs.E(errs.Forbidden, "ExportReadOnly", "the export is read-only")
}

func (readOnly) Zero(int64, int64) error {
	return errs.E(errs.Forbidden, "ExportReadOnly", "the export is read-only")
}
