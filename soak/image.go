package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

const (
	block = 64 << 10
	// The ballast region is rewritten with fresh random bytes before each
	// snapshot and backup, so every upload has incompressible, never
	// deduplicated chunks to store and a kill can land in the middle of it.
	ballastOff = 512 << 20
	ballastLen = 64 << 20
)

// ballastBytes is the ballast region's content for a seed (zeros for 0).
func ballastBytes(seed uint64) []byte {
	b := make([]byte, ballastLen)
	if seed == 0 {
		return b
	}
	r := rand.New(rand.NewPCG(seed, ^seed))
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// qemuWriteBallast writes and flushes the ballast region of seed.
func qemuWriteBallast(uri, tmp string, seed uint64) error {
	if err := os.WriteFile(tmp, ballastBytes(seed), 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	out, err := exec.Command("qemu-io", "-f", "raw", "-c", fmt.Sprintf("write -s %s %d %d", tmp, ballastOff, ballastLen), "-c", "flush", uri).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("wrote %d/%d", ballastLen, ballastLen)) {
		return fmt.Errorf("ballast write: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// qemuBallastMatches reads the ballast region over NBD and compares it.
func qemuBallastMatches(uri, tmp string, seed uint64) (bool, error) {
	defer os.Remove(tmp)
	// qemu-img dd cannot skip into an NBD export; a raw driver with an
	// offset reads just the region.
	u, err := url.Parse(uri)
	if err != nil {
		return false, err
	}
	src := fmt.Sprintf(`json:{"driver":"raw","offset":%d,"size":%d,"file":{"driver":"nbd","server":{"type":"inet","host":%q,"port":%q},"export":%q}}`,
		ballastOff, ballastLen, u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/"))
	out, err := exec.Command("qemu-img", "convert", "-O", "raw", src, tmp).CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("qemu-img convert: %v: %s", err, strings.TrimSpace(string(out)))
	}
	got, err := os.ReadFile(tmp)
	if err != nil {
		return false, err
	}
	return bytes.Equal(got, ballastBytes(seed)), nil
}

// image is what a disk or snapshot holds: block offset -> fill byte;
// a block not in it is zeros.
type image map[int64]byte

func (m image) clone() image {
	c := make(image, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// offsets is the sorted union of the blocks of the images.
func offsets(ms ...image) []int64 {
	seen := map[int64]bool{}
	var out []int64
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// qemuWrite writes one block filled with p and flushes; true only if
// qemu-io reported both the write and the flush done.
func qemuWrite(uri string, off int64, p byte) bool {
	out, err := exec.Command("qemu-io", "-f", "raw", "-c", fmt.Sprintf("write -P 0x%02x %d 64k", p, off), "-c", "flush", uri).CombinedOutput()
	return err == nil && strings.Contains(string(out), "wrote 65536/65536") && !strings.Contains(string(out), "failed")
}

var readOK = regexp.MustCompile(`read 65536/65536 bytes at offset (\d+)`)

// qemuCheck reads each block and checks it is filled with want[off] (zeros
// if absent); it returns the blocks that did not match. One qemu-io run
// checks them all, which keeps a trial's check short.
func qemuCheck(uri string, offs []int64, want image) ([]int64, error) {
	if len(offs) == 0 {
		return nil, nil
	}
	args := []string{"-f", "raw"}
	for _, off := range offs {
		args = append(args, "-c", fmt.Sprintf("read -P 0x%02x %d 64k", want[off], off))
	}
	args = append(args, uri)
	var out []byte
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		out, err = exec.Command("qemu-io", args...).CombinedOutput()
		if strings.Contains(string(out), "read 65536/65536") || strings.Contains(string(out), "Pattern verification failed") {
			break
		}
		time.Sleep(time.Second)
	}
	if !strings.Contains(string(out), "read 65536/65536") && !strings.Contains(string(out), "Pattern verification failed") {
		return nil, fmt.Errorf("qemu-io read of %s: %v: %s", uri, err, strings.TrimSpace(string(out)))
	}
	ok := map[int64]bool{}
	for _, m := range readOK.FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		ok[n] = true
	}
	var bad []int64
	for _, off := range offs {
		if !ok[off] {
			bad = append(bad, off)
		}
	}
	return bad, nil
}

// sasCheck reads each block of a snapshot or an unattached disk through a
// read SAS and returns the blocks that are not filled with want[off]; it
// reads what a restore from the index would.
func (s *server) sasCheck(id string, offs []int64, want image, ballast uint64) (bad []int64, err error) {
	const api = "?api-version=2025-01-02"
	h, _, err := s.must("POST", id+"/beginGetAccess"+api, `{"access":"Read","durationInSeconds":3600}`, 202)
	if err != nil {
		return nil, err
	}
	defer func() {
		if h, _, e := s.must("POST", id+"/endGetAccess"+api, "", 200, 202); e != nil && err == nil {
			err = e
		} else if e == nil && h.Get("Azure-AsyncOperation") != "" {
			s.wait(h.Get("Azure-AsyncOperation"), 60*time.Second)
		}
	}()
	if st, err := s.wait(h.Get("Azure-AsyncOperation"), 60*time.Second); err != nil || st != "Succeeded" {
		return nil, fmt.Errorf("grant on %s: %s %v", id, st, err)
	}
	_, raw, err := s.must("GET", h.Get("Location"), "", 200)
	if err != nil {
		return nil, err
	}
	var grant struct{ AccessSAS string }
	if err := json.Unmarshal(raw, &grant); err != nil || grant.AccessSAS == "" {
		return nil, fmt.Errorf("grant on %s: %s", id, raw)
	}
	for _, off := range offs {
		req, _ := http.NewRequest("GET", grant.AccessSAS, nil)
		req.Header.Set("x-ms-range", fmt.Sprintf("bytes=%d-%d", off, off+block-1))
		req.Header.Set("x-ms-version", "2021-08-06")
		resp, err := s.hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("read %s at %d: %v", id, off, err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || (resp.StatusCode != 200 && resp.StatusCode != 206) {
			return nil, fmt.Errorf("read %s at %d: %d %v %.200s", id, off, resp.StatusCode, err, data)
		}
		if len(data) != block || !filled(data, want[off]) {
			bad = append(bad, off)
		}
	}
	wantBallast := ballastBytes(ballast)
	const step = 4 << 20
	for at := 0; at < ballastLen; at += step {
		req, _ := http.NewRequest("GET", grant.AccessSAS, nil)
		req.Header.Set("x-ms-range", fmt.Sprintf("bytes=%d-%d", ballastOff+at, ballastOff+at+step-1))
		req.Header.Set("x-ms-version", "2021-08-06")
		resp, err := s.hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("read %s ballast at %d: %v", id, at, err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || (resp.StatusCode != 200 && resp.StatusCode != 206) {
			return nil, fmt.Errorf("read %s ballast at %d: %d %v", id, at, resp.StatusCode, err)
		}
		if !bytes.Equal(data, wantBallast[at:at+step]) {
			bad = append(bad, int64(ballastOff+at))
		}
	}
	return bad, nil
}

func filled(b []byte, p byte) bool {
	for _, c := range b {
		if c != p {
			return false
		}
	}
	return true
}
