package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azarm "github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/coffer-backup/coffer/internal/meta"
	serve "github.com/coffer-backup/coffer/internal/server"
	"github.com/coffer-backup/coffer/internal/testenv"
	"github.com/google/uuid"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coffer-e2e-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "coffer")
	build := exec.Command("go", "build", "-o", binary, "../../cmd/coffer")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build coffer:", err)
		os.Exit(1)
	}
	code := m.Run()
	if catalog != nil {
		catalog.report(os.Stdout)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// backend is a metadata store a server can run on.
type backend struct {
	name string
	db   func(t *testing.T) string // --db value; "" for SQLite
}

// backends returns SQLite and, when the test script started one, PostgreSQL.
func backends(t *testing.T) []backend {
	out := []backend{{name: "sqlite", db: func(*testing.T) string { return "" }}}
	base := os.Getenv("COFFER_TEST_POSTGRES")
	if base == "" {
		if testenv.Required() {
			t.Fatalf("COFFER_TEST_POSTGRES is unset (and %s is set)", testenv.RequireEnv)
		}
		t.Log("COFFER_TEST_POSTGRES not set: PostgreSQL variant not run")
		return out
	}
	return append(out, backend{name: "postgres", db: func(t *testing.T) string { return freshDatabase(t, base) }})
}

// freshDatabase creates an empty PostgreSQL database for one test.
func freshDatabase(t *testing.T, base string) string {
	t.Helper()
	ctx := context.Background()
	admin, err := meta.Open(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := "e2e_" + strings.ReplaceAll(uuid.NewString()[:13], "-", "_")
	if _, err := admin.DB().ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if a, err := meta.Open(ctx, base); err == nil {
			a.DB().ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			a.Close()
		}
	})
	i := strings.LastIndex(base, "/")
	rest := base[i+1:]
	q := ""
	if j := strings.Index(rest, "?"); j >= 0 {
		q = rest[j:]
	}
	return base[:i+1] + name + q
}

// server is one running `coffer serve`.
type server struct {
	t        *testing.T
	dataDir  string
	db       string
	extra    []string
	cmd      *exec.Cmd
	endpoint string
	client   *http.Client
	logs     *logBuffer
	exited   chan error
	// record, when set, keeps every exchange sent through do for a golden
	// transcript.
	record *transcript
}

func startServer(t *testing.T, db string, extra ...string) *server {
	t.Helper()
	s := &server{t: t, dataDir: t.TempDir(), db: db, extra: extra}
	s.start()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("server log:\n%s", tail(s.logs.String(), 60))
		}
	})
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (s *server) start(extra ...string) {
	s.t.Helper()
	os.Remove(filepath.Join(s.dataDir, "endpoint"))
	args := []string{"serve", "--data-dir", s.dataDir, "--addr", "127.0.0.1:0", "--nbd-addr", "127.0.0.1:0"}
	if s.db != "" {
		args = append(args, "--db", s.db)
	}
	args = append(args, s.extra...)
	args = append(args, extra...)
	s.cmd = exec.Command(binary, args...)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if s.logs == nil {
		s.logs = &logBuffer{}
	}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	logs := s.logs
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
		}
		close(done)
	}()
	go func() { <-done; s.exited <- s.cmd.Wait() }()
	dir := serve.DataDir(s.dataDir)
	deadline := time.Now().Add(60 * time.Second)
	if s.endpoint, err = dir.AwaitEndpoint(done, 60*time.Second); err != nil {
		s.t.Fatalf("%v:\n%s", err, logs.String())
	}
	pool, err := dir.CertPool()
	if err != nil {
		s.t.Fatal(err)
	}
	// Every client of the suite (raw requests and the SDKs) goes through
	// this transport, so every ARM response is checked against its schema.
	s.client = &http.Client{Timeout: 30 * time.Second, Transport: schemaCheckingTransport{
		base: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}, t: s.t}}
	// Each probe on a new connection with a short timeout: one stalled
	// connection must not use up the deadline.
	var last string
	for time.Now().Before(deadline) {
		probe := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		resp, err := probe.Get(s.endpoint + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("/healthz never answered 200 (last: %s):\n%s", last, logs.String())
}

// stop sends SIGTERM and waits for the server to exit; it reports whether
// the server exited cleanly by itself (status 0) rather than being killed
// after 20 s.
func (s *server) stop() (clean bool) {
	if s.cmd == nil || s.cmd.Process == nil {
		return true
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		clean = err == nil
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
	return clean
}

// kill9 kills the server without warning.
func (s *server) kill9() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
}

// token mints a token with `coffer token`.
func (s *server) token(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(binary, append([]string{"token", "--data-dir", s.dataDir}, args...)...).Output()
	if err != nil {
		s.t.Fatalf("coffer token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// run runs a coffer client command against this server.
func (s *server) run(args ...string) (string, error) {
	cmd := exec.Command(binary, append(args, "--data-dir", s.dataDir)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// logBuffer collects the server's log lines; the test reads it while the
// server writes.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) WriteString(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// sdk returns the credential and options the official SDK clients need to
// talk to this server as the holder of token.
func (s *server) sdk(token string) (azcore.TokenCredential, *azarm.ClientOptions) {
	return staticToken(token), &azarm.ClientOptions{ClientOptions: policy.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: "https://login.microsoftonline.com/",
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Audience: "https://management.azure.com/", Endpoint: s.endpoint},
			},
		},
		Transport: retryAfterCap{s.client},
		Retry:     policy.RetryOptions{MaxRetries: 2, RetryDelay: 100 * time.Millisecond},
	}}
}

// retryAfterCap shortens Retry-After to one second. The SDK pollers wait
// as long as the server asks (DataProtection asks 10-30 s, as Azure does,
// which the raw-HTTP seed replay asserts); the SDK tests need not wait it out.
type retryAfterCap struct{ c *http.Client }

func (r retryAfterCap) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.c.Do(req)
	if err == nil && resp.Header.Get("Retry-After") != "" && resp.Header.Get("Retry-After") != "0" {
		resp.Header.Set("Retry-After", "1")
	}
	return resp, err
}

// do sends a raw request and returns status, headers and body.
func (s *server) do(method, path, token string, body string) (int, http.Header, string) {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	u := path
	if !strings.HasPrefix(u, "https://") {
		u = s.endpoint + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if s.record != nil {
		s.record.add(method, u, resp.StatusCode, resp.Header, string(raw))
	}
	return resp.StatusCode, resp.Header, string(raw)
}

func newSubscription() string { return uuid.NewString() }
