package chunk

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"

	"github.com/coffer-backup/coffer/internal/directio"
	"github.com/coffer-backup/coffer/internal/errs"
)

// The chunk object layout; docs/chunk-format.md is the reference.
const (
	chunkMagic = "CFC1"

	flagCompressed byte = 1 << 0 // payload is one zstd frame
	flagEncrypted  byte = 1 << 1 // payload is AES-256-GCM sealed
	knownFlags          = flagCompressed | flagEncrypted

	plainHeaderLen = 12 // magic, flags, 3 reserved, uint32 length
	keyIDLen       = 8  // which key sealed the chunk, for a clear error
	nonceLen       = 12 // GCM standard nonce
	sealHeaderLen  = plainHeaderLen + keyIDLen + nonceLen
	tagLen         = 16 // GCM tag
	adLen          = plainHeaderLen + keyIDLen + len(Digest{})
	keyIDContext   = "coffer chunk key id v1"
)

// MaxChunkSize bounds the plaintext of one chunk. It keeps a corrupt or
// hostile length field from making Get allocate without limit.
const MaxChunkSize = 16 << 20

// codec turns plaintext into object bodies and back. It holds no per-call
// state: the zstd encoder and decoder are safe for concurrent EncodeAll and
// DecodeAll, cipher.AEAD is safe for concurrent use, and bodies come from a
// pool.
type codec struct {
	enc   *zstd.Encoder
	dec   *zstd.Decoder
	aead  cipher.AEAD // nil when chunks are stored in the clear
	keyID [keyIDLen]byte
	bufs  sync.Pool // *[]byte, bodies for Put
}

func newCodec(key []byte) (*codec, error) {
	n := runtime.GOMAXPROCS(0)
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(n),
		zstd.WithEncoderCRC(false), // BLAKE3 on read and the GCM tag already check the bytes
	)
	if err != nil {
		return nil, errs.E(errs.Internal, "ChunkCodec", "zstd encoder").Wrap(err)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(n),
		zstd.WithDecoderMaxMemory(MaxChunkSize),
	)
	if err != nil {
		return nil, errs.E(errs.Internal, "ChunkCodec", "zstd decoder").Wrap(err)
	}
	c := &codec{enc: enc, dec: dec}
	if key != nil {
		if len(key) != KeySize {
			return nil, errs.E(errs.Invalid, "InvalidChunkKey", "chunk key is %d bytes, want %d", len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, errs.E(errs.Internal, "ChunkCodec", "aes").Wrap(err)
		}
		if c.aead, err = cipher.NewGCM(block); err != nil {
			return nil, errs.E(errs.Internal, "ChunkCodec", "gcm").Wrap(err)
		}
		var id [32]byte
		blake3.DeriveKey(keyIDContext, key, id[:])
		copy(c.keyID[:], id[:])
	}
	return c, nil
}

func (c *codec) close() {
	c.enc.Close()
	c.dec.Close()
}

// getBuf returns a pooled buffer with capacity for n bytes, aligned for
// direct I/O (direct.go); putBuf returns it.
func (c *codec) getBuf(n int) *[]byte {
	if p, ok := c.bufs.Get().(*[]byte); ok && cap(*p) >= n {
		return p
	}
	b := directio.AlignedBuf(n)
	return &b
}

func (c *codec) putBuf(p *[]byte) { c.bufs.Put(p) }

// seal builds the object body for plain, whose digest is d, in *buf. The
// result aliases *buf.
func (c *codec) seal(d Digest, plain []byte, buf *[]byte) []byte {
	return c.sealTo(d, plain, buf, func(n int) []byte { return (*buf)[:n] })
}

// sealTo builds the object body for plain, whose digest is d, in the n
// bytes place(n) returns, and returns them. *buf is scratch space for the
// compressed payload. The plaintext is read once by the encoder, or, when
// the sample says it will not shrink (worthCompressing) or it did not,
// once by AES-GCM, which writes the ciphertext straight into the body.
// place is called once, when the body's length is known, so a pack can
// hand out its own bytes and the body is never copied after it is sealed.
func (c *codec) sealTo(d Digest, plain []byte, buf *[]byte, place func(n int) []byte) []byte {
	hdr := plainHeaderLen
	if c.aead != nil {
		hdr = sealHeaderLen
	}
	need := hdr + max(len(plain), c.enc.MaxEncodedSize(len(plain))) + tagLen
	if cap(*buf) < need {
		*buf = directio.AlignedBuf(need)
	}

	flags := byte(0)
	payload := plain // what is sealed or stored
	if worthCompressing(plain) {
		if z := c.enc.EncodeAll(plain, (*buf)[hdr:hdr]); len(z) < len(plain) {
			flags |= flagCompressed
			payload = z // in *buf: need covers the encoder's bound
		}
	}
	n := hdr + len(payload)
	if c.aead != nil {
		n += tagLen
	}
	b := place(n)

	copy(b[0:4], chunkMagic)
	b[5], b[6], b[7] = 0, 0, 0
	binary.LittleEndian.PutUint32(b[8:12], uint32(len(plain)))
	if c.aead == nil {
		b[4] = flags
		if len(payload) > 0 && &payload[0] != &b[hdr] { // not already in the body
			copy(b[hdr:], payload)
		}
		return b
	}
	b[4] = flags | flagEncrypted
	copy(b[plainHeaderLen:], c.keyID[:])
	nonce := b[plainHeaderLen+keyIDLen : sealHeaderLen]
	if _, err := rand.Read(nonce); err != nil {
		panic("crypto/rand failed: " + err.Error()) // documented never to fail on Linux
	}
	ad := additionalData(b, d)
	// In place when the payload is already at b[hdr:] (compressed into
	// the same buffer); from plain or the scratch buffer otherwise.
	c.aead.Seal(b[hdr:hdr], nonce, payload, ad[:])
	return b
}

// additionalData is what GCM authenticates beside the payload: the header
// up to the nonce, and the digest, so a body copied under another name, or
// with its flags or length edited, fails to open.
func additionalData(body []byte, d Digest) [adLen]byte {
	var ad [adLen]byte
	n := copy(ad[:], body[:plainHeaderLen+keyIDLen])
	copy(ad[n:], d[:])
	return ad
}

// open checks body against d and returns the plaintext. size is the length
// the caller expects. Every failure is an errs.Internal; a body that is not
// what d names is "ChunkCorrupt".
func (c *codec) open(d Digest, body []byte, size int) ([]byte, error) {
	return c.openInto(d, body, size, nil)
}

// openInto is open that decodes into dst when it has room (a compressed
// chunk) or copies there (a stored one), so a caller that reuses dst reads
// without allocating. body may be overwritten (it is decrypted in place).
func (c *codec) openInto(d Digest, body []byte, size int, dst []byte) ([]byte, error) {
	if len(body) < plainHeaderLen || string(body[0:4]) != chunkMagic {
		return nil, corrupt(d, "no %s header", chunkMagic)
	}
	flags := body[4]
	if flags&^knownFlags != 0 || body[5]|body[6]|body[7] != 0 {
		return nil, corrupt(d, "unknown flags %#x", body[4:8])
	}
	length := int(binary.LittleEndian.Uint32(body[8:12]))
	if length > MaxChunkSize {
		return nil, corrupt(d, "length %d exceeds %d", length, MaxChunkSize)
	}
	if length != size {
		return nil, corrupt(d, "length %d, expected %d", length, size)
	}
	payload := body[plainHeaderLen:]
	// A stored (uncompressed) chunk read into dst is decrypted or copied
	// straight there; a compressed one is decrypted in place and decoded
	// into dst.
	direct := flags&flagCompressed == 0 && dst != nil && cap(dst) >= length
	if flags&flagEncrypted != 0 {
		if c.aead == nil {
			return nil, errs.E(errs.Internal, "ChunkKeyMissing", "chunk %s is encrypted and this store has no key", d)
		}
		if len(body) < sealHeaderLen+tagLen {
			return nil, corrupt(d, "sealed body of %d bytes is too short", len(body))
		}
		if string(body[plainHeaderLen:plainHeaderLen+keyIDLen]) != string(c.keyID[:]) {
			return nil, errs.E(errs.Internal, "ChunkKeyMismatch",
				"chunk %s was sealed with key id %x, this store's key is %x", d, body[plainHeaderLen:plainHeaderLen+keyIDLen], c.keyID)
		}
		ad := additionalData(body, d)
		out := body[sealHeaderLen:sealHeaderLen]
		if direct {
			if len(body)-sealHeaderLen-tagLen != length {
				return nil, corrupt(d, "%d bytes, header says %d", len(body)-sealHeaderLen-tagLen, length)
			}
			out = dst[:0]
		}
		var err error
		payload, err = c.aead.Open(out, body[plainHeaderLen+keyIDLen:sealHeaderLen], body[sealHeaderLen:], ad[:])
		if err != nil {
			return nil, corrupt(d, "authentication failed")
		}
		if direct {
			direct = false // already in dst
		}
	}
	plain := payload
	switch {
	case flags&flagCompressed != 0:
		if dst == nil || cap(dst) < length {
			dst = make([]byte, 0, length)
		}
		var err error
		plain, err = c.dec.DecodeAll(payload, dst[:0])
		if err != nil {
			return nil, corrupt(d, "zstd: %v", err)
		}
	case direct && len(payload) == length:
		plain = append(dst[:0], payload...) // the caller's buffer outlives body
	}
	if len(plain) != length {
		return nil, corrupt(d, "%d bytes, header says %d", len(plain), length)
	}
	if Sum(plain) != d {
		return nil, corrupt(d, "content does not hash to its name")
	}
	return plain, nil
}

func corrupt(d Digest, format string, args ...any) *errs.Error {
	e := errs.E(errs.Internal, "ChunkCorrupt", format, args...)
	e.Message = "chunk " + d.String() + ": " + e.Message
	return e.WithTarget(d.String())
}
