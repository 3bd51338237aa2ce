package volume

import (
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// BenchmarkWriterLatencyDuringSnapshot measures what a snapshot costs a busy
// writer: 4 KiB random writes to a written disk, timed one by one, while
// nothing else runs and while a snapshot of the whole disk is read end to
// end (what an upload does). It reports p50 and p99 of each.
//
//	COFFER_BENCH_SIZE=4GiB go test ./internal/volume/ -run '^$' -bench WriterLatency -benchtime 1x
func BenchmarkWriterLatencyDuringSnapshot(b *testing.B) {
	size := int64(1 << 30)
	if s := os.Getenv("COFFER_BENCH_SIZE"); s == "4GiB" {
		size = 4 << 30
	} else if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		size = n
	}
	v, err := Create(filepath.Join(b.TempDir(), "vol"), size)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	buf := make([]byte, 1<<20)
	rng := rand.New(rand.NewSource(2))
	for i := range buf {
		buf[i] = byte(rng.Intn(256))
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := v.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	v.Flush()

	measure := func(d time.Duration, during func(stop <-chan struct{})) []time.Duration {
		stop := make(chan struct{})
		done := make(chan struct{})
		if during != nil {
			go func() { during(stop); close(done) }()
		}
		var lat []time.Duration
		p := make([]byte, 4096)
		rng := rand.New(rand.NewSource(1))
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			off := rng.Int63n(size/4096) * 4096
			t0 := time.Now()
			if _, err := v.WriteAt(p, off); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		close(stop)
		if during != nil {
			<-done
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return lat
	}
	pct := func(l []time.Duration, q float64) time.Duration { return l[int(float64(len(l)-1)*q)] }

	for i := 0; i < b.N; i++ {
		idle := measure(3*time.Second, nil)
		var read int64
		busy := measure(3*time.Second, func(stop <-chan struct{}) {
			s, err := v.Snapshot()
			if err != nil {
				b.Error(err)
				return
			}
			defer s.Release()
			chunk := make([]byte, 1<<20)
			for off := int64(0); ; off = (off + int64(len(chunk))) % size {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.ReadAt(chunk, off); err != nil {
					b.Error(err)
					return
				}
				read += int64(len(chunk))
			}
		})
		b.ReportMetric(float64(pct(idle, 0.5).Microseconds()), "idle-p50-µs")
		b.ReportMetric(float64(pct(idle, 0.99).Microseconds()), "idle-p99-µs")
		b.ReportMetric(float64(pct(busy, 0.5).Microseconds()), "snapshot-p50-µs")
		b.ReportMetric(float64(pct(busy, 0.99).Microseconds()), "snapshot-p99-µs")
		b.ReportMetric(float64(read)/3/1e6, "snapshot-read-MB/s")
	}
}
