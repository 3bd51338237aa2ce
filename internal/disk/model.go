package disk

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/google/uuid"
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
	ProvisioningSucceeded = "Succeeded"
	ProvisioningUpdating  = "Updating"
	ProvisioningFailed    = "Failed"
	ProvisioningDeleting  = "Deleting"
)

// Create options served; the rest of DiskCreateOption is refused.
const (
	CreateEmpty  = "Empty"
	CreateUpload = "Upload"
)

const (
	GiB = int64(1) << 30
	// maxDiskSizeGB is Azure's largest managed disk.
	MaxDiskSizeGB = 32767
	// minUploadBytes is Azure's smallest upload: 20 MiB plus a VHD footer.
	MinUploadBytes = 20<<20 + 512
	// maxUploadBytes is the largest disk plus the footer.
	MaxUploadBytes = MaxDiskSizeGB*GiB + 512
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
	// CompletionPercent is how much of a disk made from a snapshot is
	// local yet, while it hydrates (Azure's background-copy progress);
	// absent otherwise.
	CompletionPercent *float64 `json:"completionPercent,omitempty"`
	// HydrationError is coffer's own property: the disk was made from a
	// snapshot whose chunk at these bytes cannot be read back, so its
	// hydration stopped and reads of that range fail with an I/O error.
	// Azure has no damaged disk state; the disk stays Succeeded, since the
	// rest of it reads and writes, and this says what is lost. It goes
	// once a hydration completes (after a backup stored the chunk again).
	HydrationError *HydrationError `json:"cofferHydrationError,omitempty"`
}

// HydrationError says where a disk's hydration met a chunk it cannot read.
type HydrationError struct {
	Offset      int64     `json:"offset"`      // first byte of the damaged range
	Length      int64     `json:"length"`      // bytes in it
	ChunkDigest string    `json:"chunkDigest"` // the chunk that holds them
	Code        string    `json:"code"`        // ChunkCorrupt, ChunkNotFound
	Message     string    `json:"message"`
	Time        time.Time `json:"time"`
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

// Record is a disk's stored body: the wire document and what only coffer
// sees.
type Record struct {
	Disk
	// Access is the live SAS grant, nil when none.
	Access *Access `json:"cofferAccess,omitempty"`
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
	// CreatedBy names the request that made the disk (a restore job), so
	// that request's retry finishes the disk instead of finding its name
	// taken; empty for disks made through Microsoft.Compute.
	CreatedBy string `json:"cofferCreatedBy,omitempty"`
	// Attachments are the hosts the disk is attached to over NBD.
	Attachments []Attachment `json:"cofferAttachments,omitempty"`
}

// Access is one grant of SAS access.
type Access struct {
	ID      string    `json:"id"`
	Write   bool      `json:"write"`
	Expires time.Time `json:"expires"`
}

// Settle drops an expired access, returning the disk to its resting state.
// It reports whether anything changed.
func (r *Record) Settle(now time.Time) bool {
	if r.Access == nil || now.Before(r.Access.Expires) {
		return false
	}
	r.EndAccess()
	return true
}

// EndAccess revokes the access. An Upload disk whose write access ends has
// had its upload: it rests Unattached from then on, as on Azure.
func (r *Record) EndAccess() {
	if r.Access != nil && r.Access.Write {
		r.RestState = StateUnattached
	}
	r.Access = nil
	r.Properties.DiskState = r.Rest()
}

func (r *Record) Rest() string {
	if r.RestState == "" {
		return StateUnattached
	}
	return r.RestState
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

// CanonicalSKU returns the SKU name in Azure's casing, or an error.
func CanonicalSKU(name string) (string, error) {
	for k := range skuTiers {
		if strings.EqualFold(k, name) {
			return k, nil
		}
	}
	return "", Invalid("sku.name", "The value '%s' of sku.name is not a disk storage account type; use one of Standard_LRS, StandardSSD_LRS, StandardSSD_ZRS, Premium_LRS, Premium_ZRS, PremiumV2_LRS or UltraSSD_LRS.", name)
}

func (d *Disk) SetSKU(name string) {
	t := skuTiers[name]
	d.SKU = SKU{Name: name, Tier: t.tier}
	d.Properties.DiskIOPSReadWrite, d.Properties.DiskMBpsReadWrite = t.iops, t.mbps
}

func (d *Disk) SetSize(bytes int64) {
	d.Properties.DiskSizeBytes = bytes
	d.Properties.DiskSizeGB = (bytes + GiB - 1) / GiB
}

func CheckSizeGB(gb int64) error {
	if gb < 1 || gb > MaxDiskSizeGB {
		return Invalid("diskSizeGB", "The value %d of diskSizeGB is out of range: a disk is 1 to %d GiB.", gb, MaxDiskSizeGB)
	}
	return nil
}

func CheckUploadSize(n int64) error {
	if n < MinUploadBytes || n > MaxUploadBytes || n%512 != 0 {
		return Invalid("creationData.uploadSizeBytes",
			"The value %d of creationData.uploadSizeBytes is invalid: it must be a multiple of 512 from %d (20 MiB plus a 512-byte VHD footer) to %d bytes.",
			n, int64(MinUploadBytes), int64(MaxUploadBytes))
	}
	return nil
}

// NormalizeLocation lower-cases and drops spaces, as ARM echoes "West US"
// back as "westus".
func NormalizeLocation(l string) string { return arm.NormalizeLocation(l) }

// DecodeRecord reads a disk's stored body.
func DecodeRecord(body json.RawMessage) (Record, error) {
	var r Record
	err := json.Unmarshal(body, &r)
	return r, err
}

// Invalid is the 400 for a bad value of the request field target.
func Invalid(target, format string, args ...any) error {
	return errs.E(errs.Invalid, "InvalidParameter", format, args...).WithTarget(target)
}

// NotAllowed is Compute's 409 for an operation the resource's state
// forbids.
func NotAllowed(format string, args ...any) error {
	return errs.E(errs.Conflict, "OperationNotAllowed", format, args...)
}

// SnapshotType is the ARM type of a snapshot.
const SnapshotType = "Microsoft.Compute/snapshots"

// MaxIncrementalSnapshots is Azure's limit of incremental snapshots a disk.
const MaxIncrementalSnapshots = 500

// Snapshot is the document of a snapshot: what ARM shows of it.
type Snapshot struct {
	ID         string             `json:"id"`
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Location   string             `json:"location"`
	Tags       map[string]string  `json:"tags,omitempty"`
	SKU        SKU                `json:"sku"`
	Properties SnapshotProperties `json:"properties"`
}

// SnapshotProperties are what a snapshot shows.
type SnapshotProperties struct {
	OSType                      string       `json:"osType,omitempty"`
	HyperVGeneration            string       `json:"hyperVGeneration,omitempty"`
	CreationData                CreationData `json:"creationData"`
	DiskSizeGB                  int64        `json:"diskSizeGB"`
	DiskSizeBytes               int64        `json:"diskSizeBytes"`
	UniqueID                    string       `json:"uniqueId"`
	TimeCreated                 time.Time    `json:"timeCreated"`
	ProvisioningState           string       `json:"provisioningState"`
	DiskState                   string       `json:"diskState"`
	Incremental                 bool         `json:"incremental"`
	IncrementalSnapshotFamilyID string       `json:"incrementalSnapshotFamilyId,omitempty"`
	CompletionPercent           float64      `json:"completionPercent"`
	Encryption                  Encryption   `json:"encryption"`
	NetworkAccessPolicy         string       `json:"networkAccessPolicy"`
	PublicNetworkAccess         string       `json:"publicNetworkAccess"`
	DataAccessAuthMode          string       `json:"dataAccessAuthMode"`
}

// SnapshotRecord is a snapshot's stored body.
type SnapshotRecord struct {
	Snapshot
	Access *Access `json:"cofferAccess,omitempty"`
	// Index is the chunk-store index that holds the snapshot's bytes.
	Index string `json:"cofferIndex"`
}

// Settle drops an expired access; it reports whether anything changed.
func (r *SnapshotRecord) Settle(now time.Time) bool {
	if r.Access == nil || now.Before(r.Access.Expires) {
		return false
	}
	r.Access = nil
	r.Properties.DiskState = StateUnattached
	return true
}

// Attachment is one host's attachment of a disk over NBD. The export name
// is the secret that lets an NBD client open the disk: unguessable, bound
// to this disk, void once detached.
type Attachment struct {
	ID        string    `json:"id"`
	Export    string    `json:"export"`
	Principal string    `json:"principal"`
	Created   time.Time `json:"created"`
}

// NewRecord is the first record of a new disk id in location: Updating until
// its provisioning has made the volume, with a fresh unique id. The caller
// sets its size and creation data.
func NewRecord(id, location, sku string, now time.Time) Record {
	name := id[strings.LastIndex(id, "/")+1:]
	rec := Record{Disk: Disk{
		ID: id, Name: name, Type: DiskType, Location: NormalizeLocation(location),
		Properties: DiskProperties{
			UniqueID: uuid.NewString(), TimeCreated: now.UTC(), ProvisioningState: ProvisioningUpdating,
			MaxShares: 1, Encryption: Encryption{Type: "EncryptionAtRestWithPlatformKey"},
			NetworkAccessPolicy: "AllowAll", PublicNetworkAccess: "Enabled", DataAccessAuthMode: "None",
		},
	}}
	rec.SetSKU(sku)
	return rec
}

// Show is the disk's document as clients see it now: with the progress of
// its hydration while it fills.
func (e *Engine) Show(rec Record) Disk {
	d := rec.Disk
	d.Properties.CompletionPercent = nil
	if rec.Hydrating != "" {
		pct := 0.0
		if p, ok := e.HydrationProgress(rec.Properties.UniqueID); ok {
			pct = p
		}
		d.Properties.CompletionPercent = &pct
	}
	return d
}
