package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	serve "github.com/coffer-backup/coffer/internal/server"
)

// server is the one `coffer serve` the soak runs, restarted on the same
// data directory and ports after every kill.
type server struct {
	binary, dataDir, db string
	addr, nbdAddr       string
	gcInterval          string
	logPath             string

	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File

	endpoint, token string
	hc              *http.Client

	mu       sync.Mutex
	gcPasses int    // "garbage collection" log lines seen since the last start
	last     string // the last log line
}

func (s *server) lastLogLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// freePort asks the kernel for a loopback port. The soak keeps it for
// every restart so status monitor URLs stay valid across kills.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (s *server) start() error {
	os.Remove(filepath.Join(s.dataDir, "endpoint"))
	args := []string{"serve", "--data-dir", s.dataDir, "--addr", s.addr, "--nbd-addr", s.nbdAddr,
		"--gc-interval", s.gcInterval, "--gc-grace", "1s", "--verify-interval", "0"}
	if s.db != "" {
		args = append(args, "--db", s.db)
	}
	if s.log == nil {
		f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		s.log = f
	}
	fmt.Fprintf(s.log, "---- start %s\n", time.Now().Format(time.RFC3339Nano))
	s.cmd = exec.Command(s.binary, args...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.mu.Lock()
	s.gcPasses = 0
	s.mu.Unlock()
	s.exited = make(chan struct{})
	cmd, exited := s.cmd, s.exited
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, `"msg":"garbage collection"`) {
				s.mu.Lock()
				s.gcPasses++
				s.mu.Unlock()
			}
			fmt.Fprintln(s.log, line)
			s.mu.Lock()
			s.last = line
			s.mu.Unlock()
		}
		cmd.Wait()
		close(exited)
	}()
	dir := serve.DataDir(s.dataDir)
	deadline := time.Now().Add(90 * time.Second)
	if s.endpoint, err = dir.AwaitEndpoint(exited, 90*time.Second); err != nil {
		return fmt.Errorf("%w (see %s)", err, s.logPath)
	}
	if s.hc == nil {
		pool, err := dir.CertPool()
		if err != nil {
			return err
		}
		s.hc = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	}
	for time.Now().Before(deadline) {
		resp, err := s.hc.Get(s.endpoint + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.token == "" {
		out, err := exec.Command(s.binary, "token", "--data-dir", s.dataDir, "--ttl", "12h").Output()
		if err != nil {
			return fmt.Errorf("coffer token: %v", err)
		}
		s.token = strings.TrimSpace(string(out))
	}
	return nil
}

// kill9 sends SIGKILL to the server's own PID and waits for it to be gone.
func (s *server) kill9() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
	// Connections to the dead process would fail the next request.
	s.hc.CloseIdleConnections()
}

// stop sends SIGTERM and, if the server has not left in 20 s, SIGKILL.
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
	if s.log != nil {
		s.log.Close()
		s.log = nil
	}
}

func (s *server) gcSeen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gcPasses
}

// do sends one ARM request; path may be a full URL (a status monitor).
func (s *server) do(method, path, body string) (int, http.Header, []byte, error) {
	u := path
	if !strings.HasPrefix(u, "https://") {
		u = s.endpoint + path
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw, err
}

// must sends a request that has to answer with one of want.
func (s *server) must(method, path, body string, want ...int) (http.Header, []byte, error) {
	code, h, raw, err := s.do(method, path, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %v", method, path, err)
	}
	for _, w := range want {
		if code == w {
			return h, raw, nil
		}
	}
	return nil, nil, fmt.Errorf("%s %s: %d %s", method, path, code, strings.TrimSpace(string(raw)))
}

// status reads an operation's status monitor once.
func (s *server) status(monitor string) (string, error) {
	_, raw, err := s.must("GET", monitor, "", 200)
	if err != nil {
		return "", err
	}
	var st struct{ Status string }
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// wait polls a status monitor until the operation leaves InProgress.
func (s *server) wait(monitor string, bound time.Duration) (string, error) {
	deadline := time.Now().Add(bound)
	for {
		st, err := s.status(monitor)
		if err != nil {
			return "", err
		}
		if st != "InProgress" && st != "Inprogress" {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("operation %s still %s after %s", monitor, st, bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// list GETs every page of an ARM list.
func (s *server) list(path string) ([]json.RawMessage, error) {
	var all []json.RawMessage
	for path != "" {
		_, raw, err := s.must("GET", path, "", 200)
		if err != nil {
			return nil, err
		}
		var page struct {
			Value    []json.RawMessage
			NextLink string
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Value...)
		path = page.NextLink
	}
	return all, nil
}
