package e2e

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// checkingProxy is an HTTPS reverse proxy in front of a coffer server whose
// transport is the schema-checking one, so a client running in another
// process (the Python SDK) has every response it gets validated as the
// suite's own clients do. It presents the server's certificate, which the
// client already trusts.
type checkingProxy struct {
	*httptest.Server
	mu sync.Mutex
	// arm counts the ARM responses (those asked with an api-version) that
	// went through the check, by provider.
	arm map[string]int
}

// newCheckingProxy forwards to target through base, validating with t.
func newCheckingProxy(t testing.TB, target *url.URL, base http.RoundTripper, cert tls.Certificate) *checkingProxy {
	p := &checkingProxy{arm: map[string]int{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			// coffer writes Location, Azure-AsyncOperation and SAS URLs
			// from the Host it was asked at: keeping the client's makes
			// the polls come back through the proxy, and the check.
			r.Out.Host = r.In.Host
		},
		Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := schemaCheckingTransport{base: base, t: t}.RoundTrip(req)
			if err == nil && req.URL.Query().Get("api-version") != "" {
				p.mu.Lock()
				p.arm[providerOf(req.URL.Path)]++
				p.mu.Unlock()
			}
			return resp, err
		}),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			t.Errorf("checking proxy: %s %s: %v", r.Method, r.URL, err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	p.Server = httptest.NewUnstartedServer(rp)
	p.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	p.StartTLS()
	t.Cleanup(p.Close)
	return p
}

// counts returns a copy of the ARM responses checked so far, by provider.
func (p *checkingProxy) counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.arm))
	for k, v := range p.arm {
		out[k] = v
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// checkingProxy starts a checking proxy in front of s, with s's
// certificate.
func (s *server) checkingProxy() *checkingProxy {
	s.t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(s.dataDir, "tls", "cert.pem"), filepath.Join(s.dataDir, "tls", "key.pem"))
	if err != nil {
		s.t.Fatal(err)
	}
	target, err := url.Parse(s.endpoint)
	if err != nil {
		s.t.Fatal(err)
	}
	return newCheckingProxy(s.t, target, s.client.Transport.(schemaCheckingTransport).base, cert)
}

// errorRecorder is a testing.TB that keeps what Errorf reports instead of
// failing, so a test can show the proxy fails its test on a mismatch.
type errorRecorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *errorRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

// TestCheckingProxyCatches shows a response that passes through the proxy
// is validated: a resource group with a property the spec lacks fails the
// test the proxy reports to, and the same body without it does not. The
// upstream here is a plain TLS server, so the body is exactly what the
// test wrote.
func TestCheckingProxyCatches(t *testing.T) {
	body := `{"id":"/subscriptions/s/resourceGroups/g","name":"g","type":"Microsoft.Resources/resourceGroups","location":"westus","properties":{"provisioningState":"Succeeded"}%s}`
	extra := ""
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write([]byte(fmt.Sprintf(body, extra)))
	}))
	defer upstream.Close()
	target, _ := url.Parse(upstream.URL)
	rec := &errorRecorder{TB: t}
	p := newCheckingProxy(rec, target, upstream.Client().Transport, upstream.TLS.Certificates[0])
	client := upstream.Client() // the proxy presents the upstream's certificate
	get := func() {
		resp, err := client.Get(p.URL + "/subscriptions/s/resourceGroups/g?api-version=2022-09-01")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d through the proxy", resp.StatusCode)
		}
	}
	get()
	if len(rec.errs) != 0 {
		t.Fatalf("a body the spec defines was refused: %v", rec.errs)
	}
	extra = `,"bogus":1`
	get()
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "bogus") {
		t.Fatalf("want one mismatch naming bogus, got %v", rec.errs)
	}
	// The mismatch was made on purpose: keep it out of the suite's report.
	if cat, err := loadCatalog(); err == nil {
		cat.failures.Add(-1)
	}
	if got := p.counts()["Microsoft.Resources"]; got != 2 {
		t.Errorf("checked %d Microsoft.Resources responses, want 2", got)
	}
}
