package compute

import (
	"encoding/json"
	"regexp"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
)

// DiskType is the ARM type of a managed disk.
const DiskType = "Microsoft.Compute/disks"

// Disk states (DiskState in the Compute API).
const (
	StateUnattached    = "Unattached"
	StateAttached      = "Attached"
	StateActiveSAS     = "ActiveSAS"
	StateReadyToUpload = "ReadyToUpload"
	StateActiveUpload  = "ActiveUpload"
)

// Provisioning states a disk shows.
const (
	provisioningSucceeded = "Succeeded"
	provisioningUpdating  = "Updating"
	provisioningDeleting  = "Deleting"
)

// Create options served; the rest of DiskCreateOption is refused.
const (
	createEmpty  = "Empty"
	createUpload = "Upload"
)

const (
	gib = int64(1) << 30
	// maxDiskSizeGB is Azure's largest managed disk.
	maxDiskSizeGB = 32767
	// minUploadBytes is Azure's smallest upload: 20 MiB plus a VHD footer.
	minUploadBytes = 20<<20 + 512
	// maxUploadBytes is the largest disk plus the footer.
	maxUploadBytes = maxDiskSizeGB*gib + 512
)

// Disk is the wire form of a managed disk.
type Disk struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	ManagedBy  string            `json:"managedBy,omitempty"`
	SKU        SKU               `json:"sku"`
	Properties DiskProperties    `json:"properties"`
}

// SKU is the disk's storage account type.
type SKU struct {
	Name string `json:"name"`
	Tier string `json:"tier,omitempty"`
}

// DiskProperties are the properties coffer keeps and shows.
type DiskProperties struct {
	OSType              string       `json:"osType,omitempty"`
	HyperVGeneration    string       `json:"hyperVGeneration,omitempty"`
	CreationData        CreationData `json:"creationData"`
	DiskSizeGB          int64        `json:"diskSizeGB"`
	DiskSizeBytes       int64        `json:"diskSizeBytes"`
	UniqueID            string       `json:"uniqueId"`
	TimeCreated         time.Time    `json:"timeCreated"`
	ProvisioningState   string       `json:"provisioningState"`
	DiskState           string       `json:"diskState"`
	DiskIOPSReadWrite   int64        `json:"diskIOPSReadWrite"`
	DiskMBpsReadWrite   int64        `json:"diskMBpsReadWrite"`
	MaxShares           int32        `json:"maxShares"`
	Encryption          Encryption   `json:"encryption"`
	NetworkAccessPolicy string       `json:"networkAccessPolicy"`
	PublicNetworkAccess string       `json:"publicNetworkAccess"`
	DataAccessAuthMode  string       `json:"dataAccessAuthMode"`
}

// CreationData says where a disk's first bytes came from.
type CreationData struct {
	CreateOption     string `json:"createOption"`
	UploadSizeBytes  int64  `json:"uploadSizeBytes,omitempty"`
	SourceResourceID string `json:"sourceResourceId,omitempty"`
	SourceUniqueID   string `json:"sourceUniqueId,omitempty"`
}

// Encryption is always platform-managed keys on coffer.
type Encryption struct {
	Type string `json:"type"`
}

// record is a disk's stored body: the wire document and what only coffer
// sees.
type record struct {
	Disk
	// Access is the live SAS grant, nil when none.
	Access *access `json:"cofferAccess,omitempty"`
	// RestState is the state the disk returns to when its access ends
	// (Unattached, or ReadyToUpload while an Upload disk waits for bytes).
	RestState string `json:"cofferRestState,omitempty"`
	// Family is the incrementalSnapshotFamilyId its snapshots share; a
	// disk recreated under the same name starts a new family.
	Family string `json:"cofferSnapshotFamily,omitempty"`
	// ChangeBase is the index of the snapshot the volume's change set is
	// relative to: the previous snapshot of an incremental one.
	ChangeBase string `json:"cofferChangeBase,omitempty"`
	// RestoreFrom is the snapshot index a disk created by Copy is made
	// from, until its provisioning has set it up.
	RestoreFrom string `json:"cofferRestoreFrom,omitempty"`
	// Hydrating is the index the disk's unwritten blocks are still read
	// from (its own copy of the snapshot's, hydrate/<uniqueId>), until
	// the background hydration has made the disk standalone.
	Hydrating string `json:"cofferHydrating,omitempty"`
	// Attachments are the hosts the disk is attached to over NBD.
	Attachments []attachment `json:"cofferAttachments,omitempty"`
}

// access is one grant of SAS access.
type access struct {
	ID      string    `json:"id"`
	Write   bool      `json:"write"`
	Expires time.Time `json:"expires"`
}

// settle drops an expired access, returning the disk to its resting state.
// It reports whether anything changed.
func (r *record) settle(now time.Time) bool {
	if r.Access == nil || now.Before(r.Access.Expires) {
		return false
	}
	r.endAccess()
	return true
}

// endAccess revokes the access. An Upload disk whose write access ends has
// had its upload: it rests Unattached from then on, as on Azure.
func (r *record) endAccess() {
	if r.Access != nil && r.Access.Write {
		r.RestState = StateUnattached
	}
	r.Access = nil
	r.Properties.DiskState = r.restState()
}

func (r *record) restState() string {
	if r.RestState == "" {
		return StateUnattached
	}
	return r.RestState
}

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

func invalid(target, format string, args ...any) error {
	return errs.E(errs.Invalid, "InvalidParameter", format, args...).WithTarget(target)
}

var diskName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,80}$`)

func checkDiskName(name string) error {
	if !diskName.MatchString(name) {
		return errs.E(errs.Invalid, "InvalidResourceName",
			"The resource name '%s' is invalid: disk names are 1 to 80 letters, digits, '_', '.' or '-'.", name).WithTarget("diskName")
	}
	return nil
}

// skuTiers maps each DiskStorageAccountTypes value to its tier and a
// plausible provisioned performance (IOPS, MB/s) for a small disk.
var skuTiers = map[string]struct {
	tier       string
	iops, mbps int64
}{
	"Standard_LRS":    {"Standard", 500, 60},
	"StandardSSD_LRS": {"StandardSSD", 500, 60},
	"StandardSSD_ZRS": {"StandardSSD", 500, 60},
	"Premium_LRS":     {"Premium", 500, 100},
	"Premium_ZRS":     {"Premium", 500, 100},
	"PremiumV2_LRS":   {"PremiumV2", 3000, 125},
	"UltraSSD_LRS":    {"Ultra", 3000, 125},
}

// canonicalSKU returns the SKU name in Azure's casing, or an error.
func canonicalSKU(name string) (string, error) {
	for k := range skuTiers {
		if strings.EqualFold(k, name) {
			return k, nil
		}
	}
	return "", invalid("sku.name", "The value '%s' of sku.name is not a disk storage account type; use one of Standard_LRS, StandardSSD_LRS, StandardSSD_ZRS, Premium_LRS, Premium_ZRS, PremiumV2_LRS or UltraSSD_LRS.", name)
}

func (d *Disk) setSKU(name string) {
	t := skuTiers[name]
	d.SKU = SKU{Name: name, Tier: t.tier}
	d.Properties.DiskIOPSReadWrite, d.Properties.DiskMBpsReadWrite = t.iops, t.mbps
}

func (d *Disk) setSize(bytes int64) {
	d.Properties.DiskSizeBytes = bytes
	d.Properties.DiskSizeGB = (bytes + gib - 1) / gib
}

func checkSizeGB(gb int64) error {
	if gb < 1 || gb > maxDiskSizeGB {
		return invalid("diskSizeGB", "The value %d of diskSizeGB is out of range: a disk is 1 to %d GiB.", gb, maxDiskSizeGB)
	}
	return nil
}

func checkUploadSize(n int64) error {
	if n < minUploadBytes || n > maxUploadBytes || n%512 != 0 {
		return invalid("creationData.uploadSizeBytes",
			"The value %d of creationData.uploadSizeBytes is invalid: it must be a multiple of 512 from %d (20 MiB plus a 512-byte VHD footer) to %d bytes.",
			n, int64(minUploadBytes), int64(maxUploadBytes))
	}
	return nil
}

// normalizeLocation lower-cases and drops spaces, as ARM echoes "West US"
// back as "westus".
func normalizeLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
}

func decodeRecord(body json.RawMessage) (record, error) {
	var r record
	err := json.Unmarshal(body, &r)
	return r, err
}
