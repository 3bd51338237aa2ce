package server

import (
	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/provider/authorization"
)

// What the backup engine asks of the rest, and who answers.
var (
	_ backup.Disks       = (*disk.Engine)(nil)
	_ backup.BackupData  = (*disk.Engine)(nil)
	_ backup.Permissions = (*authorization.Service)(nil)
)
