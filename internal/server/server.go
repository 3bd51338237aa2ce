package server

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/blobapi"
	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/nbd"
	"github.com/coffer-backup/coffer/internal/ops"
	"github.com/coffer-backup/coffer/internal/provider/authorization"
	"github.com/coffer-backup/coffer/internal/provider/compute"
	"github.com/coffer-backup/coffer/internal/provider/dataprotection"
	"github.com/coffer-backup/coffer/internal/provider/resources"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is what `coffer serve` is told.
type Config struct {
	DataDir    string
	Addr       string // HTTPS listen address
	NBDAddr    string
	DBURL      string // "" = SQLite in the data dir
	BlobURL    string // "" = a directory in the data dir
	TLSCert    string
	TLSKey     string
	OIDCIssuer string
	Audiences  []string
	// OperationDelay delays every operation attempt (fault injection for
	// crash tests; hidden flag).
	OperationDelay time.Duration
	// PprofAddr, if set, serves net/http/pprof there (hidden flag, for
	// profiling benchmarks; pprof.go).
	PprofAddr string
	// GCInterval is how often unreferenced chunks are collected (0:
	// never), GCGrace how old an unreferenced chunk must be to go (must be
	// positive, see validate); VerifyInterval how often every referenced
	// chunk is read back and checked (0: never).
	GCInterval, GCGrace, VerifyInterval time.Duration
	// HoldHydration keeps disks made from snapshots from hydrating in this
	// process: they read their missing blocks from the snapshot until a
	// start without it. For tests that use a disk mid-hydration; it has no
	// flag, and HoldHydrationEnv set to anything turns it on.
	HoldHydration bool
	Logger        *slog.Logger
	Clock         clock.Clock
}

// HoldHydrationEnv is the environment variable that sets HoldHydration.
const HoldHydrationEnv = "COFFER_DEBUG_HOLD_HYDRATION"

// validate refuses options that would otherwise be accepted and read as
// something other than what they say. Errors name the serve flag.
func (cfg *Config) validate() error {
	// GC runs in every serve process, and processes sharing a --db may
	// share the bucket: an upload in another process is protected only by
	// the grace (this process's own uploads hold InFlight leases whatever
	// the grace). A zero or negative grace would let GC delete chunks such
	// an upload has written and not yet indexed, so it is refused rather
	// than read as "none" or as the default.
	if cfg.GCGrace <= 0 {
		return fmt.Errorf("--gc-grace %v: must be positive; it protects chunks that uploads in other coffer processes sharing the bucket have written but not yet indexed (on a single node, 1s is as good as none)", cfg.GCGrace)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--gc-interval", cfg.GCInterval}, {"--verify-interval", cfg.VerifyInterval}, {"--debug-operation-delay", cfg.OperationDelay}} {
		if d.v < 0 {
			return fmt.Errorf("%s %v: must not be negative (0 turns it off)", d.flag, d.v)
		}
	}
	switch {
	case cfg.TLSCert != "" && cfg.TLSKey == "":
		return errors.New("--tls-cert without --tls-key: give both, or neither for a self-signed certificate")
	case cfg.TLSKey != "" && cfg.TLSCert == "":
		return errors.New("--tls-key without --tls-cert: give both, or neither for a self-signed certificate")
	}
	return nil
}

// Run serves until ctx ends, then shuts down gracefully within 10 s.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if os.Getenv(HoldHydrationEnv) != "" {
		cfg.HoldHydration = true
	}
	log := cfg.Logger
	dir := DataDir(cfg.DataDir)
	if err := os.MkdirAll(string(dir), 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	lock, err := dir.Lock()
	if err != nil {
		return err
	}
	defer lock.Release()
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", cfg.Addr, err)
	}
	certPath, keyPath := cfg.TLSCert, cfg.TLSKey
	if certPath == "" {
		if certPath, keyPath, err = dir.EnsureTLS(host, cfg.Clock.Now()); err != nil {
			return fmt.Errorf("tls certificate: %w", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	signingKey, err := auth.LoadOrCreateKey(string(dir))
	if err != nil {
		return fmt.Errorf("token key: %w", err)
	}
	nodeID, err := dir.ID(NodeFile)
	if err != nil {
		return err
	}
	adminID, err := dir.ID(AdminFile)
	if err != nil {
		return err
	}
	tenantID, err := dir.ID(TenantFile)
	if err != nil {
		return err
	}

	dbURL := cfg.DBURL
	if dbURL == "" {
		dbURL = dir.Path(DBFile)
	}
	store, err := meta.Open(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("metadata store: %w", err)
	}
	defer store.Close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	endpoint := "https://" + endpointHost(ln.Addr().(*net.TCPAddr), host)

	verifier := auth.Verifier{Key: signingKey.Public().(ed25519.PublicKey), Clock: cfg.Clock,
		Audiences: append([]string{auth.ManagementAudience, endpoint, endpoint + "/"}, cfg.Audiences...)}
	if cfg.OIDCIssuer != "" {
		if verifier.OIDC, err = auth.NewOIDC(ctx, cfg.OIDCIssuer); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coffer_http_requests_total", Help: "ARM requests by route, method and status.",
	}, []string{"route", "method", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "coffer_http_request_duration_seconds", Help: "ARM request latency by route and method.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"route", "method"})
	reg.MustRegister(requests, latency)
	observe := func(route, method string, status int, elapsed time.Duration) {
		requests.WithLabelValues(route, method, fmt.Sprint(status)).Inc()
		latency.WithLabelValues(route, method).Observe(elapsed.Seconds())
	}

	runner := ops.New(store, cfg.Clock, log.With("component", "ops"), ops.Config{Owner: nodeID, StepDelay: cfg.OperationDelay,
		// Backups of many disks wait on the store's syncs more than on the
		// CPU: more of them in flight keeps a slot's backups close to it.
		Workers: 16})
	authz := &authorization.Service{Store: store, Clock: cfg.Clock}
	if err := authz.Bootstrap(ctx, adminID); err != nil {
		return fmt.Errorf("bootstrap administrator: %w", err)
	}
	sasKey, err := disk.LoadOrCreateSASKey(dir.Path(SASKeyFile))
	if err != nil {
		return fmt.Errorf("sas key: %w", err)
	}
	volumes := disk.NewVolumes(dir.Path(VolumeDir))
	defer volumes.Close()
	// A transient backend error (a dropped connection, a 503) is retried
	// here, so it does not fail the snapshot whose upload met it.
	chunks, err := chunk.Open(ctx, cfg.BlobURL, string(dir), chunk.Options{
		Wrap: func(b chunk.Backend) chunk.Backend { return chunk.NewRetry(b, chunk.RetryOptions{Clock: cfg.Clock}) },
	})
	if err != nil {
		return fmt.Errorf("chunk store: %w", err)
	}
	defer chunks.Close()
	if err := os.WriteFile(dir.Path(BlobURLFile), []byte(cfg.BlobURL+"\n"), 0o600); err != nil {
		return err
	}
	inflight := snapshot.NewInFlight()
	plane, err := wire(ctx, planeParts{Store: store, Clock: cfg.Clock, Runner: runner, Authz: authz, Verifier: verifier,
		Volumes: volumes, Chunks: chunks, InFlight: inflight, SASKey: sasKey, TenantID: tenantID, Log: log, Observe: observe})
	if err != nil {
		return err
	}
	router, engine, disks, protecting := plane.router, plane.engine, plane.disks, plane.backup
	sas := blobapi.NewHandler(disks.Signer, engine.Lookup, log.With("component", "blobapi"))

	// Disks are attached over NBD: the export name, from attach, is the
	// secret that opens a disk, so listing shows nothing.
	var nbdServer *nbd.Server
	if cfg.NBDAddr != "" {
		nln, err := net.Listen("tcp", cfg.NBDAddr)
		if err != nil {
			return fmt.Errorf("--nbd-addr: %w", err)
		}
		nbdHost, _, _ := net.SplitHostPort(cfg.NBDAddr)
		nbdAddress := endpointHost(nln.Addr().(*net.TCPAddr), nbdHost)
		disks.NBDAddress = func() string { return nbdAddress }
		nbdServer = &nbd.Server{Lookup: engine.NBDLookup, List: func(context.Context) []string { return []string{} },
			Logger: log.With("component", "nbd")}
		// Off loopback the export name (the disk's key) and the bytes must
		// not cross the network in clear: NBD_OPT_STARTTLS becomes mandatory,
		// with the server's certificate.
		if ip := net.ParseIP(nbdHost); ip == nil || !ip.IsLoopback() {
			nbdServer.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		}
		go func() {
			if err := nbdServer.Serve(nln); err != nil && !errors.Is(err, nbd.ErrServerClosed) {
				log.Error("nbd server", "err", err)
			}
		}()
		log.Info("serving NBD", "addr", nbdAddress)
	}

	health := func(w http.ResponseWriter, r *http.Request) {
		pctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := store.DB().PingContext(pctx); err != nil {
			log.Warn("health check", "err", err)
			http.Error(w, "metadata store unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	}
	metrics := requireToken(verifier, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// Not an http.ServeMux: it would redirect ARM paths with "//" (the SDKs
	// send /{scope} with a scope that starts with "/") instead of serving them.
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz" && r.Method == http.MethodGet:
			health(w, r)
		case r.URL.Path == "/metrics" && r.Method == http.MethodGet:
			metrics.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, "/sas/"):
			sas.ServeHTTP(w, r)
		default:
			router.ServeHTTP(w, r)
		}
	})

	runCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	// Before the runner starts: an operation rerun at start-up may delete
	// a snapshot the indexing is reading.
	if err := engine.IndexSnapshots(runCtx); err != nil {
		return fmt.Errorf("index snapshots: %w", err)
	}
	if err := runner.Start(runCtx); err != nil {
		return err
	}
	engine.Background = runCtx
	if cfg.HoldHydration {
		// Hydration stops when its context ends; one that has already
		// ended keeps every hydration from getting anywhere.
		held, cancel := context.WithCancel(runCtx)
		cancel()
		engine.Background = held
		log.Warn("hydration held: disks made from snapshots do not hydrate in this process")
	}
	if err := engine.ResumeHydration(runCtx); err != nil {
		return fmt.Errorf("resume hydration: %w", err)
	}
	// Scheduled backups and retention: on every node, each slot's
	// operation has a fixed id, so however many nodes fire it, it runs once.
	go protecting.Run(runCtx)
	maintenance := &Maintenance{Chunks: chunks, InFlight: inflight, Clock: cfg.Clock, Log: log.With("component", "maintenance"),
		GCInterval: cfg.GCInterval, GCGrace: cfg.GCGrace, VerifyInterval: cfg.VerifyInterval,
		Names: func(ctx context.Context) map[string]string {
			names, _ := disk.IndexNames(ctx, store) // whatever could be read names what it can
			return names
		},
		Healed: func(ctx context.Context) {
			if err := engine.ResumeHydration(ctx); err != nil {
				log.Error("resume hydration after a heal", "err", err)
			}
		}}
	go maintenance.Run(runCtx)
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if err := lock.SetEndpoint(endpoint); err != nil {
		return err
	}
	if err := os.WriteFile(dir.Path(EndpointFile), []byte(endpoint+"\n"), 0o644); err != nil {
		return err
	}
	if cfg.PprofAddr != "" {
		if err := servePprof(ctx, cfg.PprofAddr, dir); err != nil {
			return fmt.Errorf("pprof: %w", err)
		}
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
	log.Info("coffer serving", "endpoint", endpoint, "db", store.Driver(), "data_dir", cfg.DataDir, "node", nodeID)

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if nbdServer != nil {
		if nerr := nbdServer.Shutdown(shutdownCtx); nerr != nil && err == nil {
			err = nerr
		}
	}
	stopWork()
	runner.Wait()
	engine.WaitHydration()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// planeParts is what the control plane is built from: the stores and
// runners Run opens (or a test makes) before any request is served.
type planeParts struct {
	Store    meta.Store
	Clock    clock.Clock
	Runner   *ops.Runner
	Authz    *authorization.Service
	Verifier auth.Verifier
	Volumes  *disk.Volumes
	Chunks   *chunk.Store
	InFlight *snapshot.InFlight
	SASKey   []byte
	TenantID string
	Log      *slog.Logger
	Observe  arm.Observer
}

// controlPlane is the ARM front door and the engines behind it.
type controlPlane struct {
	router *arm.Router
	engine *disk.Engine
	disks  *compute.Service
	backup *backup.Service
}

// wire builds the control plane the one way both Run and the in-process
// tests use, so a test cannot drive a front door that lacks a guard or a
// route the served one has.
func wire(ctx context.Context, p planeParts) (*controlPlane, error) {
	log := p.Log
	router := arm.NewRouter(p.Verifier, p.Authz, log, p.Observe)
	engine := &disk.Engine{Store: p.Store, Clock: p.Clock, Volumes: p.Volumes, Chunks: p.Chunks, InFlight: p.InFlight,
		Permissions: p.Authz, Background: ctx, Log: log.With("component", "disk")}
	p.Volumes.Backing = engine.BackingReader
	disks := &compute.Service{Store: p.Store, Ops: p.Runner, Clock: p.Clock, Disks: engine,
		Signer: blobapi.Signer{Key: p.SASKey, Clock: p.Clock}}
	rgs := &resources.Service{Store: p.Store, Ops: p.Runner, Clock: p.Clock, Cascades: []resources.Cascade{engine}}
	rgs.Routes(router)
	p.Authz.Routes(router)
	protecting := &backup.Service{Store: p.Store, Clock: p.Clock, Disks: engine, Permissions: p.Authz, Data: engine,
		Snapshots: engine, Log: log.With("component", "backup")}
	// Guarded backups' snapshots go only through their vault.
	disks.Guard, rgs.Guards = protecting, []resources.Guard{protecting}
	protecting.Register(p.Runner)
	if _, err := protecting.Reindex(ctx); err != nil {
		return nil, fmt.Errorf("index backup instances: %w", err)
	}
	protection := &dataprotection.Service{Store: p.Store, Ops: p.Runner, Clock: p.Clock, TenantID: p.TenantID, Backup: protecting}
	protection.Routes(router)
	disks.Routes(router)
	return &controlPlane{router: router, engine: engine, disks: disks, backup: protecting}, nil
}

// Files of the disk data plane inside the data directory.
const (
	SASKeyFile = "keys/sas.key" // the SAS signing key, 32 random bytes
	VolumeDir  = "volumes"      // one volume directory per disk, named by its uniqueId
)

// endpointHost is the host:port clients use: loopback when listening on all
// interfaces.
func endpointHost(addr *net.TCPAddr, host string) string {
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("%s:%d", host, addr.Port)
}

func requireToken(v auth.Verifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			arm.WriteError(w, errs.E(errs.Unauthenticated, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."))
			return
		}
		if _, err := v.Verify(r.Context(), tok); err != nil {
			arm.WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}
