package disk

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/volume"
	"github.com/google/uuid"
)

// Volumes is the registry of the volumes this process has open, one
// directory per disk under Root, named by the disk's unique id. A volume
// directory can be open only once (volume.Open locks it), so every user in
// the process (the SAS data plane, resizes, NBD exports) shares the one
// *volume.Volume: Open hands it out and counts the reference, Release gives
// it back, and the last Release closes it. Safe for concurrent use.
type Volumes struct {
	// Root is the directory that holds the volumes, <data-dir>/volumes.
	Root string
	// Backing opens the image a volume made from a snapshot still reads
	// from (a chunk-store index); set before volumes are opened.
	Backing func(name string) (io.ReaderAt, error)

	mu   sync.Mutex
	open map[string]*openVolume
}

type openVolume struct {
	vol  *volume.Volume
	refs int
}

// NewVolumes returns a registry of the volumes under root.
func NewVolumes(root string) *Volumes {
	return &Volumes{Root: root, open: map[string]*openVolume{}}
}

// Dir is the directory of the volume with this unique id.
func (v *Volumes) Dir(uniqueID string) string { return filepath.Join(v.Root, uniqueID) }

func checkUniqueID(id string) error {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return fmt.Errorf("disk: %q is not a volume id", id)
	}
	return nil
}

// Ensure creates the volume of size bytes unless it exists, and grows an
// existing smaller one to size. It is how the create and update operations
// stay idempotent: a handler that ran before a crash finds its volume and
// carries on.
func (v *Volumes) Ensure(uniqueID string, size int64) error {
	if err := checkUniqueID(uniqueID); err != nil {
		return err
	}
	// Created under the registry's lock: volume.Create holds the volume's
	// file lock while it writes, and a concurrent Open (another operation
	// on the same disk, a SAS read) would find it locked and fail.
	v.mu.Lock()
	if v.open[uniqueID] == nil {
		created, err := volume.Create(v.Dir(uniqueID), size)
		if err == nil {
			err = created.Close()
			v.mu.Unlock()
			return err
		}
		if !errs.Is(err, errs.Conflict) {
			v.mu.Unlock()
			return err
		}
	}
	v.mu.Unlock()
	vol, err := v.Open(uniqueID)
	if err != nil {
		return err
	}
	defer v.Release(uniqueID)
	if vol.Size() < size {
		return vol.Grow(size)
	}
	return nil
}

// Open returns the shared volume with this unique id, opening it on first
// use. Every successful Open must be paired with one Release. A missing
// volume is an errs.NotFound error.
func (v *Volumes) Open(uniqueID string) (*volume.Volume, error) {
	if err := checkUniqueID(uniqueID); err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if ov := v.open[uniqueID]; ov != nil {
		ov.refs++
		return ov.vol, nil
	}
	vol, err := volume.Open(v.Dir(uniqueID))
	if err != nil {
		return nil, err
	}
	if name := vol.Backing(); name != "" {
		if v.Backing == nil {
			vol.Close()
			return nil, fmt.Errorf("disk: volume %s reads from %s but no backing is configured", uniqueID, name)
		}
		src, err := v.Backing(name)
		if err != nil {
			vol.Close()
			return nil, err
		}
		vol.SetBacking(src)
	}
	v.open[uniqueID] = &openVolume{vol: vol, refs: 1}
	return vol, nil
}

// EnsureBacked creates the volume of size bytes reading from backing
// unless it exists.
func (v *Volumes) EnsureBacked(uniqueID string, size int64, backing string) error {
	if err := checkUniqueID(uniqueID); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.open[uniqueID] != nil {
		return nil
	}
	created, err := volume.CreateBacked(v.Dir(uniqueID), size, backing)
	if err != nil {
		return err
	}
	return created.Close()
}

// Release gives back a reference Open handed out; the last one closes the
// volume (which flushes it).
func (v *Volumes) Release(uniqueID string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	ov := v.open[uniqueID]
	if ov == nil {
		return fmt.Errorf("disk: release of volume %s that is not open", uniqueID)
	}
	ov.refs--
	if ov.refs > 0 {
		return nil
	}
	delete(v.open, uniqueID)
	return ov.vol.Close()
}

// InUse reports how many references to the volume are out.
func (v *Volumes) InUse(uniqueID string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ov := v.open[uniqueID]; ov != nil {
		return ov.refs
	}
	return 0
}

// Remove deletes the volume's directory. A volume still in use is an
// errs.Transient error (the operation that asked is retried once the
// users let go); a missing one is not an error, so Remove is idempotent.
func (v *Volumes) Remove(uniqueID string) error {
	if err := checkUniqueID(uniqueID); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if ov := v.open[uniqueID]; ov != nil {
		return errs.E(errs.Transient, "VolumeInUse", "The disk's volume is in use; try again later.").
			Wrap(fmt.Errorf("volume %s has %d users", uniqueID, ov.refs))
	}
	err := os.RemoveAll(v.Dir(uniqueID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Close closes every open volume, whatever its references; the server
// calls it once nothing serves requests any more.
func (v *Volumes) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var first error
	for id, ov := range v.open {
		if err := ov.vol.Close(); err != nil && first == nil {
			first = err
		}
		delete(v.open, id)
	}
	return first
}
