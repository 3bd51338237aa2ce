package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSecondServeOnADataDirIsRefused: a data directory belongs to one
// serve at a time. A second one on the same directory exits non-zero,
// naming the first (its PID and endpoint), and leaves the endpoint file
// pointing at the first, which keeps serving.
func TestSecondServeOnADataDirIsRefused(t *testing.T) {
	first := startServer(t, "")

	// Were it not refused, the second would serve until killed.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, binary, "serve", "--data-dir", first.dataDir,
		"--addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0")
	out, err := second.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("a second serve on the same data directory kept running:\n%s", out)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("second serve: %v, want a non-zero exit\n%s", err, out)
	}
	msg := string(out)
	if pid := strconv.Itoa(first.cmd.Process.Pid); !strings.Contains(msg, "pid "+pid) || !strings.Contains(msg, first.endpoint) {
		t.Errorf("second serve said %q; want the first's pid %s and endpoint %s", msg, pid, first.endpoint)
	}

	raw, err := os.ReadFile(filepath.Join(first.dataDir, "endpoint"))
	if err != nil || strings.TrimSpace(string(raw)) != first.endpoint {
		t.Errorf("endpoint file = %q, %v; want the first server's %s", raw, err, first.endpoint)
	}
	resp, err := first.client.Get(first.endpoint + "/healthz")
	if err != nil {
		t.Fatalf("first server after the refused second: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("first server's /healthz = %s", resp.Status)
	}

	// The lock goes with the process: once the first stops, a new serve
	// starts on the directory.
	first.stop()
	first.start()
}
