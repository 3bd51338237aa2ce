package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/server"
	"github.com/coffer-backup/coffer/internal/testenv"
)

// validConfig is a configuration Run accepts.
func validConfig(t *testing.T) server.Config {
	return server.Config{
		DataDir:        t.TempDir(),
		Addr:           "127.0.0.1:0",
		GCInterval:     time.Hour,
		GCGrace:        time.Hour,
		VerifyInterval: 24 * time.Hour,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// TestRunRefusesMisleadingOptions: every option Run is given means what it
// says or is refused before the server starts; none is accepted and quietly
// read as something else.
func TestRunRefusesMisleadingOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*server.Config)
		flag string // the flag the error must name
		hint string // and a word of what to do
	}{
		{"zero gc grace", func(c *server.Config) { c.GCGrace = 0 }, "--gc-grace", "positive"},
		{"negative gc grace", func(c *server.Config) { c.GCGrace = -time.Second }, "--gc-grace", "positive"},
		{"negative gc interval", func(c *server.Config) { c.GCInterval = -time.Second }, "--gc-interval", "0"},
		{"negative verify interval", func(c *server.Config) { c.VerifyInterval = -time.Second }, "--verify-interval", "0"},
		{"negative operation delay", func(c *server.Config) { c.OperationDelay = -time.Second }, "--debug-operation-delay", "0"},
		{"certificate without key", func(c *server.Config) { c.TLSCert = "/nonexistent/cert.pem" }, "--tls-key", "both"},
		{"key without certificate", func(c *server.Config) { c.TLSKey = "/nonexistent/key.pem" }, "--tls-cert", "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig(t)
			tc.edit(&cfg)
			// Were the option accepted, Run would serve until ctx ends
			// and return nil.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := server.Run(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.flag) || !strings.Contains(err.Error(), tc.hint) {
				t.Fatalf("Run = %v, want an error that names %s and says %q", err, tc.flag, tc.hint)
			}
		})
	}
}

// TestRunRefusesMissingBucket: serve on an S3 bucket that does not exist
// fails at start-up naming the bucket, instead of reporting healthy and
// failing every snapshot.
func TestRunRefusesMissingBucket(t *testing.T) {
	raw := testenv.S3(t)
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = "coffer-no-such-bucket"
	cfg := validConfig(t)
	cfg.BlobURL = u.String()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = server.Run(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), `"coffer-no-such-bucket"`) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Run = %v, want an error that says bucket \"coffer-no-such-bucket\" does not exist", err)
	}
	t.Log(err)
}
