package backup

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/google/uuid"
)

// Types of the resources the engine keeps.
const (
	JobType           = "Microsoft.DataProtection/backupVaults/backupJobs"
	RecoveryPointType = "Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints"
)

// Kinds of the time index (meta.SetTime) the engine keeps.
const (
	timeJob      = "backupJob"     // a job, owned by its vault, at its start: Jobs newest first
	timeAdHoc    = "adHocBackup"   // an ad hoc backup job, owned by its instance, at its start: the daily limit
	timeRestore  = "restoreJob"    // a restore job, owned by its instance, at its start: the daily limit
	timePoint    = "recoveryPoint" // a recovery point, owned by its instance, at its time
	timeExpiry   = "pointExpiry"   // a recovery point, owned by its instance, when it expires
	timeAdHocPt  = "adHocPoint"    // an ad hoc backup's recovery point, owned by its instance: the 50 on-demand
	timeNextSlot = "nextSlot"      // an instance, at its next scheduled backup
	timePurge    = "purge"         // a soft-deleted instance, when it is purged
)

// Job statuses, as the service spells them.
const (
	JobInProgress = "InProgress"
	JobCompleted  = "Completed"
	JobFailed     = "Failed"
)

// JobResource is a job in the document ARM serves (AzureBackupJobResource).
type JobResource struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	Properties Job    `json:"properties"`
}

// Job is AzureBackupJob: one backup or restore of one instance.
type Job struct {
	ActivityID                 string            `json:"activityID"`
	BackupInstanceFriendlyName string            `json:"backupInstanceFriendlyName"`
	BackupInstanceID           string            `json:"backupInstanceId"`
	DataSourceID               string            `json:"dataSourceId"`
	DataSourceLocation         string            `json:"dataSourceLocation"`
	DataSourceName             string            `json:"dataSourceName"`
	DataSourceSetName          string            `json:"dataSourceSetName"`
	DataSourceType             string            `json:"dataSourceType"`
	Duration                   string            `json:"duration"`
	StartTime                  time.Time         `json:"startTime"`
	EndTime                    *time.Time        `json:"endTime,omitempty"`
	IsUserTriggered            bool              `json:"isUserTriggered"`
	Operation                  string            `json:"operation"`
	OperationCategory          string            `json:"operationCategory"`
	PolicyID                   string            `json:"policyId"`
	PolicyName                 string            `json:"policyName"`
	ProgressEnabled            bool              `json:"progressEnabled"`
	SourceResourceGroup        string            `json:"sourceResourceGroup"`
	SourceSubscriptionID       string            `json:"sourceSubscriptionID"`
	Status                     string            `json:"status"`
	SubscriptionID             string            `json:"subscriptionId"`
	SupportedActions           []string          `json:"supportedActions"`
	VaultName                  string            `json:"vaultName"`
	ErrorDetails               []UserFacingError `json:"errorDetails,omitempty"`
	ExtendedInfo               JobExtendedInfo   `json:"extendedInfo"`
}

// JobExtendedInfo is what a job adds about itself.
type JobExtendedInfo struct {
	AdditionalDetails      map[string]string `json:"additionalDetails"`
	BackupInstanceState    string            `json:"backupInstanceState,omitempty"`
	DataTransferredInBytes *float64          `json:"dataTransferredInBytes,omitempty"`
	RecoveryDestination    string            `json:"recoveryDestination,omitempty"`
	SourceRecoverPoint     *JobRecoveryPoint `json:"sourceRecoverPoint,omitempty"`
	SubTasks               []JobSubTask      `json:"subTasks"`
}

// JobRecoveryPoint names the recovery point a restore reads.
type JobRecoveryPoint struct {
	RecoveryPointID   string     `json:"recoveryPointID"`
	RecoveryPointTime *time.Time `json:"recoveryPointTime,omitempty"`
}

// JobSubTask is one step of a job.
type JobSubTask struct {
	TaskID            int               `json:"taskId"`
	TaskName          string            `json:"taskName"`
	TaskStatus        string            `json:"taskStatus"`
	AdditionalDetails map[string]string `json:"additionalDetails,omitempty"`
}

// PointResource is a recovery point in the document ARM serves
// (AzureBackupRecoveryPointResource).
type PointResource struct {
	ID         string        `json:"id"`
	Name       string        `json:"name"`
	Type       string        `json:"type"`
	Properties RecoveryPoint `json:"properties"`
}

// RecoveryPoint is AzureBackupDiscreteRecoveryPoint.
type RecoveryPoint struct {
	ObjectType                     string            `json:"objectType"`
	RecoveryPointID                string            `json:"recoveryPointId"`
	RecoveryPointTime              time.Time         `json:"recoveryPointTime"`
	RecoveryPointType              string            `json:"recoveryPointType"`
	FriendlyName                   string            `json:"friendlyName"`
	PolicyName                     string            `json:"policyName"`
	PolicyVersion                  string            `json:"policyVersion"`
	RetentionTagName               string            `json:"retentionTagName"`
	RetentionTagVersion            string            `json:"retentionTagVersion"`
	RecoveryPointDataStoresDetails []DataStoreDetail `json:"recoveryPointDataStoresDetails"`
	ExpiryTime                     time.Time         `json:"expiryTime"`
	RecoveryPointState             string            `json:"recoveryPointState"`
}

// DataStoreDetail is where a recovery point's data is.
type DataStoreDetail struct {
	ID           string    `json:"id"`
	Type         string    `json:"type"`
	CreationTime time.Time `json:"creationTime"`
	ExpiryTime   time.Time `json:"expiryTime"`
	MetaData     string    `json:"metaData"`
	Visible      bool      `json:"visible"`
	State        string    `json:"state"`
}

// pointRecord is a recovery point's stored body: its document and what
// only the engine sees. The snapshot is the point's data; the disk's size
// and SKU at backup time are what a restore gives the new disk.
type pointRecord struct {
	PointResource
	SnapshotID    string `json:"cofferSnapshotId"`
	DiskSizeBytes int64  `json:"cofferDiskSizeBytes"`
	DiskSKU       string `json:"cofferDiskSku"`
	// AdHoc marks a point an on-demand backup made: a disk keeps at most
	// MaxOnDemandPoints of them, beside its scheduled ones.
	AdHoc bool `json:"cofferAdHoc,omitempty"`
}

func saveResource(ctx context.Context, tx meta.Tx, id, typ, name, parent string, now time.Time, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	parts := strings.Split(id, "/")
	_, err = tx.PutResource(ctx, meta.Resource{ID: id, Type: typ, Name: name, Subscription: parts[2], ResourceGroup: parts[4],
		Parent: parent, Body: body, ETag: uuid.NewString(), UpdatedAt: now})
	return err
}

// jobID is the id of the job named name in the vault.
func jobID(vaultID, name string) string { return vaultID + "/backupJobs/" + name }

// JobNotFound is the 404 for a missing job.
func JobNotFound(name string) error {
	return errs.E(errs.NotFound, "ResourceNotFound", "The job '%s' was not found in the vault.", name)
}

// LoadJob reads the job id.
func LoadJob(ctx context.Context, tx meta.Tx, id string) (JobResource, error) {
	var j JobResource
	_, err := load(ctx, tx, id, &j, func() error { return JobNotFound(lastSegment(id)) })
	return j, err
}

func (s *Service) saveJob(ctx context.Context, tx meta.Tx, j JobResource) error {
	vault := j.ID[:strings.LastIndex(strings.ToLower(j.ID), "/backupjobs/")]
	if err := saveResource(ctx, tx, j.ID, JobType, j.Name, vault, s.Clock.Now(), j); err != nil {
		return err
	}
	return tx.SetTime(ctx, j.ID, timeJob, vault, j.Properties.StartTime)
}

// newJob is the first record of a job of operation on the instance bi.
func (s *Service) newJob(bi InstanceResource, name, operation, activity string, user bool) JobResource {
	ds := bi.Properties.DataSourceInfo
	parts := strings.Split(ds.ResourceID, "/")
	vault := vaultOf(bi.ID)
	policy := bi.Properties.PolicyInfo.PolicyID
	category, task := "Backup", "Trigger Backup"
	if operation == "Restore" {
		category, task = "Restore", "Trigger Restore"
	}
	return JobResource{ID: jobID(vault, name), Name: name, Type: JobType, Properties: Job{
		ActivityID: activity, BackupInstanceFriendlyName: bi.Properties.FriendlyName, BackupInstanceID: bi.ID,
		DataSourceID: ds.ResourceID, DataSourceLocation: ds.ResourceLocation, DataSourceName: ds.ResourceName,
		DataSourceSetName: ds.ResourceName, DataSourceType: DiskType, Duration: "PT0S", StartTime: s.Clock.Now().UTC(),
		IsUserTriggered: user, Operation: operation, OperationCategory: category, PolicyID: policy, PolicyName: lastSegment(policy),
		SourceResourceGroup: parts[4], SourceSubscriptionID: parts[2], Status: JobInProgress, SubscriptionID: strings.Split(bi.ID, "/")[2],
		SupportedActions: []string{""}, VaultName: lastSegment(vault),
		ExtendedInfo: JobExtendedInfo{AdditionalDetails: map[string]string{}, SubTasks: []JobSubTask{{TaskID: 1, TaskName: task, TaskStatus: JobInProgress}}},
	}}
}

// endJob records a job's outcome: Completed, or Failed with err's user
// error.
func (s *Service) endJob(ctx context.Context, tx meta.Tx, id string, failure error, edit func(*Job)) error {
	j, err := LoadJob(ctx, tx, id)
	if err != nil {
		return err
	}
	if j.Properties.Status != JobInProgress {
		return nil // an earlier attempt ended it
	}
	now := s.Clock.Now().UTC()
	j.Properties.EndTime = &now
	j.Properties.Duration = isoDuration(now.Sub(j.Properties.StartTime))
	status := JobCompleted
	if failure != nil {
		status = JobFailed
		j.Properties.ErrorDetails = []UserFacingError{*FacingOf(failure)}
	}
	j.Properties.Status = status
	for i := range j.Properties.ExtendedInfo.SubTasks {
		j.Properties.ExtendedInfo.SubTasks[i].TaskStatus = status
	}
	if edit != nil {
		edit(&j.Properties)
	}
	return s.saveJob(ctx, tx, j)
}

// isoDuration writes d as ISO 8601 (PT1H2M3.5S).
func isoDuration(d time.Duration) string {
	if d <= 0 {
		return "PT0S"
	}
	h := int64(d / time.Hour)
	m := int64(d % time.Hour / time.Minute)
	sec := float64(d%time.Minute) / float64(time.Second)
	out := "PT"
	if h > 0 {
		out += fmt.Sprintf("%dH", h)
	}
	if m > 0 {
		out += fmt.Sprintf("%dM", m)
	}
	if sec > 0 || out == "PT" {
		out += strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.3f", sec), "0"), ".") + "S"
	}
	return out
}

// Jobs lists a vault's jobs newest first, a page of limit after the job
// after (a continuation Jobs returned; "" for the first page).
func (s *Service) Jobs(ctx context.Context, vaultID, after string, limit int) ([]JobResource, string, error) {
	q := meta.TimeQuery{Kind: timeJob, Owner: vaultID, Desc: true, Limit: limit + 1}
	if after != "" {
		cont, err := decodeCursor(after)
		if err != nil {
			return nil, "", err
		}
		q.After = &cont
	}
	return listTimed(ctx, s.Store, q, limit, func(id string) (JobResource, error) { return LoadJob(ctx, s.Store, id) })
}

// Points lists an instance's recovery points oldest first, between from and
// to when they are set.
func (s *Service) Points(ctx context.Context, instanceID string, from, to time.Time, after string, limit int) ([]PointResource, string, error) {
	q := meta.TimeQuery{Kind: timePoint, Owner: instanceID, From: from, To: to, Limit: limit + 1}
	if after != "" {
		cont, err := decodeCursor(after)
		if err != nil {
			return nil, "", err
		}
		q.After = &cont
	}
	return listTimed(ctx, s.Store, q, limit, func(id string) (PointResource, error) {
		p, err := loadPoint(ctx, s.Store, id)
		return p.PointResource, err
	})
}

func listTimed[T any](ctx context.Context, tx meta.Tx, q meta.TimeQuery, limit int, get func(id string) (T, error)) ([]T, string, error) {
	found, err := tx.ListTimes(ctx, q)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(found) > limit {
		found = found[:limit]
		next = encodeCursor(found[limit-1])
	}
	out := make([]T, 0, len(found))
	for _, f := range found {
		v, err := get(f.ID)
		if errs.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, v)
	}
	return out, next, nil
}

// A cursor is the time and id a page ended with, as "<unix ns>|<id>".
func encodeCursor(t meta.Timed) string { return fmt.Sprintf("%d|%s", t.At.UnixNano(), t.ID) }

func decodeCursor(s string) (meta.Timed, error) {
	var ns int64
	i := strings.IndexByte(s, '|')
	if i < 0 {
		return meta.Timed{}, errs.E(errs.Invalid, "InvalidSkipToken", "The continuation token is not valid.").WithTarget("$skipToken")
	}
	if _, err := fmt.Sscan(s[:i], &ns); err != nil {
		return meta.Timed{}, errs.E(errs.Invalid, "InvalidSkipToken", "The continuation token is not valid.").WithTarget("$skipToken")
	}
	return meta.Timed{ID: s[i+1:], At: time.Unix(0, ns).UTC()}, nil
}

// pointID is the id of the recovery point named name of the instance.
func pointID(instanceID, name string) string { return instanceID + "/recoveryPoints/" + name }

// PointNotFound is the 404 for a missing recovery point.
func PointNotFound(name string) error {
	return errs.E(errs.NotFound, "UserErrorRecoveryPointNotFound", "The recovery point '%s' was not found.", name)
}

func loadPoint(ctx context.Context, tx meta.Tx, id string) (pointRecord, error) {
	var p pointRecord
	_, err := load(ctx, tx, id, &p, func() error { return PointNotFound(lastSegment(id)) })
	return p, err
}

// Point reads the recovery point named name of the instance.
func (s *Service) Point(ctx context.Context, instanceID, name string) (PointResource, error) {
	p, err := loadPoint(ctx, s.Store, pointID(instanceID, name))
	return p.PointResource, err
}

func (s *Service) savePoint(ctx context.Context, tx meta.Tx, p pointRecord) error {
	instance := p.ID[:strings.LastIndex(p.ID, "/recoveryPoints/")]
	if err := saveResource(ctx, tx, p.ID, RecoveryPointType, p.Name, instance, s.Clock.Now(), p); err != nil {
		return err
	}
	if err := tx.SetTime(ctx, p.ID, timePoint, instance, p.Properties.RecoveryPointTime); err != nil {
		return err
	}
	if err := tx.SetLabel(ctx, p.ID, pointSnapshotLabel, p.SnapshotID); err != nil {
		return err
	}
	if p.AdHoc {
		if err := tx.SetTime(ctx, p.ID, timeAdHocPt, instance, p.Properties.RecoveryPointTime); err != nil {
			return err
		}
	}
	return tx.SetTime(ctx, p.ID, timeExpiry, instance, p.Properties.ExpiryTime)
}
