package chunk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/zeebo/blake3"

	"github.com/coffer-backup/coffer/internal/errs"
)

// FuzzPackFormats feeds arbitrary bytes to the two parsers of what packs
// leave in a bucket: a pack's table (read when a pack index is lost) and a
// pack index. Checksums are recomputed over the fuzzed bytes, so the
// parsers see damage a checksum does not catch (a forged object) as well as
// damage it does. Whatever the input, the answer is a PackCorrupt or
// PackIndexCorrupt error or entries that could only place real objects;
// an accepted index re-encodes to itself.
func FuzzPackFormats(f *testing.F) {
	body := append([]byte(packMagic), 0, 0, 0, 0)
	obj := bytes.Repeat([]byte{7}, 100)
	e := packEntry{d: Digest{1}, off: uint32(len(body)), n: uint32(len(obj)), plain: 100}
	pack := appendTOC(append(body, obj...), []packEntry{e})
	x := packIndex{packs: []packIndexPack{{id: PackID{2}, entries: []packEntry{e, {d: Digest{3}, off: 108, n: 5, plain: 5, flags: entryBad}}}},
		superseded: []PackID{{4}}}
	index := x.marshal()
	f.Add(pack, false)
	f.Add(index[:len(index)-32], true)
	f.Add([]byte(packMagic+packMagic), false)

	f.Fuzz(func(t *testing.T, b []byte, asIndex bool) {
		if asIndex {
			sum := blake3.Sum256(b)
			whole := append(bytes.Clone(b), sum[:]...)
			x, err := unmarshalPackIndex(whole)
			if err != nil {
				if code(err) != "PackIndexCorrupt" {
					t.Fatalf("pack index refused with %v", err)
				}
				return
			}
			for _, p := range x.packs {
				for _, e := range p.entries {
					if !e.plausible() {
						t.Fatalf("accepted entry %+v", e)
					}
				}
			}
			if again := x.marshal(); !bytes.Equal(again, whole) {
				t.Fatal("an accepted pack index does not re-encode to itself")
			}
			return
		}
		for _, fix := range []bool{false, true} {
			pb := bytes.Clone(b)
			if fix && len(pb) >= packHeaderLen+packFooterLen {
				// Make the table checksum right for whatever count says.
				foot := pb[len(pb)-packFooterLen:]
				count := int(binary.LittleEndian.Uint32(foot))
				if start := len(pb) - packFooterLen - count*packEntryLen; count >= 0 && start >= 0 {
					sum := blake3.Sum256(pb[start : len(pb)-packFooterLen])
					copy(foot[4:36], sum[:])
				}
			}
			entries, err := parsePack(PackID{}, pb)
			if err != nil {
				if code(err) != "PackCorrupt" {
					t.Fatalf("pack refused with %v", err)
				}
				continue
			}
			tocStart := len(pb) - packFooterLen - len(entries)*packEntryLen
			end := uint32(packHeaderLen)
			for _, e := range entries {
				if !e.plausible() || e.off < end || int64(e.off)+int64(e.n) > int64(tocStart) {
					t.Fatalf("accepted entry %+v in a %d-byte pack", e, len(pb))
				}
				end = e.off + e.n
			}
		}
	})
}

// code is the ARM code of an internal error, "" for any other error.
func code(err error) string {
	var e *errs.Error
	if errors.As(err, &e) && e.Kind == errs.Internal {
		return e.Code
	}
	return ""
}
