package chunk

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/coffer-backup/coffer/internal/directio"
	"github.com/coffer-backup/coffer/internal/errs"
)

// newPackID names a new pack. Random rather than the hash of the pack's
// bytes (restic's choice): nothing checks a pack against its name (every
// chunk is checked against its digest, the table against its checksum),
// and hashing 16 MiB again per pack cost a twentieth of a first backup's
// CPU. A retried write reuses the name it was given.
func newPackID() PackID {
	var id PackID
	if _, err := rand.Read(id[:]); err != nil {
		panic("crypto/rand failed: " + err.Error()) // documented never to fail on Linux
	}
	return id
}

// pack is a pack this process knows: one it is filling or writing, or one
// in the bucket that the pack indexes (or its own table) describe.
type pack struct {
	id      PackID // set once written
	buf     []byte // the pack being filled or written; nil once written
	entries []packEntry
	written bool // the object is in the bucket
	durable bool // synced and indexed: GC may consider it
	size    int64
	modTime time.Time

	// Filling. A Put reserves its object's bytes in buf under the lock
	// and seals into them outside it, so Puts fill one pack at once and
	// no object is copied into a pack after it is sealed. The table is
	// appended (seal) once the pack is closed to new reservations and
	// the last Put filling it has finished.
	reserved int           // objects reserved, filled or not
	filling  int           // reserved objects not filled yet
	closed   bool          // no more reservations
	ready    chan struct{} // closed once the table is appended

	writeMu sync.Mutex // one writer of buf at a time
}

// chunkLoc is where a chunk's object is.
type chunkLoc struct {
	p             *pack
	off, n, plain uint32
}

// packState is a Store's pack layout: the in-memory pack index and the
// packs not yet durable. mu guards everything but the two other mutexes.
type packState struct {
	size int64 // a pack is written once it holds this many bytes

	mu         sync.Mutex
	loaded     bool
	loose      bool // the bucket held version-1 chunk objects when loaded
	index      map[Digest]chunkLoc
	byID       map[PackID]*pack
	superseded map[PackID]bool
	open       *pack   // taking reservations
	closing    []*pack // closed, waiting for the Puts filling them
	sealed     []*pack // full or flushed, not yet durable, in seal order
	indexObjs  map[string]bool
	refreshes  int // completed refreshes, so concurrent misses share one
	// rebuilt: some pack was indexed from its own table, which no pack
	// index object records yet; compaction writes one that does.
	rebuilt bool
	// badChunks are the (pack, digest) pairs found corrupt, so that an
	// older pack index object read later does not bring them back.
	badChunks map[badKey]struct{}
	// alt holds the other good copies of indexed chunks stored twice
	// (rare: two processes storing the same data, or a pack moved by
	// another process's GC), so one takes over if the indexed copy goes.
	alt  map[Digest][]chunkLoc
	bufs sync.Pool

	loadMu  sync.Mutex // one load or refresh at a time
	flushMu sync.Mutex // one flush or compaction at a time
}

func newPackState(size int64) *packState {
	return &packState{
		size:       size,
		index:      map[Digest]chunkLoc{},
		byID:       map[PackID]*pack{},
		superseded: map[PackID]bool{},
		indexObjs:  map[string]bool{},
	}
}

// newBuf returns a buffer for a pack whose first object is n bytes long:
// a pooled one of the pack size plus room for one more object of up to
// 2 MiB and the table, or a larger one for a larger object.
func (pk *packState) newBuf(n int) []byte {
	if want := packHeaderLen + n + tocRoom(1); want > int(pk.size)+2<<20 {
		b := directio.AlignedBuf(want)[:packHeaderLen]
		copy(b, packMagic)
		return b
	}
	if b, ok := pk.bufs.Get().(*[]byte); ok {
		return (*b)[:packHeaderLen]
	}
	b := directio.AlignedBuf(int(pk.size) + 2<<20)[:packHeaderLen]
	copy(b, packMagic)
	return b
}

// tocRoom is the room the table of a pack of n objects takes.
func tocRoom(n int) int { return n*packEntryLen + packFooterLen }

func (pk *packState) freeBuf(b []byte) {
	if cap(b) >= int(pk.size) {
		b = b[:packHeaderLen]
		pk.bufs.Put(&b)
	}
}

// grow appends body to b, moving to a larger aligned buffer if needed.
func grow(b, body []byte) []byte {
	if len(b)+len(body) > cap(b) {
		nb := directio.AlignedBuf(max(2*cap(b), len(b)+len(body)))[:len(b)]
		copy(nb, b)
		b = nb
	}
	return append(b, body...)
}

// loadPacks reads the pack indexes once, before the first use.
func (s *Store) loadPacks(ctx context.Context) error {
	pk := s.pk
	pk.mu.Lock()
	loaded := pk.loaded
	pk.mu.Unlock()
	if loaded {
		return nil
	}
	pk.loadMu.Lock()
	defer pk.loadMu.Unlock()
	pk.mu.Lock()
	loaded = pk.loaded
	pk.mu.Unlock()
	if loaded {
		return nil
	}
	if err := s.refreshLocked(ctx); err != nil {
		return err
	}
	// Version-1 objects: Has and Put look for them only if there are any.
	found := false
	stop := errors.New("found")
	err := s.backend.List(ctx, chunkPrefix, func(o Object) error {
		if _, ok := parseChunkKey(o.Key); ok {
			found = true
			return stop
		}
		return nil
	})
	if err != nil && err != stop {
		return backendErr("ChunkListFailed", chunkPrefix, err)
	}
	pk.mu.Lock()
	pk.loose, pk.loaded = found, true
	pk.mu.Unlock()
	return nil
}

// refresh re-reads the bucket's packs and pack indexes, unless another
// refresh ended since the caller saw seen.
func (s *Store) refresh(ctx context.Context, seen int) error {
	pk := s.pk
	pk.loadMu.Lock()
	defer pk.loadMu.Unlock()
	pk.mu.Lock()
	done := pk.refreshes != seen
	pk.mu.Unlock()
	if done {
		return nil
	}
	return s.refreshLocked(ctx)
}

// refreshLocked lists packs and pack indexes, loads the indexes it has not
// read, forgets packs that are gone, and rebuilds the entries of packs no
// index names from their own tables. Called with loadMu held.
func (s *Store) refreshLocked(ctx context.Context) error {
	pk := s.pk
	listed := map[PackID]Object{}
	err := s.backend.List(ctx, packPrefix, func(o Object) error {
		if id, ok := parsePackKey(o.Key); ok {
			listed[id] = o
		}
		return nil
	})
	if err != nil {
		return backendErr("PackListFailed", packPrefix, err)
	}
	var names []string
	err = s.backend.List(ctx, packIndexPrefix, func(o Object) error {
		names = append(names, o.Key)
		return nil
	})
	if err != nil {
		return backendErr("PackListFailed", packIndexPrefix, err)
	}
	pk.mu.Lock()
	names = slices.DeleteFunc(names, func(n string) bool { return pk.indexObjs[n] })
	pk.mu.Unlock()
	var xs []packIndex
	var read []string
	for _, name := range names {
		body, err := s.backend.Read(ctx, name, nil)
		if errors.Is(err, ErrObjectNotFound) {
			continue // compacted meanwhile
		}
		if err != nil {
			return backendErr("PackIndexGetFailed", name, err)
		}
		x, err := unmarshalPackIndex(body)
		if err != nil {
			// Damage (writes are whole, so not a write in progress): its
			// packs are rebuilt from their own tables below. Counted as
			// read, so it is not read again and compaction deletes it.
			read = append(read, name)
			continue
		}
		xs = append(xs, x)
		read = append(read, name)
	}

	pk.mu.Lock()
	for _, name := range read {
		pk.indexObjs[name] = true
	}
	uncovered := pk.apply(xs, listed)
	pk.mu.Unlock()

	for _, id := range uncovered {
		if err := s.rebuildPack(ctx, id, listed[id]); err != nil {
			return err
		}
	}
	pk.mu.Lock()
	pk.refreshes++
	pk.mu.Unlock()
	return nil
}

// apply takes in the pack indexes xs, read from a bucket whose packs are
// listed, and returns the listed packs that neither they nor an earlier
// index describes, to be rebuilt from their own tables. Called with mu
// held.
//
// The outcome does not depend on the order of xs: a chunk stored in two
// packs (by two processes, or moved by another process's GC) keeps the
// second copy as an alternate, which takes over when the first is found
// corrupt, superseded or gone.
func (pk *packState) apply(xs []packIndex, listed map[PackID]Object) []PackID {
	for _, x := range xs {
		for _, id := range x.superseded {
			pk.superseded[id] = true
		}
	}
	covered := map[PackID]bool{}
	for _, x := range xs {
		for _, part := range x.packs {
			o, ok := listed[part.id]
			if !ok || pk.superseded[part.id] {
				continue
			}
			covered[part.id] = true
			p := pk.known(part.id, o)
			for _, e := range part.entries {
				switch {
				case e.flags&entryBad != 0:
					pk.bad(p, e.d)
					pk.drop(e.d, p)
				case !pk.isBad(p, e.d):
					pk.add(e.d, chunkLoc{p: p, off: e.off, n: e.n, plain: e.plain})
				}
			}
		}
	}
	// Packs known but gone (another process's GC) or superseded: their
	// entries no longer count.
	for id, p := range pk.byID {
		if _, ok := listed[id]; (!ok && p.durable) || pk.superseded[id] {
			pk.forget(p)
		}
	}
	var uncovered []PackID
	for id, o := range listed {
		if p, ok := pk.byID[id]; ok {
			p.size, p.modTime = o.Size, o.ModTime
			continue
		}
		if !covered[id] && !pk.superseded[id] {
			uncovered = append(uncovered, id)
		} else if pk.superseded[id] {
			pk.known(id, o) // garbage for GC, with no entries
		}
	}
	return uncovered
}

// add records that chunk d is at loc: in the index if d is not there yet,
// else as an alternate copy. Called with mu held.
func (pk *packState) add(d Digest, loc chunkLoc) {
	cur, ok := pk.index[d]
	switch {
	case !ok:
		pk.index[d] = loc
	case cur != loc && !slices.Contains(pk.alt[d], loc):
		if pk.alt == nil {
			pk.alt = map[Digest][]chunkLoc{}
		}
		pk.alt[d] = append(pk.alt[d], loc)
	}
}

// drop forgets chunk d's copy in pack p; if the index named that copy, an
// alternate that is still good takes its place. Called with mu held.
func (pk *packState) drop(d Digest, p *pack) {
	alts := slices.DeleteFunc(pk.alt[d], func(l chunkLoc) bool { return l.p == p })
	if cur, ok := pk.index[d]; ok && cur.p == p {
		delete(pk.index, d)
		for len(alts) > 0 {
			l := alts[0]
			alts = alts[1:]
			if pk.byID[l.p.id] == l.p && !pk.superseded[l.p.id] && !pk.isBad(l.p, d) {
				pk.index[d] = l
				break
			}
		}
	}
	if len(alts) == 0 {
		delete(pk.alt, d)
	} else {
		pk.alt[d] = alts
	}
}

// known returns the durable pack id, adding it if new. Called with mu held.
func (pk *packState) known(id PackID, o Object) *pack {
	p, ok := pk.byID[id]
	if !ok {
		p = &pack{id: id, written: true, durable: true}
		pk.byID[id] = p
	}
	p.size, p.modTime = o.Size, o.ModTime
	return p
}

type badKey struct {
	p *pack
	d Digest
}

func (pk *packState) bad(p *pack, d Digest) {
	if pk.badChunks == nil {
		pk.badChunks = map[badKey]struct{}{}
	}
	pk.badChunks[badKey{p, d}] = struct{}{}
}

func (pk *packState) isBad(p *pack, d Digest) bool {
	_, ok := pk.badChunks[badKey{p, d}]
	return ok
}

// forget drops pack p and its entries. Called with mu held.
func (pk *packState) forget(p *pack) {
	delete(pk.byID, p.id)
	for d, loc := range pk.index {
		if loc.p == p {
			pk.drop(d, p)
		}
	}
	for d, alts := range pk.alt {
		if slices.ContainsFunc(alts, func(l chunkLoc) bool { return l.p == p }) {
			pk.drop(d, p)
		}
	}
}

// rebuildPack reads a pack no pack index names (its index was lost in a
// crash, or another process has not written it yet) and adds the chunks
// that open. A pack whose table is unreadable is kept with no chunks:
// garbage for GC once it is older than the grace period.
func (s *Store) rebuildPack(ctx context.Context, id PackID, o Object) error {
	body, err := s.backend.Read(ctx, PackKey(id), nil)
	if errors.Is(err, ErrObjectNotFound) {
		return nil
	}
	if err != nil {
		return backendErr("PackGetFailed", PackKey(id), err)
	}
	entries, _ := parsePack(id, body)
	var good []packEntry
	for _, e := range entries {
		obj := slices.Clone(body[e.off : e.off+e.n])
		if _, err := s.codec.open(e.d, obj, int(e.plain)); err == nil {
			good = append(good, e)
		}
	}
	pk := s.pk
	pk.mu.Lock()
	defer pk.mu.Unlock()
	p := pk.known(id, o)
	pk.rebuilt = true
	for _, e := range good {
		if !pk.isBad(p, e.d) {
			pk.add(e.d, chunkLoc{p: p, off: e.off, n: e.n, plain: e.plain})
		}
	}
	return nil
}

// putPacked seals chunk d's object into the open pack, and writes the
// packs that this made ready.
func (s *Store) putPacked(ctx context.Context, d Digest, plain []byte) (int64, error) {
	if err := s.loadPacks(ctx); err != nil {
		return 0, err
	}
	pk := s.pk
	pk.mu.Lock()
	_, present := pk.index[d]
	loose := pk.loose
	pk.mu.Unlock()
	if present {
		return 0, nil
	}
	if loose {
		if ok, err := s.hasLoose(ctx, d); err != nil || ok {
			return 0, err
		}
	}
	buf := s.codec.getBuf(sealHeaderLen + len(plain) + tagLen)
	defer s.codec.putBuf(buf)
	var p *pack
	var off int
	var ready []*pack
	body := s.codec.sealTo(d, plain, buf, func(n int) []byte {
		pk.mu.Lock()
		defer pk.mu.Unlock()
		p, off, ready = pk.reserve(n)
		return p.buf[off : off+n : off+n]
	})

	pk.mu.Lock()
	e := packEntry{d: d, off: uint32(off), n: uint32(len(body)), plain: uint32(len(plain))}
	p.entries = append(p.entries, e)
	pk.index[d] = chunkLoc{p: p, off: e.off, n: e.n, plain: e.plain}
	p.filling--
	if p.closed && p.filling == 0 {
		pk.seal(p)
		ready = append(ready, p)
	}
	pk.mu.Unlock()
	for _, r := range ready {
		if err := s.writePack(ctx, r); err != nil {
			// The pack stays sealed in memory; the next Flush writes it.
			return int64(len(body)), err
		}
	}
	return int64(len(body)), nil
}

// reserve returns n bytes at off in the open pack p for a Put to fill,
// opening a pack if there is none or the open one has no room, and
// closing it once it reaches the pack size. It returns the packs it
// sealed (closed with no Put filling them), for the caller to write.
// Called with mu held.
func (pk *packState) reserve(n int) (p *pack, off int, ready []*pack) {
	if p = pk.open; p != nil && len(p.buf)+n+tocRoom(p.reserved+1) > cap(p.buf) {
		if pk.close(p) {
			ready = append(ready, p)
		}
		p = nil
	}
	if p == nil {
		p = &pack{buf: pk.newBuf(n), ready: make(chan struct{})}
		pk.open = p
	}
	off = len(p.buf)
	p.buf = p.buf[:off+n]
	p.reserved++
	p.filling++
	if int64(len(p.buf)) >= pk.size {
		pk.close(p) // p.filling > 0: the last Put to fill it seals it
	}
	return p, off, ready
}

// close ends reservations in the open pack p and seals it if no Put is
// filling it, reporting whether it did. Called with mu held.
func (pk *packState) close(p *pack) bool {
	pk.open, p.closed = nil, true
	if p.filling == 0 {
		pk.seal(p)
		return true
	}
	pk.closing = append(pk.closing, p)
	return false
}

// seal appends the table of closed pack p, whose reservations are all
// filled, and adds it to the packs to write. Called with mu held.
func (pk *packState) seal(p *pack) {
	// Entries in the order of their objects, as a pack's table lists
	// them; Puts fill their reservations in any order.
	slices.SortFunc(p.entries, func(a, b packEntry) int { return int(a.off) - int(b.off) })
	p.buf = appendTOC(p.buf, p.entries)
	pk.closing = slices.DeleteFunc(pk.closing, func(q *pack) bool { return q == p })
	pk.sealed = append(pk.sealed, p)
	close(p.ready)
}

// writePack writes sealed pack p, once.
func (s *Store) writePack(ctx context.Context, p *pack) error {
	pk := s.pk
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	pk.mu.Lock()
	written, body := p.written, p.buf
	pk.mu.Unlock()
	if written {
		return nil
	}
	id := newPackID()
	key := PackKey(id)
	if err := s.backend.Write(ctx, key, body, false); err != nil {
		return backendErr("PackPutFailed", key, err)
	}
	pk.mu.Lock()
	p.id, p.written, p.size, p.buf = id, true, int64(len(body)), nil
	pk.byID[id] = p
	pk.mu.Unlock()
	pk.freeBuf(body)
	s.wrote(len(body))
	return nil
}

// flushPacks makes every chunk Put so far durable: it seals the open pack,
// writes the packs not yet written, makes them durable (one Sync for the
// lot), and then writes one pack index naming their chunks. A pack that
// fails to write stays in memory and the next flush tries again, so a
// flush that returns nil covers every chunk a Put, or a dedup hit on a
// chunk not yet durable, has returned before it.
//
// It reports whether it synced: with nothing to write it does not.
func (s *Store) flushPacks(ctx context.Context) (bool, error) {
	if err := s.loadPacks(ctx); err != nil {
		return false, err
	}
	pk := s.pk
	pk.flushMu.Lock()
	defer pk.flushMu.Unlock()
	pk.mu.Lock()
	if p := pk.open; p != nil {
		pk.close(p)
	}
	filling := slices.Clone(pk.closing)
	pk.mu.Unlock()
	// Puts still filling a closed pack have not returned, so the flush
	// need not cover them; but their packs hold chunks that Puts before
	// the flush did return, so it waits for them to be sealed.
	for _, p := range filling {
		select {
		case <-p.ready:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	pk.mu.Lock()
	todo := slices.Clone(pk.sealed)
	pk.mu.Unlock()
	if len(todo) == 0 {
		return false, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, p := range todo {
		g.Go(func() error { return s.writePack(gctx, p) })
	}
	if err := g.Wait(); err != nil {
		return false, err
	}
	// The packs before the index that names them. The index itself
	// needs no sync of its own: lost, it is rebuilt from the packs'
	// tables; the Sync after the next snapshot index covers it anyway.
	if err := s.syncRaw(ctx); err != nil {
		return false, err
	}
	var x packIndex
	pk.mu.Lock()
	for _, p := range todo {
		x.packs = append(x.packs, packIndexPack{id: p.id, entries: p.entries})
	}
	pk.mu.Unlock()
	body := x.marshal()
	key := packIndexKey(body)
	if err := s.backend.Write(ctx, key, body, false); err != nil {
		return true, backendErr("PackIndexPutFailed", key, err)
	}
	pk.mu.Lock()
	for _, p := range todo {
		p.durable, p.entries = true, nil
	}
	pk.sealed = pk.sealed[len(todo):]
	pk.indexObjs[key] = true
	pk.mu.Unlock()
	return true, nil
}

// syncRaw is Sync without the flush.
func (s *Store) syncRaw(ctx context.Context) error {
	if s.sync == nil {
		return nil
	}
	if err := s.sync(ctx); err != nil {
		return errs.E(errs.Internal, "ChunkSyncFailed", "making chunks durable").Wrap(err)
	}
	return nil
}

// lookup returns where chunk d is in a pack, and, if that pack is still
// in memory, a copy of its object in buf's storage.
func (s *Store) lookup(d Digest, buf []byte) (chunkLoc, []byte, bool) {
	pk := s.pk
	pk.mu.Lock()
	defer pk.mu.Unlock()
	loc, ok := pk.index[d]
	if !ok {
		return chunkLoc{}, nil, false
	}
	if loc.p.buf != nil {
		return loc, append(buf[:0], loc.p.buf[loc.off:loc.off+loc.n]...), true
	}
	return loc, nil, true
}

// readPacked returns chunk d's object from its pack, reading into buf
// (nil: allocate). ok is false if no pack holds d. A pack deleted under
// the read (GC moved the chunk) is looked up again.
func (s *Store) readPacked(ctx context.Context, d Digest, buf []byte) (body []byte, loc chunkLoc, ok bool, err error) {
	if err := s.loadPacks(ctx); err != nil {
		return nil, chunkLoc{}, false, err
	}
	for attempt := 0; ; attempt++ {
		loc, mem, ok := s.lookup(d, buf)
		if !ok {
			return nil, chunkLoc{}, false, nil
		}
		if mem != nil {
			return mem, loc, true, nil
		}
		key := PackKey(loc.p.id)
		body, err := s.backend.ReadRange(ctx, key, int64(loc.off), int64(loc.n), buf)
		if errors.Is(err, ErrObjectNotFound) && attempt < 2 {
			if again, _, ok := s.lookup(d, nil); ok && again != loc {
				continue // repacked meanwhile
			}
		}
		if err != nil {
			return nil, loc, true, err
		}
		return body, loc, true, nil
	}
}

// missingPacked is called when neither a pack nor a version-1 object
// holds d: another process may have written it since this one loaded its
// pack index. It refreshes the index once and reports whether d turned up.
func (s *Store) missingPacked(ctx context.Context, d Digest) (bool, error) {
	pk := s.pk
	pk.mu.Lock()
	seen := pk.refreshes
	pk.mu.Unlock()
	if err := s.refresh(ctx, seen); err != nil {
		return false, err
	}
	pk.mu.Lock()
	_, ok := pk.index[d]
	pk.mu.Unlock()
	return ok, nil
}

// markBad records in a pack index that the object of d in loc's pack is
// corrupt, and drops it from the index, so Has reports d absent and the
// next Put stores it afresh.
func (s *Store) markBad(ctx context.Context, d Digest, loc chunkLoc) error {
	pk := s.pk
	x := packIndex{packs: []packIndexPack{{id: loc.p.id, entries: []packEntry{{d: d, off: loc.off, n: loc.n, plain: loc.plain, flags: entryBad}}}}}
	body := x.marshal()
	key := packIndexKey(body)
	if err := s.backend.Write(ctx, key, body, false); err != nil {
		return backendErr("ChunkQuarantineFailed", key, err)
	}
	pk.mu.Lock()
	defer pk.mu.Unlock()
	pk.indexObjs[key] = true
	pk.bad(loc.p, d)
	pk.drop(d, loc.p)
	return nil
}

// PackChunk is a chunk of a pack as ListPacks reports it.
type PackChunk struct {
	Digest Digest
	Stored int64 // the object's size in the pack
}

// PackInfo describes a durable pack, for garbage collection.
type PackInfo struct {
	ID      PackID
	Size    int64     // the pack object's size
	ModTime time.Time // when it was written
	// Chunks are the chunks the pack index finds in this pack. The rest
	// of Size is the pack's table and chunks that are dead: superseded by
	// a copy in another pack, or found corrupt.
	Chunks []PackChunk
}

// ListPacks re-reads the bucket's pack indexes and calls fn for every
// durable pack, in no particular order; packs this process has not made
// durable yet are left out. It stops at the first error fn returns and
// returns it. A store of the version-1 layout has no packs.
func (s *Store) ListPacks(ctx context.Context, fn func(PackInfo) error) error {
	if s.pk == nil {
		return nil
	}
	if err := s.loadPacks(ctx); err != nil {
		return err
	}
	pk := s.pk
	pk.mu.Lock()
	seen := pk.refreshes
	pk.mu.Unlock()
	if err := s.refresh(ctx, seen); err != nil {
		return err
	}
	pk.mu.Lock()
	infos := map[*pack]*PackInfo{}
	for _, p := range pk.byID {
		if p.durable {
			infos[p] = &PackInfo{ID: p.id, Size: p.size, ModTime: p.modTime}
		}
	}
	for d, loc := range pk.index {
		if in, ok := infos[loc.p]; ok {
			in.Chunks = append(in.Chunks, PackChunk{Digest: d, Stored: int64(loc.n)})
		}
	}
	pk.mu.Unlock()
	for _, in := range infos {
		if err := fn(*in); err != nil {
			return err
		}
	}
	return nil
}

// RewritePack removes the chunks drop from pack id. The chunks the index
// finds in it now, drop aside, are kept: if there are none the pack is
// deleted; otherwise they are copied, as they are and in their order, to
// a new pack, which is made durable and indexed (naming id as
// superseded) before id is deleted. A crash in between leaves both
// packs, and the next load counts only the new one, or, if the new
// pack's index was lost, the old one and a duplicate that the next
// collection deletes. The caller guarantees that nothing will name the
// chunks of drop (garbage collection claims them). A kept chunk that
// fails its check is quarantined, not copied. It returns the bytes freed.
//
// Which chunks are kept is decided here, under the store's lock, and not
// by the caller's listing, which an earlier rewrite may have outdated.
func (s *Store) RewritePack(ctx context.Context, id PackID, drop []Digest) (int64, error) {
	if s.pk == nil {
		return 0, errs.E(errs.Invalid, "NoPacks", "the store does not use packs")
	}
	pk := s.pk
	pk.flushMu.Lock()
	defer pk.flushMu.Unlock()
	dropped := map[Digest]bool{}
	for _, d := range drop {
		dropped[d] = true
	}
	pk.mu.Lock()
	old := pk.byID[id]
	var kept []chunkLoc
	var keptD []Digest
	if old != nil {
		for d, loc := range pk.index {
			if loc.p == old && !dropped[d] {
				kept = append(kept, loc)
				keptD = append(keptD, d)
			}
		}
	}
	pk.mu.Unlock()
	order := make([]int, len(kept))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return int(kept[a].off) - int(kept[b].off) })
	if old == nil || !old.durable {
		return 0, errs.E(errs.NotFound, "PackNotFound", "pack %s is not a durable pack of this store", id)
	}
	key := PackKey(id)
	if len(kept) == 0 {
		return s.dropPack(ctx, old)
	}

	body, err := s.backend.Read(ctx, key, nil)
	if err != nil {
		return 0, backendErr("PackGetFailed", key, err)
	}
	np := &pack{buf: directio.AlignedBuf(len(body))[:packHeaderLen]}
	copy(np.buf, packMagic)
	for _, i := range order {
		loc, d := kept[i], keptD[i]
		if int(loc.off+loc.n) > len(body) {
			continue // the pack is short: nothing to copy; reads report it
		}
		obj := body[loc.off : loc.off+loc.n]
		if _, err := s.codec.open(d, slices.Clone(obj), int(loc.plain)); isCorrupt(err) {
			// Evidence for verify; the chunk is absent from now on.
			if err := s.backend.Write(ctx, QuarantineKey(d), obj, false); err != nil {
				return 0, backendErr("ChunkQuarantineFailed", QuarantineKey(d), err)
			}
			continue
		}
		off := len(np.buf)
		np.buf = grow(np.buf, obj)
		np.entries = append(np.entries, packEntry{d: d, off: uint32(off), n: loc.n, plain: loc.plain})
	}
	if len(np.entries) == 0 {
		return s.dropPack(ctx, old)
	}
	np.buf = appendTOC(np.buf, np.entries)
	nbody := np.buf
	if len(np.entries) == len(kept) && int64(len(nbody)) == old.size {
		return 0, nil // nothing to drop: the same bytes again
	}
	np.id = newPackID()
	nkey := PackKey(np.id)
	if err := s.backend.Write(ctx, nkey, nbody, false); err != nil {
		return 0, backendErr("PackPutFailed", nkey, err)
	}
	if err := s.syncRaw(ctx); err != nil {
		return 0, err
	}
	x := packIndex{packs: []packIndexPack{{id: np.id, entries: np.entries}}, superseded: []PackID{id}}
	xb := x.marshal()
	xkey := packIndexKey(xb)
	if err := s.backend.Write(ctx, xkey, xb, false); err != nil {
		return 0, backendErr("PackIndexPutFailed", xkey, err)
	}
	// Durable before the old pack goes: lost, the new pack would be
	// rebuilt from its table, but the old one's chunks found corrupt
	// would be forgotten with the superseding record.
	if err := s.syncRaw(ctx); err != nil {
		return 0, err
	}
	pk.mu.Lock()
	np.written, np.durable, np.size, np.buf = true, true, int64(len(nbody)), nil
	np.modTime = old.modTime // refreshed from the listing at the next refresh
	pk.byID[np.id] = np
	pk.indexObjs[xkey] = true
	pk.superseded[id] = true
	pk.forget(old)
	for _, e := range np.entries {
		pk.index[e.d] = chunkLoc{p: np, off: e.off, n: e.n, plain: e.plain}
	}
	pk.mu.Unlock()
	np.entries = nil
	if err := s.backend.Delete(ctx, key); err != nil {
		return 0, backendErr("PackDeleteFailed", key, err)
	}
	return old.size - int64(len(nbody)), nil
}

// dropPack deletes a pack none of whose chunks is kept, and returns the
// bytes it freed.
func (s *Store) dropPack(ctx context.Context, p *pack) (int64, error) {
	key := PackKey(p.id)
	if err := s.backend.Delete(ctx, key); err != nil {
		return 0, backendErr("PackDeleteFailed", key, err)
	}
	s.pk.mu.Lock()
	s.pk.forget(p)
	s.pk.mu.Unlock()
	return p.size, nil
}

// CompactPackIndexes replaces the pack index objects with one that names
// every durable chunk this process knows, once it is durable, so the
// objects a load reads stay few. It returns how many it replaced.
func (s *Store) CompactPackIndexes(ctx context.Context) (int, error) {
	if s.pk == nil {
		return 0, nil
	}
	if err := s.loadPacks(ctx); err != nil {
		return 0, err
	}
	pk := s.pk
	pk.flushMu.Lock()
	defer pk.flushMu.Unlock()
	var old []string
	err := s.backend.List(ctx, packIndexPrefix, func(o Object) error {
		old = append(old, o.Key)
		return nil
	})
	if err != nil {
		return 0, backendErr("PackListFailed", packIndexPrefix, err)
	}
	pk.mu.Lock()
	// Only objects already loaded: one written since holds entries this
	// snapshot of the index may lack.
	old = slices.DeleteFunc(old, func(k string) bool { return !pk.indexObjs[k] })
	parts := map[*pack][]packEntry{}
	for _, p := range pk.byID {
		if p.durable {
			parts[p] = nil
		}
	}
	for d, loc := range pk.index {
		if es, ok := parts[loc.p]; ok {
			parts[loc.p] = append(es, packEntry{d: d, off: loc.off, n: loc.n, plain: loc.plain})
		}
	}
	var x packIndex
	for p, es := range parts {
		// A pack with no live entry stays named, so a load does not take
		// it for one whose index was lost and read it whole.
		x.packs = append(x.packs, packIndexPack{id: p.id, entries: es})
	}
	for id := range pk.superseded {
		// Only while the pack is still there: once GC has deleted it, the
		// record has nothing left to suppress.
		if _, ok := pk.byID[id]; ok {
			x.superseded = append(x.superseded, id)
		}
	}
	rebuilt := pk.rebuilt
	pk.rebuilt = false
	pk.mu.Unlock()
	if len(old) <= 1 && !rebuilt {
		return 0, nil
	}
	for i := range x.packs {
		slices.SortFunc(x.packs[i].entries, func(a, b packEntry) int { return int(a.off) - int(b.off) })
	}
	body := x.marshal()
	key := packIndexKey(body)
	err = s.backend.Write(ctx, key, body, false)
	if err == nil {
		err = s.syncRaw(ctx)
	}
	if err != nil {
		pk.mu.Lock()
		pk.rebuilt = pk.rebuilt || rebuilt // the next compaction tries again
		pk.mu.Unlock()
		return 0, backendErr("PackIndexPutFailed", key, err)
	}
	n := 0
	for _, k := range old {
		if k == key {
			continue
		}
		if err := s.backend.Delete(ctx, k); err != nil {
			return n, backendErr("PackIndexDeleteFailed", k, err)
		}
		n++
	}
	pk.mu.Lock()
	for _, k := range old {
		delete(pk.indexObjs, k)
	}
	pk.indexObjs[key] = true
	pk.mu.Unlock()
	return n, nil
}

// Location is where a chunk's object is: Key, bytes [Off, Off+Len).
type Location struct {
	Key      string
	Off, Len int64
}

// Locate returns where chunk d's object is, for tests and tools that
// inspect the bucket. A chunk not yet durable (see Sync) is
// errs.Conflict "ChunkNotDurable"; one stored nowhere is errs.NotFound.
func (s *Store) Locate(ctx context.Context, d Digest) (Location, error) {
	if s.pk != nil {
		if err := s.loadPacks(ctx); err != nil {
			return Location{}, err
		}
		pk := s.pk
		pk.mu.Lock()
		loc, ok := pk.index[d]
		pk.mu.Unlock()
		if ok {
			if !loc.p.written {
				return Location{}, errs.E(errs.Conflict, "ChunkNotDurable", "chunk %s is not written yet", d)
			}
			return Location{Key: PackKey(loc.p.id), Off: int64(loc.off), Len: int64(loc.n)}, nil
		}
	}
	key := ChunkKey(d)
	ok, err := s.backend.Exists(ctx, key)
	if err != nil {
		return Location{}, backendErr("ChunkStatFailed", key, err)
	}
	if !ok {
		return Location{}, errs.E(errs.NotFound, "ChunkNotFound", "chunk %s is not stored", d)
	}
	var size int64
	err = s.backend.List(ctx, key, func(o Object) error {
		if o.Key == key {
			size = o.Size
		}
		return nil
	})
	if err != nil {
		return Location{}, backendErr("ChunkStatFailed", key, err)
	}
	return Location{Key: key, Len: size}, nil
}
