package compute

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/nbd"
	"github.com/coffer-backup/coffer/internal/volume"
)

// attachment is one host's attachment of a disk over NBD. The export name
// is the secret that lets an NBD client open the disk: unguessable,
// bound to this disk, void once detached.
type attachment struct {
	ID        string    `json:"id"`
	Export    string    `json:"export"`
	Principal string    `json:"principal"`
	Created   time.Time `json:"created"`
}

// Attachment is what attach answers: where to connect.
type Attachment struct {
	ID     string `json:"attachmentId"`
	NBDURI string `json:"nbdUri"`
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// attachRoutes registers attach and detach, coffer's stand-in for
// attaching a disk to a virtual machine.
func (s *Service) attachRoutes(r *arm.Router) {
	const disk = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/disks/{diskName}"
	r.Handle(arm.Route{Method: http.MethodPost, Pattern: disk + "/attach", Versions: Versions, Action: "Microsoft.Compute/disks/write", Handler: s.attach})
	r.Handle(arm.Route{Method: http.MethodPost, Pattern: disk + "/detach", Versions: Versions, Action: "Microsoft.Compute/disks/write", Handler: s.detach})
}

func (s *Service) attach(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group, name := r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("diskName")
	if s.NBDAddress == nil {
		return nil, errs.E(errs.Conflict, "OperationNotAllowed", "This server does not serve NBD (no --nbd-addr).")
	}
	id, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	export, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	a := attachment{ID: id, Export: export, Principal: r.Principal.ObjectID, Created: s.Clock.Now().UTC()}
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, err := load(ctx, tx, sub, group, name)
		if err != nil {
			return err
		}
		rec.settle(s.Clock.Now())
		switch {
		case rec.Properties.ProvisioningState != provisioningSucceeded:
			return notAllowed("Disk '%s' is %s; attach it when it has finished.", rec.Name, rec.Properties.ProvisioningState)
		case rec.Access != nil:
			return notAllowed("Disk '%s' has an active SAS (state %s); call endGetAccess first.", rec.Name, rec.Properties.DiskState)
		case rec.Properties.DiskState == StateReadyToUpload:
			return notAllowed("Disk '%s' is waiting for its upload; upload it before attaching.", rec.Name)
		case int32(len(rec.Attachments)) >= rec.Properties.MaxShares:
			return notAllowed("Disk '%s' has maxShares %d and is attached %d times already; detach it or use a shared disk (maxShares > 1).",
				rec.Name, rec.Properties.MaxShares, len(rec.Attachments))
		}
		rec.Attachments = append(rec.Attachments, a)
		rec.Properties.DiskState = StateAttached
		rec.ManagedBy = "coffer-nbd/" + rec.Attachments[0].ID
		_, err = s.save(ctx, tx, sub, group, rec)
		return err
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(Attachment{ID: id, NBDURI: "nbd://" + s.NBDAddress() + "/" + export}), nil
}

func (s *Service) detach(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, group, name := r.Param("subscriptionId"), r.Param("resourceGroupName"), r.Param("diskName")
	var in struct {
		AttachmentID string `json:"attachmentId"`
	}
	if len(strings.TrimSpace(string(r.Body))) > 0 {
		if err := r.Decode(&in); err != nil {
			return nil, err
		}
	}
	var gone []string
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, err := load(ctx, tx, sub, group, name)
		if err != nil {
			return err
		}
		kept := rec.Attachments[:0]
		for _, a := range rec.Attachments {
			if in.AttachmentID == "" || a.ID == in.AttachmentID {
				gone = append(gone, a.Export)
				continue
			}
			kept = append(kept, a)
		}
		if in.AttachmentID != "" && len(gone) == 0 {
			return errs.E(errs.NotFound, "AttachmentNotFound", "Disk '%s' has no attachment '%s'.", rec.Name, in.AttachmentID)
		}
		rec.Attachments = kept
		rec.ManagedBy = ""
		if len(kept) > 0 {
			rec.ManagedBy = "coffer-nbd/" + kept[0].ID
		} else if rec.Properties.DiskState == StateAttached {
			rec.Properties.DiskState = rec.restState()
		}
		_, err = s.save(ctx, tx, sub, group, rec)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Connections already open through a detached export stop at once.
	for _, e := range gone {
		s.exports.revoke(e)
	}
	return &arm.Response{Status: http.StatusOK}, nil
}

// liveExports tracks the exports connections have opened, so a detach can
// cut them off.
type liveExports struct {
	mu sync.Mutex
	m  map[string][]*revocable
}

func (l *liveExports) add(name string, e *revocable) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string][]*revocable{}
	}
	l.m[name] = append(l.m[name], e)
}

func (l *liveExports) remove(name string, e *revocable) {
	l.mu.Lock()
	defer l.mu.Unlock()
	list := l.m[name]
	for i, x := range list {
		if x == e {
			l.m[name] = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(l.m[name]) == 0 {
		delete(l.m, name)
	}
}

func (l *liveExports) revoke(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.m[name] {
		e.revoked.Store(true)
	}
}

// revocable is a volume exported over NBD until its attachment ends.
type revocable struct {
	*volume.Volume
	revoked atomic.Bool
}

var _ nbd.Export = (*revocable)(nil)

func detached() error {
	return errs.E(errs.Forbidden, "DiskDetached", "The disk was detached.")
}

func (e *revocable) ReadAt(p []byte, off int64) (int, error) {
	if e.revoked.Load() {
		return 0, detached()
	}
	return e.Volume.ReadAt(p, off)
}

func (e *revocable) WriteAt(p []byte, off int64) (int, error) {
	if e.revoked.Load() {
		return 0, detached()
	}
	return e.Volume.WriteAt(p, off)
}

func (e *revocable) Zero(off, n int64) error {
	if e.revoked.Load() {
		return detached()
	}
	return e.Volume.Zero(off, n)
}

func (e *revocable) Flush() error {
	if e.revoked.Load() {
		return detached()
	}
	return e.Volume.Flush()
}

// NBDLookup resolves an NBD export name to the disk attached under it. An
// unknown name is errs.NotFound, which the NBD server reports as an
// unknown export.
func (s *Service) NBDLookup(ctx context.Context, name string) (nbd.Export, func(), error) {
	unknown := errs.E(errs.NotFound, "UnknownExport", "no such export")
	if len(name) != 32 {
		return nil, nil, unknown
	}
	q := meta.Query{Type: DiskType, Limit: 1000}
	for {
		page, err := s.Store.ListResources(ctx, q)
		if err != nil {
			return nil, nil, err
		}
		for _, res := range page.Items {
			if !strings.Contains(string(res.Body), name) {
				continue
			}
			var rec record
			if err := json.Unmarshal(res.Body, &rec); err != nil {
				return nil, nil, err
			}
			for _, a := range rec.Attachments {
				if a.Export != name {
					continue
				}
				uid := rec.Properties.UniqueID
				vol, err := s.Volumes.Open(uid)
				if err != nil {
					return nil, nil, err
				}
				e := &revocable{Volume: vol}
				s.exports.add(name, e)
				return e, func() { s.exports.remove(name, e); s.Volumes.Release(uid) }, nil
			}
		}
		if page.Next == "" {
			return nil, nil, unknown
		}
		q.After = page.Next
	}
}
