package blobapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	mrand "math/rand/v2"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
)

const (
	testResource = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/disks/data"
	otherDisk    = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/disks/other"
)

// testStart is the fake clock's start; error bodies carry it.
var testStart = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// testEnv is a handler over real file disks behind an httptest TLS server,
// with the bookkeeping a compute provider would keep: which disks exist and
// which access ids were revoked.
type testEnv struct {
	tb     testing.TB
	clock  *clock.Fake
	signer Signer
	srv    *httptest.Server
	logs   *syncBuffer

	mu        sync.Mutex
	disks     map[string]Disk
	revoked   map[string]bool
	lookupErr error
	sigs      []string
}

func newTestEnv(tb testing.TB) *testEnv {
	tb.Helper()
	key := make([]byte, MinKeyLen)
	if _, err := rand.Read(key); err != nil {
		tb.Fatal(err)
	}
	e := &testEnv{
		tb:      tb,
		clock:   clock.NewFake(testStart),
		logs:    &syncBuffer{},
		disks:   map[string]Disk{},
		revoked: map[string]bool{},
	}
	e.signer = Signer{Key: key, Clock: e.clock}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.srv = httptest.NewTLSServer(NewHandler(e.signer, e.lookup, logger))
	tb.Cleanup(func() {
		e.srv.Close()
		logs := e.logs.String()
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, sig := range e.sigs {
			if strings.Contains(logs, sig) {
				tb.Errorf("a SAS signature was logged:\n%s", logs)
			}
		}
	})
	return e
}

// lookup is what the compute provider's Lookup must do: refuse revoked
// access ids and vanished resources with errs.Forbidden.
func (e *testEnv) lookup(_ context.Context, g Grant) (Disk, func(), error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lookupErr != nil {
		return nil, nil, e.lookupErr
	}
	if e.revoked[g.AccessID] {
		return nil, nil, errs.E(errs.Forbidden, "AccessRevoked", "access %s was revoked", g.AccessID)
	}
	d, ok := e.disks[g.ResourceID]
	if !ok {
		return nil, nil, errs.E(errs.Forbidden, "ResourceGone", "resource no longer exists")
	}
	return d, func() {}, nil
}

func (e *testEnv) addDisk(id string, d Disk) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.disks[id] = d
}

func (e *testEnv) removeDisk(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.disks, id)
}

func (e *testEnv) revoke(accessID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.revoked[accessID] = true
}

func (e *testEnv) setLookupErr(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lookupErr = err
}

// issue returns a grant on resource and its SAS URL, remembering the
// signature so the cleanup can check it never reached the log.
func (e *testEnv) issue(resource string, write bool, ttl time.Duration) (Grant, string) {
	e.tb.Helper()
	id, err := NewAccessID()
	if err != nil {
		e.tb.Fatal(err)
	}
	g := Grant{AccessID: id, ResourceID: resource, Write: write, Expires: e.clock.Now().Add(ttl)}
	u := e.signer.URL(e.srv.URL, g)
	parsed, err := url.Parse(u)
	if err != nil {
		e.tb.Fatal(err)
	}
	e.mu.Lock()
	e.sigs = append(e.sigs, parsed.Query().Get("sig"))
	e.mu.Unlock()
	return g, u
}

// client is the official SDK's page blob client on a SAS URL, with retries
// off so a failure is reported as the first response.
func (e *testEnv) client(sasURL string) *pageblob.Client {
	e.tb.Helper()
	c, err := pageblob.NewClientWithNoCredential(sasURL, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: e.srv.Client(),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}})
	if err != nil {
		e.tb.Fatal(err)
	}
	return c
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// randomBytes returns n reproducible, incompressible bytes.
func randomBytes(seed uint64, n int64) []byte {
	b := make([]byte, n)
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, _ = r.Read(b)
	return b
}
