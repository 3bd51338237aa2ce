// Package armclient is the small ARM client behind coffer's CLI commands:
// it finds the endpoint, token and CA certificate (flags, COFFER_*
// variables, or a local data directory) and sends JSON requests, turning a
// CloudError into a Go error that reads like the server's message.
package armclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Client talks to one coffer endpoint.
type Client struct {
	Endpoint string // https://host:port
	Token    string
	HTTP     *http.Client
}

// Options are where the connection settings come from.
type Options struct {
	Endpoint, Token, CACert, DataDir string
	// MintToken returns a token for the data directory's administrator; it
	// is used when DataDir is set and no token was given.
	MintToken func(dataDir string) (string, error)
}

// New resolves opts (flags first, then COFFER_ENDPOINT, COFFER_TOKEN,
// COFFER_CACERT, then the data directory) into a client.
func New(opts Options) (*Client, error) {
	pick := func(flag, env string) string {
		if flag != "" {
			return flag
		}
		return os.Getenv(env)
	}
	endpoint, token, cacert := pick(opts.Endpoint, "COFFER_ENDPOINT"), pick(opts.Token, "COFFER_TOKEN"), pick(opts.CACert, "COFFER_CACERT")
	if opts.DataDir != "" {
		if endpoint == "" {
			raw, err := os.ReadFile(opts.DataDir + "/endpoint")
			if err != nil {
				return nil, fmt.Errorf("no endpoint: %w (is 'coffer serve --data-dir %s' running?)", err, opts.DataDir)
			}
			endpoint = strings.TrimSpace(string(raw))
		}
		if cacert == "" {
			cacert = opts.DataDir + "/tls/cert.pem"
		}
		if token == "" && opts.MintToken != nil {
			t, err := opts.MintToken(opts.DataDir)
			if err != nil {
				return nil, err
			}
			token = t
		}
	}
	if endpoint == "" {
		return nil, fmt.Errorf("no endpoint: pass --endpoint, set COFFER_ENDPOINT, or pass --data-dir of a local server")
	}
	if token == "" {
		return nil, fmt.Errorf("no token: pass --token, set COFFER_TOKEN, or pass --data-dir of a local server")
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cacert != "" {
		pem, err := os.ReadFile(cacert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate", cacert)
		}
		tlsConf.RootCAs = pool
	}
	return &Client{
		Endpoint: strings.TrimSuffix(endpoint, "/"),
		Token:    token,
		HTTP:     &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true}},
	}, nil
}

// Error is a CloudError returned by the server.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message) }

// Do sends a request to path (with api-version) and decodes a JSON reply
// into out (if not nil). It returns the response for its headers.
func (c *Client) Do(ctx context.Context, method, path, apiVersion string, query url.Values, in, out any) (*http.Response, error) {
	if query == nil {
		query = url.Values{}
	}
	query.Set("api-version", apiVersion)
	return c.DoURL(ctx, method, c.Endpoint+path+"?"+query.Encode(), in, out)
}

// DoURL is Do for an absolute URL such as a nextLink or an operation URL.
func (c *Client) DoURL(ctx context.Context, method, u string, in, out any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, err
	}
	if resp.StatusCode >= 400 {
		var ce struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(raw, &ce) == nil && ce.Error.Code != "" {
			return resp, &Error{Status: resp.StatusCode, Code: ce.Error.Code, Message: ce.Error.Message}
		}
		return resp, &Error{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(raw))}
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp, fmt.Errorf("decode reply: %w", err)
		}
	}
	return resp, nil
}

// List follows nextLink from path and returns every item.
func List[T any](ctx context.Context, c *Client, path, apiVersion string, query url.Values) ([]T, error) {
	var all []T
	var page struct {
		Value    []T    `json:"value"`
		NextLink string `json:"nextLink"`
	}
	if _, err := c.Do(ctx, http.MethodGet, path, apiVersion, query, nil, &page); err != nil {
		return nil, err
	}
	all = append(all, page.Value...)
	for page.NextLink != "" {
		next := page.NextLink
		page.NextLink, page.Value = "", nil
		if _, err := c.DoURL(ctx, http.MethodGet, next, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Value...)
	}
	return all, nil
}
