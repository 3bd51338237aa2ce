package meta

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"
)

// Resource is one stored ARM resource.
type Resource struct {
	ID            string // canonical casing
	Type          string // e.g. Microsoft.Compute/disks
	Name          string
	Subscription  string // subscription GUID, "" for tenant-level resources
	ResourceGroup string // resource group name, "" when none
	Parent        string // id of the enclosing resource or scope
	Body          json.RawMessage
	ETag          string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Query selects resources of one type. Empty fields do not filter.
type Query struct {
	Type          string
	Subscription  string
	ResourceGroup string
	Parent        string
	// Under keeps resources whose id is beneath this id (id + "/...").
	Under string
	// After is the continuation key a previous Page returned.
	After string
	// Limit is the page size; 0 means 100.
	Limit int
}

// Page is one page of a listing. Next is "" on the last page.
type Page struct {
	Items []Resource
	Next  string
}

// AssignmentIndex is a role assignment as the authorizer needs it.
type AssignmentIndex struct {
	ID        string // the assignment's resource id
	Principal string
	Scope     string
	RoleID    string // role definition GUID
}

// BackupInstanceIndex is a backup instance as lookups by datasource and by
// vault need it. Vault, Datasource and Policy are compared without regard to
// case (and a trailing '/'); reads return them lower-cased, and ID in its
// canonical casing.
type BackupInstanceIndex struct {
	ID         string // the instance's resource id
	Vault      string // the vault's id
	Datasource string // the protected datasource's id
	Policy     string // the policy's id
	State      string // the current protection state
}

// TimeQuery selects times of one kind: of one owner when Owner is set,
// from From and to To (inclusive) when they are set.
type TimeQuery struct {
	Kind     string
	Owner    string
	From, To time.Time
	// Desc lists newest first.
	Desc bool
	// After continues a listing after the entry a previous page ended with.
	After *Timed
	// Limit is the page size; 0 means 100.
	Limit int
}

// Timed is one entry of the time index.
type Timed struct {
	ID    string // the resource's id, canonical casing
	Owner string // lower-cased
	At    time.Time
}

// Operation is a durable long-running operation.
type Operation struct {
	ID         string
	Kind       string
	ResourceID string
	Status     string
	Input      json.RawMessage
	Result     json.RawMessage
	Error      json.RawMessage
	Attempts   int
	LeaseOwner string
	LeaseUntil time.Time
	NotBefore  time.Time
	StartedAt  time.Time
	EndedAt    time.Time
}

// Operation statuses as ARM spells them.
const (
	StatusInProgress = "InProgress"
	StatusSucceeded  = "Succeeded"
	StatusFailed     = "Failed"
	StatusCanceled   = "Canceled"
)

// Tx is what can be done inside one transaction. The Store itself also
// satisfies it, each call then being its own transaction.
type Tx interface {
	// GetResource returns the resource with this id (any casing) or an
	// errs.NotFound error.
	GetResource(ctx context.Context, id string) (Resource, error)
	// PutResource inserts r or replaces the resource with the same id,
	// keeping the stored casing and creation time of an existing one. It
	// reports whether the resource is new.
	PutResource(ctx context.Context, r Resource) (created bool, err error)
	// DeleteResource removes the resource with this id (and its index
	// rows); false if absent.
	DeleteResource(ctx context.Context, id string) (bool, error)
	// DeleteTree removes the resource with this id and every resource
	// beneath it, returning how many went.
	DeleteTree(ctx context.Context, id string) (int, error)
	// ListResources returns one page of the resources q selects, in key order.
	ListResources(ctx context.Context, q Query) (Page, error)
	// CountResources counts what q selects, ignoring After and Limit.
	CountResources(ctx context.Context, q Query) (int, error)

	// IndexAssignment records (or replaces) a role assignment in the
	// by-principal index; the assignment's resource row is written beside it.
	IndexAssignment(ctx context.Context, a AssignmentIndex) error
	// AssignmentsOf returns every indexed assignment of principal.
	AssignmentsOf(ctx context.Context, principal string) ([]AssignmentIndex, error)
	// CountAssignmentsOfRole counts assignments that name role (a GUID).
	CountAssignmentsOfRole(ctx context.Context, role string) (int, error)

	// SetLabel indexes the resource id under label with value (compared
	// case-insensitively), replacing the label's previous value; an empty
	// value removes the label. Labels go with their resource when it is
	// deleted; write them in the transaction that writes the resource.
	SetLabel(ctx context.Context, id, label, value string) error
	// CountLabeled counts the existing resources labelled label=value.
	CountLabeled(ctx context.Context, label, value string) (int, error)
	// FindLabeled returns the ids of the existing resources labelled
	// label=value, in key order.
	FindLabeled(ctx context.Context, label, value string) ([]string, error)
	// IndexBackupInstance records (or replaces) a backup instance in the
	// by-datasource and by-vault index; the instance's resource row is
	// written beside it, and DeleteResource and DeleteTree remove both.
	IndexBackupInstance(ctx context.Context, b BackupInstanceIndex) error
	// BackupInstancesOf returns every indexed instance protecting the
	// datasource, in id order.
	BackupInstancesOf(ctx context.Context, datasource string) ([]BackupInstanceIndex, error)
	// BackupInstancesIn returns every indexed instance of the vault, in id
	// order.
	BackupInstancesIn(ctx context.Context, vault string) ([]BackupInstanceIndex, error)

	// SetTime indexes the resource id under kind at the time at, grouped by
	// owner (an id, compared case-insensitively; "" for none), replacing
	// the kind's previous time; a zero at removes it. Times go with their
	// resource when it is deleted; write them in the transaction that
	// writes the resource.
	SetTime(ctx context.Context, id, kind, owner string, at time.Time) error
	// GetTime returns the resource's time of kind; ok is false if it has
	// none.
	GetTime(ctx context.Context, id, kind string) (at time.Time, ok bool, err error)
	// ListTimes returns the existing resources q selects, in time order
	// (then id order), one page of q.Limit.
	ListTimes(ctx context.Context, q TimeQuery) ([]Timed, error)
	// CountTimes counts what q selects, ignoring After and Limit.
	CountTimes(ctx context.Context, q TimeQuery) (int, error)

	// CreateOperation records a new operation.
	CreateOperation(ctx context.Context, op Operation) error
	// GetOperation returns the operation or an errs.NotFound error.
	GetOperation(ctx context.Context, id string) (Operation, error)
	// FinishOperation sets the terminal status, result and error of an
	// operation still in progress; false if it had already ended.
	FinishOperation(ctx context.Context, op Operation) (bool, error)
}

// Store is the metadata store.
type Store interface {
	Tx
	// InTx runs fn in one transaction, committed if fn returns nil.
	InTx(ctx context.Context, fn func(Tx) error) error
	// ClaimOperation leases one runnable operation (in progress, not_before
	// passed, and not leased, or its lease expired, or pinned to owner when
	// it was created and not yet tried) to owner until now+lease and counts
	// the attempt. ok is false when there is none.
	ClaimOperation(ctx context.Context, owner string, now time.Time, lease time.Duration) (op Operation, ok bool, err error)
	// RenewLease extends owner's lease; false if owner no longer holds it.
	RenewLease(ctx context.Context, id, owner string, until time.Time) (bool, error)
	// ReleaseOperation gives up owner's lease and defers the next attempt
	// to notBefore.
	ReleaseOperation(ctx context.Context, id, owner string, notBefore time.Time) error
	// ReleaseLeases drops every lease held by owner (used at start-up: a
	// node that restarts holds nothing).
	ReleaseLeases(ctx context.Context, owner string) error
	// DB exposes the pool for health checks.
	DB() *sql.DB
	// Driver names the backend: "sqlite" or "postgres".
	Driver() string
	Close() error
}
