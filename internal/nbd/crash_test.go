package nbd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/volume"
)

const crashEnv = "COFFER_NBD_CRASH_DIR"

// TestFlushedWritesSurviveKill runs the server in a child process (this test
// binary again), writes through it, flushes, kills the child with SIGKILL
// and checks the volume holds every acknowledged write and tracks it.
func TestFlushedWritesSurviveKill(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashServer(t, dir)
		return
	}
	dir := filepath.Join(t.TempDir(), "vol")
	v, err := volume.Create(dir, 32*MiB)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFlushedWritesSurviveKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "addr ") {
		t.Fatalf("child said %q, %v", line, err)
	}
	rc := dialRaw(t, strings.TrimSpace(strings.TrimPrefix(line, "addr ")))
	if typ := rc.goExport("disk"); typ != repAck {
		t.Fatalf("GO = %#x", typ)
	}

	type write struct {
		off   int64
		flags uint16
		data  []byte
	}
	var writes []write
	for i := range 32 {
		w := write{off: int64(i) << 20, data: bytes.Repeat([]byte{byte(i + 1)}, 4096+i*512)}
		if i%4 == 0 {
			w.flags = cmdFlagFUA
		}
		writes = append(writes, w)
		if errno, _ := rc.do(cmdWrite, w.flags, w.off, uint32(len(w.data)), w.data); errno != 0 {
			t.Fatalf("write %d: %s", i, fmtErrno(errno))
		}
	}
	if errno, _ := rc.do(cmdWriteZeroes, 0, 3*MiB, 4096, nil); errno != 0 {
		t.Fatal(fmtErrno(errno))
	}
	clear(writes[3].data[:4096])
	if errno, _ := rc.do(cmdFlush, 0, 0, 0, nil); errno != 0 {
		t.Fatal(fmtErrno(errno))
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want SIGKILL", cmd.ProcessState)
	}

	v, err = volume.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	changed := v.Changed()
	for i, w := range writes {
		got := make([]byte, len(w.data))
		if _, err := v.ReadAt(got, w.off); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, w.data) {
			t.Fatalf("write %d at %d lost after SIGKILL", i, w.off)
		}
		if !changed.Test(w.off / v.BlockSize()) {
			t.Fatalf("write %d at %d not in the changed set after SIGKILL", i, w.off)
		}
	}
}

// crashServer is the child: serve the volume until killed.
func crashServer(t *testing.T, dir string) {
	v, err := volume.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Lookup: func(_ context.Context, name string) (Export, func(), error) {
		return v, nil, nil
	}}
	fmt.Printf("addr %s\n", ln.Addr())
	go func() { _ = srv.Serve(ln) }()
	time.Sleep(time.Minute)
	t.Fatal("child was not killed")
}
