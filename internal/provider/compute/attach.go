package compute

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

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
	a := disk.Attachment{ID: id, Export: export, Principal: r.Principal.ObjectID, Created: s.Clock.Now().UTC()}
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		rec, err := disk.Load(ctx, tx, sub, group, name)
		if err != nil {
			return err
		}
		rec.Settle(s.Clock.Now())
		switch {
		case rec.Properties.ProvisioningState != disk.ProvisioningSucceeded:
			return notAllowed("Disk '%s' is %s; attach it when it has finished.", rec.Name, rec.Properties.ProvisioningState)
		case rec.Access != nil:
			return notAllowed("Disk '%s' has an active SAS (state %s); call endGetAccess first.", rec.Name, rec.Properties.DiskState)
		case rec.Properties.DiskState == disk.StateReadyToUpload:
			return notAllowed("Disk '%s' is waiting for its upload; upload it before attaching.", rec.Name)
		case int32(len(rec.Attachments)) >= rec.Properties.MaxShares:
			return notAllowed("Disk '%s' has maxShares %d and is attached %d times already; detach it or use a shared disk (maxShares > 1).",
				rec.Name, rec.Properties.MaxShares, len(rec.Attachments))
		}
		rec.Attachments = append(rec.Attachments, a)
		rec.Properties.DiskState = disk.StateAttached
		rec.ManagedBy = "coffer-nbd/" + rec.Attachments[0].ID
		_, err = s.Disks.Save(ctx, tx, rec)
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
		rec, err := disk.Load(ctx, tx, sub, group, name)
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
		} else if rec.Properties.DiskState == disk.StateAttached {
			rec.Properties.DiskState = rec.Rest()
		}
		_, err = s.Disks.Save(ctx, tx, rec)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Connections already open through a detached export stop at once.
	s.Disks.RevokeExports(gone)
	return &arm.Response{Status: http.StatusOK}, nil
}
