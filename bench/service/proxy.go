package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"sync"
)

// runProxy forwards every request to target (MinIO) and counts them by
// method, so the S3 mode can say how many requests coffer and restic each
// made. GET /_bench/counts prints "METHOD n" lines, POST /_bench/reset
// zeroes them (no bucket name starts with an underscore).
func runProxy(listen, target string) error {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return fmt.Errorf("-target %q is not a URL", target)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	counts := map[string]int64{}
	// The Host header is kept as the client sent it: SigV4 signed it, and
	// MinIO checks the signature against the Host it receives.
	forward := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host
	}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_bench/counts":
			mu.Lock()
			keys := make([]string, 0, len(counts))
			for k := range counts {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(w, "%s %d\n", k, counts[k])
			}
			mu.Unlock()
			return
		case "/_bench/reset":
			mu.Lock()
			clear(counts)
			mu.Unlock()
			return
		}
		mu.Lock()
		counts[r.Method]++
		mu.Unlock()
		forward.ServeHTTP(w, r)
	})
	fmt.Fprintf(os.Stdout, "RESULT addr %s\n", ln.Addr())
	return http.Serve(ln, h)
}
