package server

import (
	"context"
	"encoding/json"

	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/provider/authorization"
	"github.com/coffer-backup/coffer/internal/provider/compute"
	"github.com/coffer-backup/coffer/internal/provider/resources"
)

// diskLocations answers backup's questions about disks from their stored
// documents until the disk engine answers them itself.
type diskLocations struct{ store meta.Store }

var _ backup.Disks = diskLocations{}

func (d diskLocations) DiskLocation(ctx context.Context, diskID string) (string, error) {
	res, err := d.store.GetResource(ctx, diskID)
	if err != nil {
		return "", err
	}
	var disk struct {
		Location string `json:"location"`
	}
	if err := json.Unmarshal(res.Body, &disk); err != nil {
		return "", err
	}
	return disk.Location, nil
}

// resourceGroups answers backup's questions about resource groups.
type resourceGroups struct{ store meta.Store }

var _ backup.Groups = resourceGroups{}

func (g resourceGroups) GroupExists(ctx context.Context, subscription, group string) error {
	_, err := resources.Get(ctx, g.store, subscription, group)
	return err
}

var (
	_ backup.Permissions = (*authorization.Service)(nil)
	_ backup.BackupData  = (*compute.Service)(nil)
)
