package compute

import (
	"regexp"

	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/errs"
)

// diskInput is what PUT and PATCH accept; pointers tell absent from zero.
type diskInput struct {
	Location *string            `json:"location"`
	Tags     *map[string]string `json:"tags"`
	SKU      *struct {
		Name *string `json:"name"`
	} `json:"sku"`
	Properties *struct {
		CreationData *struct {
			CreateOption     *string `json:"createOption"`
			UploadSizeBytes  *int64  `json:"uploadSizeBytes"`
			SourceResourceID *string `json:"sourceResourceId"`
		} `json:"creationData"`
		DiskSizeGB       *int64  `json:"diskSizeGB"`
		OSType           *string `json:"osType"`
		HyperVGeneration *string `json:"hyperVGeneration"`
		MaxShares        *int32  `json:"maxShares"`
	} `json:"properties"`
}

func invalid(target, format string, args ...any) error { return disk.Invalid(target, format, args...) }

func notAllowed(format string, args ...any) error { return disk.NotAllowed(format, args...) }

var diskName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,80}$`)

func checkDiskName(name string) error {
	if !diskName.MatchString(name) {
		return errs.E(errs.Invalid, "InvalidResourceName",
			"The resource name '%s' is invalid: disk names are 1 to 80 letters, digits, '_', '.' or '-'.", name).WithTarget("diskName")
	}
	return nil
}
