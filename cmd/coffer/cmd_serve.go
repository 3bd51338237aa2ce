package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coffer-backup/coffer/internal/server"
	"github.com/spf13/cobra"
)

func newServeCmd() *cobra.Command {
	var cfg server.Config
	var logLevel string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the coffer server (ARM API over HTTPS, disks over NBD)",
		Long: `Run the coffer server until SIGTERM or SIGINT, then shut down within 10 s.

On first start it fills the data directory: a self-signed TLS certificate
(tls/cert.pem), the key that signs 'coffer token' tokens, the SQLite metadata
store and the local blob store. Nothing else is needed.

--db postgres://user:pass@host/db keeps metadata in PostgreSQL instead, so
several coffer processes can share it.`,
		Example: `  coffer serve
  coffer serve --data-dir /var/lib/coffer --addr 0.0.0.0:8443
  coffer serve --db postgres://coffer@127.0.0.1/coffer`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return err
			}
			cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return server.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "./coffer-data", "directory for keys, certificate, metadata and blobs")
	f.StringVar(&cfg.Addr, "addr", "127.0.0.1:8443", "HTTPS listen address of the ARM API and data plane")
	f.StringVar(&cfg.NBDAddr, "nbd-addr", "127.0.0.1:10809", "NBD listen address for attached disks (empty: no NBD)")
	f.StringVar(&cfg.DBURL, "db", "", "metadata store: postgres://… (default: SQLite in the data dir)")
	f.StringVar(&cfg.BlobURL, "blob", "", "chunk store: s3://bucket?endpoint=… (default: a directory in the data dir)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate (default: a self-signed one in the data dir)")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key for --tls-cert")
	f.StringVar(&cfg.OIDCIssuer, "oidc-issuer", "", "also accept tokens from this OIDC issuer (Entra ID, Keycloak)")
	f.StringSliceVar(&cfg.Audiences, "audience", nil, "extra accepted token audiences (https://management.azure.com/ and the endpoint are always accepted)")
	f.DurationVar(&cfg.GCInterval, "gc-interval", time.Hour, "how often chunks no snapshot uses are deleted (0: never)")
	f.DurationVar(&cfg.GCGrace, "gc-grace", time.Hour, "how old an unused chunk must be before garbage collection deletes it; must be positive: it protects\n"+
		"chunks that uploads in other coffer processes sharing the bucket have written but not yet indexed\n"+
		"(this process's own uploads are protected whatever the grace, so on a single node 1s is as good as none)")
	f.DurationVar(&cfg.VerifyInterval, "verify-interval", 24*time.Hour, "how often every stored chunk is read back and checked (0: never)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.DurationVar(&cfg.OperationDelay, "debug-operation-delay", 0, "delay every operation attempt (fault injection for crash tests)")
	f.MarkHidden("debug-operation-delay")
	f.StringVar(&cfg.PprofAddr, "debug-pprof-addr", "", "serve net/http/pprof on this address, without TLS or tokens (loopback only)")
	f.MarkHidden("debug-pprof-addr")
	return cmd
}
