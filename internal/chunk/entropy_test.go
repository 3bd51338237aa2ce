package chunk_test

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/chunk/chunktest"
)

// TestWorthCompressing checks the sample against what zstd actually does:
// every chunk it sends to be stored raw must be one zstd saves under 3% of.
func TestWorthCompressing(t *testing.T) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	mib := 1 << 20
	text := chunktest.Compressible(mib, 1)
	cases := []struct {
		name string
		p    []byte
		want bool
	}{
		{"random", chunktest.Random(mib), false},
		{"random, short last chunk", chunktest.Random(mib/3 + 17), false},
		{"text", text, true},
		{"half random, half zero", append(chunktest.Random(mib/2), make([]byte, mib/2)...), true},
		{"random with a tenth of text", append(chunktest.Random(9*mib/10), text[:mib/10]...), true},
		{"random with text in 8 KiB pieces", interleave(chunktest.Random(mib), text, 64<<10, 8<<10), true},
		{"random 4 KiB blocks, each twice", chunktest.RepeatedBlocks(mib, 4096, 128), true},
		{"random 64 KiB blocks repeated", chunktest.RepeatedBlocks(mib, 64<<10, 4), true},
		{"small", chunktest.Random(1000), true},
		{"bytes 0..255 cycling", bytes.Repeat(seq256(), mib/256), true},
	}
	for _, tc := range cases {
		got := chunk.WorthCompressing(tc.p)
		saved := 1 - float64(len(enc.EncodeAll(tc.p, nil)))/float64(len(tc.p))
		if got != tc.want {
			t.Errorf("%s: worthCompressing = %v, want %v (zstd saves %.1f%%)", tc.name, got, tc.want, 100*saved)
		}
		if !got && saved > 0.03 {
			t.Errorf("%s: stored raw, but zstd saves %.1f%%", tc.name, 100*saved)
		}
	}
}

func seq256() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func BenchmarkWorthCompressing(b *testing.B) {
	p := chunktest.Random(1 << 20)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		chunk.WorthCompressing(p)
	}
}

// interleave returns a copy of a with every every-th run of n bytes taken
// from b.
func interleave(a, b []byte, every, n int) []byte {
	out := bytes.Clone(a)
	for off := 0; off+n <= len(out); off += every {
		copy(out[off:off+n], b[off:off+n])
	}
	return out
}
