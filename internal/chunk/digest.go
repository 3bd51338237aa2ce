package chunk

import (
	"encoding/hex"

	"github.com/zeebo/blake3"

	"github.com/coffer-backup/coffer/internal/errs"
)

// Digest names a chunk: the BLAKE3-256 hash of its plaintext.
type Digest [32]byte

// ZeroDigest stands for a chunk of any length whose bytes are all zero. It is
// a reserved value, not the hash of anything: such chunks are never stored,
// and reading one costs no I/O. (A real chunk hashing to 32 zero bytes would
// take a 2^-256 accident.)
var ZeroDigest Digest

// Sum returns the digest of plain. An all-zero plain still hashes to its
// real BLAKE3 value; Store.Put is what maps it to ZeroDigest.
func Sum(plain []byte) Digest { return Digest(blake3.Sum256(plain)) }

// IsZero reports whether d is ZeroDigest.
func (d Digest) IsZero() bool { return d == ZeroDigest }

// String is the lowercase hex form used in object keys and logs.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ParseDigest parses the 64-character lowercase hex form String returns.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, errs.E(errs.Invalid, "InvalidDigest", "digest %q is not %d hex characters", s, 2*len(d))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return d, errs.E(errs.Invalid, "InvalidDigest", "digest %q is not lowercase hex", s)
		}
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, errs.E(errs.Invalid, "InvalidDigest", "digest %q is not hex", s).Wrap(err)
	}
	return d, nil
}

// allZero reports whether b holds only zero bytes. It compares against a
// zero block rather than looping byte by byte: bytes.Equal runs at memory
// speed, so zero elision costs next to nothing next to hashing.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if string(b[:n]) != string(zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// zeroBlock is read-only: compared against, never written.
var zeroBlock [64 << 10]byte
