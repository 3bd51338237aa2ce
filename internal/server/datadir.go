package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// DataDir is the layout of a coffer data directory.
type DataDir string

// Path joins elem onto the directory.
func (d DataDir) Path(elem ...string) string {
	return filepath.Join(append([]string{string(d)}, elem...)...)
}

// Files inside the data directory.
const (
	TLSCertFile  = "tls/cert.pem"
	TLSKeyFile   = "tls/key.pem"
	EndpointFile = "endpoint"   // the https URL serve is listening on
	AdminFile    = "admin-id"   // the bootstrap administrator's object id
	TenantFile   = "tenant-id"  // the tenant id tokens carry
	NodeFile     = "node-id"    // this node's id, the owner of its operation leases
	DBFile       = "coffer.db"  // the default SQLite store
	BlobDir      = "blobs"      // the default chunk store
	BlobURLFile  = "blob-url"   // the --blob serve uses, for coffer verify
	LockFile     = "lock"       // flock(2)ed by the serve that owns the directory
	OwnerFile    = "lock.owner" // that serve's PID and endpoint, for the error a second one gives
)

// Lock is a data directory held by this process; see DataDir.Lock.
type Lock struct {
	dir DataDir
	f   *os.File
}

// Lock takes the data directory for this process: an exclusive flock(2)
// on its lock file, held until Release or the process's end (the kernel
// drops it on a crash, so nothing stale is left to clean up). Two serves
// on one directory would share its SQLite store, volumes and keys, and
// the second would overwrite the endpoint file that every client reads.
// If another process holds the lock, the error names it with what it
// wrote to the owner file: its PID and, once it serves, its endpoint.
func (d DataDir) Lock() (*Lock, error) {
	f, err := os.OpenFile(d.Path(LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			owner := "another process"
			if raw, rerr := os.ReadFile(d.Path(OwnerFile)); rerr == nil && len(strings.TrimSpace(string(raw))) > 0 {
				owner = "coffer " + strings.Join(strings.Fields(string(raw)), " ")
			}
			return nil, fmt.Errorf("data directory %s is in use by %s; stop it first, or give this one another --data-dir", d, owner)
		}
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	l := &Lock{dir: d, f: f}
	if err := l.SetEndpoint(""); err != nil {
		l.Release()
		return nil, err
	}
	return l, nil
}

// SetEndpoint records this process's PID and endpoint in the owner file.
func (l *Lock) SetEndpoint(endpoint string) error {
	owner := fmt.Sprintf("pid %d", os.Getpid())
	if endpoint != "" {
		owner += " serving " + endpoint
	}
	path := l.dir.Path(OwnerFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(owner+"\n"), 0o644); err != nil {
		return fmt.Errorf("data directory owner: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("data directory owner: %w", err)
	}
	return nil
}

// Release removes the owner file and drops the lock.
func (l *Lock) Release() error {
	os.Remove(l.dir.Path(OwnerFile))
	return l.f.Close() // closing the only descriptor drops the flock
}

// ID returns the GUID kept in file, creating it on first use.
func (d DataDir) ID(file string) (string, error) {
	path := d.Path(file)
	raw, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(raw))
		if _, perr := uuid.Parse(id); perr != nil {
			return "", fmt.Errorf("%s: not a GUID", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return "", err
	}
	id := uuid.NewString()
	tmp := path + ".tmp-" + uuid.NewString()
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return d.ID(file)
		}
		return "", err
	}
	return id, nil
}

// EnsureTLS creates a self-signed certificate for the loopback names and
// host unless one exists, and returns the cert and key paths.
func (d DataDir) EnsureTLS(host string, now time.Time) (certPath, keyPath string, err error) {
	certPath, keyPath = d.Path(TLSCertFile), d.Path(TLSKeyFile)
	if _, err := os.Stat(certPath); err == nil {
		return certPath, keyPath, nil
	}
	if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "coffer", Organization: []string{"coffer self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if host != "" {
		if ip := net.ParseIP(host); ip != nil {
			if !ip.IsLoopback() && !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if host != "localhost" {
			tmpl.DNSNames = append(tmpl.DNSNames, host)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// AdminToken mints a bearer token for the bootstrap administrator of the
// data directory dir, signed with its key, valid for ttl: what a tool on
// the server's machine (the CLI, a benchmark) acts as. name says who holds
// it.
func AdminToken(dir, name string, ttl time.Duration) (string, error) {
	key, err := auth.LoadOrCreateKey(dir)
	if err != nil {
		return "", err
	}
	d := DataDir(dir)
	admin, err := d.ID(AdminFile)
	if err != nil {
		return "", err
	}
	tenant, err := d.ID(TenantFile)
	if err != nil {
		return "", err
	}
	return auth.Signer{Key: key, TenantID: tenant, Clock: clock.Real{}}.Mint(admin, name, ttl)
}

// AwaitEndpoint waits for a starting serve to write its endpoint into the
// directory (it writes the file empty first, then the URL) and returns the
// URL. It gives up when exited is closed (the process ended) or after
// timeout, with an error that says which.
func (d DataDir) AwaitEndpoint(exited <-chan struct{}, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		raw, err := os.ReadFile(d.Path(EndpointFile))
		if url := strings.TrimSpace(string(raw)); err == nil && url != "" {
			return url, nil
		}
		select {
		case <-exited:
			return "", errors.New("coffer serve exited at start")
		default:
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("coffer serve did not start in %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CertPool trusts the directory's TLS certificate, the self-signed one
// serve made unless it was given another.
func (d DataDir) CertPool() (*x509.CertPool, error) {
	raw, err := os.ReadFile(d.Path(TLSCertFile))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("%s holds no PEM certificate", d.Path(TLSCertFile))
	}
	return pool, nil
}
