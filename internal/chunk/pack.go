package chunk

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strings"

	"github.com/zeebo/blake3"

	"github.com/coffer-backup/coffer/internal/errs"
)

// The pack and pack index layouts; docs/chunk-format.md ("Packs") is the
// reference.
const (
	packPrefix      = "packs/"
	packIndexPrefix = "packindex/"

	packMagic      = "CFP1"
	packHeaderLen  = 8  // magic, 4 reserved bytes
	packEntryLen   = 48 // digest, offset, length, plaintext length, flags
	packFooterLen  = 40 // entry count, BLAKE3 of the table, magic
	packIndexMagic = "CFX1"

	// DefaultPackSize is the size a pack is written at once it reaches it:
	// restic's default, which keeps S3 requests per GiB at 64 while a
	// restore's ranged reads stay one chunk each.
	DefaultPackSize = 16 << 20
	// MaxPackSize bounds Options.PackSize: offsets in a pack are uint32.
	MaxPackSize = 1 << 30

	// entryBad marks, in a pack index, a chunk found corrupt and
	// quarantined: the pack still holds it, nothing may read it.
	entryBad uint32 = 1
)

// PackID names a pack: 32 random bytes.
type PackID [32]byte

func (id PackID) String() string { return hex.EncodeToString(id[:]) }

// PackKey is the object key of pack id: packs/<first 2 hex>/<hex>.
func PackKey(id PackID) string {
	h := id.String()
	return packPrefix + h[:2] + "/" + h
}

func parsePackKey(key string) (PackID, bool) {
	rest, ok := strings.CutPrefix(key, packPrefix)
	if !ok || len(rest) != 2+1+64 || rest[2] != '/' || rest[:2] != rest[3:5] {
		return PackID{}, false
	}
	d, err := ParseDigest(rest[3:])
	return PackID(d), err == nil
}

// packEntry places one chunk object in a pack.
type packEntry struct {
	d      Digest
	off, n uint32 // the sealed object's bytes in the pack
	plain  uint32 // its plaintext length
	flags  uint32 // entryBad, in a pack index only
}

// appendTOC appends the pack's table of contents and footer to body (the
// header and the chunk objects) and returns the finished pack.
func appendTOC(body []byte, entries []packEntry) []byte {
	start := len(body)
	for _, e := range entries {
		body = appendEntry(body, e)
	}
	sum := blake3.Sum256(body[start:])
	body = binary.LittleEndian.AppendUint32(body, uint32(len(entries)))
	body = append(body, sum[:]...)
	return append(body, packMagic...)
}

func appendEntry(b []byte, e packEntry) []byte {
	b = append(b, e.d[:]...)
	b = binary.LittleEndian.AppendUint32(b, e.off)
	b = binary.LittleEndian.AppendUint32(b, e.n)
	b = binary.LittleEndian.AppendUint32(b, e.plain)
	return binary.LittleEndian.AppendUint32(b, e.flags)
}

func readEntry(b []byte) packEntry {
	le := binary.LittleEndian
	var e packEntry
	copy(e.d[:], b[:32])
	e.off, e.n, e.plain, e.flags = le.Uint32(b[32:]), le.Uint32(b[36:]), le.Uint32(b[40:]), le.Uint32(b[44:])
	return e
}

// maxObjectLen bounds a sealed chunk object: the plaintext, stored
// uncompressed when zstd does not shrink it, plus header and GCM tag.
const maxObjectLen = MaxChunkSize + 48

// plausible reports whether e could place a chunk object: at or after the
// pack header, no longer than the largest object, naming no flag but
// entryBad. Without it a damaged (or forged) index could send a read for
// gigabytes.
func (e packEntry) plausible() bool {
	return e.off >= packHeaderLen && e.n <= maxObjectLen && e.plain <= MaxChunkSize && e.flags&^entryBad == 0
}

func packCorrupt(id PackID, format string, args ...any) error {
	return errs.E(errs.Internal, "PackCorrupt", "pack %s: "+format, append([]any{id}, args...)...)
}

// parsePack reads the table of contents of a whole pack: what rebuilding
// a lost pack index does. Entries must lie between the header and the
// table and not overlap.
func parsePack(id PackID, body []byte) ([]packEntry, error) {
	if len(body) < packHeaderLen+packFooterLen || string(body[:4]) != packMagic || string(body[len(body)-4:]) != packMagic {
		return nil, packCorrupt(id, "no %s header and footer", packMagic)
	}
	foot := body[len(body)-packFooterLen:]
	count := int(binary.LittleEndian.Uint32(foot))
	tocStart := len(body) - packFooterLen - count*packEntryLen
	if count < 0 || tocStart < packHeaderLen {
		return nil, packCorrupt(id, "%d entries do not fit", count)
	}
	toc := body[tocStart : len(body)-packFooterLen]
	if sum := blake3.Sum256(toc); !bytes.Equal(sum[:], foot[4:36]) {
		return nil, packCorrupt(id, "table checksum mismatch")
	}
	entries := make([]packEntry, count)
	end := uint32(packHeaderLen)
	for i := range entries {
		e := readEntry(toc[i*packEntryLen:])
		if e.off < end || uint64(e.off)+uint64(e.n) > uint64(tocStart) || e.flags != 0 || !e.plausible() {
			return nil, packCorrupt(id, "entry %d out of place", i)
		}
		end = e.off + e.n
		entries[i] = e
	}
	return entries, nil
}

// packIndexPack is one pack's part of a pack index object.
type packIndexPack struct {
	id      PackID
	entries []packEntry
}

// packIndex is the content of one pack index object: the chunks of some
// packs, and the packs it supersedes (whose entries no longer count).
type packIndex struct {
	packs      []packIndexPack
	superseded []PackID
}

// marshal encodes x:
//
//	"CFX1", uint32 version 1, uint32 P packs, uint32 S superseded,
//	P times: 32-byte pack id, uint32 n, n 48-byte entries,
//	S times: 32-byte pack id,
//	BLAKE3 of all that.
func (x *packIndex) marshal() []byte {
	b := []byte(packIndexMagic)
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(x.packs)))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(x.superseded)))
	for _, p := range x.packs {
		b = append(b, p.id[:]...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p.entries)))
		for _, e := range p.entries {
			b = appendEntry(b, e)
		}
	}
	for _, id := range x.superseded {
		b = append(b, id[:]...)
	}
	sum := blake3.Sum256(b)
	return append(b, sum[:]...)
}

func unmarshalPackIndex(b []byte) (packIndex, error) {
	var x packIndex
	bad := func(why string) (packIndex, error) {
		return packIndex{}, errs.E(errs.Internal, "PackIndexCorrupt", "pack index: %s", why)
	}
	if len(b) < 16+32 || string(b[:4]) != packIndexMagic {
		return bad("no " + packIndexMagic + " header")
	}
	body, sum := b[:len(b)-32], b[len(b)-32:]
	if want := blake3.Sum256(body); !bytes.Equal(want[:], sum) {
		return bad("checksum mismatch")
	}
	le := binary.LittleEndian
	if le.Uint32(body[4:]) != 1 {
		return bad("unknown version")
	}
	np, ns := int(le.Uint32(body[8:])), int(le.Uint32(body[12:]))
	rest := body[16:]
	for range np {
		if len(rest) < 36 {
			return bad("truncated")
		}
		p := packIndexPack{id: PackID(rest[:32])}
		n := int(le.Uint32(rest[32:]))
		rest = rest[36:]
		if n < 0 || len(rest) < n*packEntryLen {
			return bad("truncated")
		}
		p.entries = make([]packEntry, n)
		for i := range p.entries {
			if p.entries[i] = readEntry(rest[i*packEntryLen:]); !p.entries[i].plausible() {
				return bad("entry out of place")
			}
		}
		rest = rest[n*packEntryLen:]
		x.packs = append(x.packs, p)
	}
	if len(rest) != ns*32 {
		return bad("length mismatch")
	}
	for i := range ns {
		x.superseded = append(x.superseded, PackID(rest[i*32:]))
	}
	return x, nil
}

// packIndexKey is the object key of a pack index: named by its content,
// so writing it again (a retry) writes the same object.
func packIndexKey(body []byte) string {
	return packIndexPrefix + hex.EncodeToString(func() []byte { s := blake3.Sum256(body); return s[:] }())
}
