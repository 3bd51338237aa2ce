package chunk

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/coffer-backup/coffer/internal/errs"
)

// KeySize is the length of a chunk key: AES-256.
const KeySize = 32

// KeyPath is where LoadOrCreateKey keeps the chunk key under a data dir.
func KeyPath(dataDir string) string { return filepath.Join(dataDir, "keys", "chunk.key") }

// LoadOrCreateKey returns the chunk key in <dataDir>/keys/chunk.key, creating
// it (32 random bytes, written as 64 hex digits and a newline, mode 0600)
// if it does not exist yet. Creation is atomic: the key is written and
// fsynced under a temporary name and then hard-linked into place, so two
// processes racing to create it agree on one key and a crash never leaves a
// short key file behind.
//
// Losing this file loses every encrypted chunk. Nodes that share a bucket
// must share the key.
func LoadOrCreateKey(dataDir string) ([]byte, error) {
	path := KeyPath(dataDir)
	if key, err := readKey(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errs.E(errs.Internal, "KeyCreateFailed", "creating %s", dir).Wrap(err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, errs.E(errs.Internal, "KeyCreateFailed", "reading randomness").Wrap(err)
	}
	tmp, err := os.CreateTemp(dir, ".chunk.key.*") // CreateTemp uses mode 0600
	if err != nil {
		return nil, errs.E(errs.Internal, "KeyCreateFailed", "creating a key in %s", dir).Wrap(err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), path)
	}
	if errors.Is(err, fs.ErrExist) {
		return readKey(path) // another process won the race; use its key
	}
	if err != nil {
		return nil, errs.E(errs.Internal, "KeyCreateFailed", "writing %s", path).Wrap(err)
	}
	if err := syncDir(dir); err != nil {
		return nil, errs.E(errs.Internal, "KeyCreateFailed", "syncing %s", dir).Wrap(err)
	}
	return key, nil
}

func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, errs.E(errs.Internal, "KeyUnreadable", "reading %s", path).Wrap(err)
	}
	key, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(key) != KeySize {
		return nil, errs.E(errs.Internal, "KeyCorrupt", "%s does not hold %d hex-encoded bytes", path, KeySize)
	}
	return key, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
