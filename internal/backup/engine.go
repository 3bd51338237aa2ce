package backup

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
	"github.com/google/uuid"
)

// Snapshots is what the engine asks of the disk engine; *disk.Engine
// implements it.
type Snapshots interface {
	// TakeSnapshot takes a snapshot of a disk as a principal and returns
	// once it is durable.
	TakeSnapshot(ctx context.Context, req disk.SnapshotRequest) (disk.SnapshotRecord, error)
	// StoreSnapshot finishes a snapshot an earlier attempt began, or
	// removes it if its point in time was lost.
	StoreSnapshot(ctx context.Context, id string) error
	// DeleteSnapshot deletes a snapshot if it is still there.
	DeleteSnapshot(ctx context.Context, id string) error
	// CreateFromSnapshot makes a new disk from a snapshot, usable on
	// return.
	CreateFromSnapshot(ctx context.Context, req disk.FromSnapshotRequest) (disk.Record, error)
}

// Operation kinds the engine runs.
const (
	kindRun     = "backup.run"
	kindRestore = "backup.restore"
)

// Limits of the service.
const (
	// MaxAdHocBackupsPerDay and MaxRestoresPerDay are per instance, over
	// the last 24 hours.
	MaxAdHocBackupsPerDay = 10
	MaxRestoresPerDay     = 10
	// MaxOnDemandPoints is how many recovery points of on-demand backups a
	// disk keeps at once; its scheduled ones are at most 450 (the policy
	// check), and Microsoft.Compute caps all its incremental snapshots,
	// manual ones included, at 500.
	MaxOnDemandPoints = 50
)

// RecoveryPointTag marks a backup's snapshot with its recovery point's
// name, beside BackupTag, so people can tell which backup made it.
const RecoveryPointTag = "CofferRecoveryPoint"

// JobInfo is OperationJobExtendedInfo, the result of a backup, restore or
// validate operation.
type JobInfo struct {
	ObjectType string `json:"objectType"`
	JobID      string `json:"jobId,omitempty"`
}

func jobInfo(jobID string) JobInfo {
	return JobInfo{ObjectType: "OperationJobExtendedInfo", JobID: jobID}
}

// runInput is the input of a backup run.
type runInput struct {
	InstanceID string    `json:"instanceId"`
	JobID      string    `json:"jobId"`
	Slot       time.Time `json:"slot,omitempty"`         // a scheduled slot; zero for ad hoc
	Tag        string    `json:"retentionTag,omitempty"` // an ad hoc backup's retention rule
}

// Register adds the engine's operation handlers to the runner; call it
// before the runner starts.
func (s *Service) Register(r *ops.Runner) {
	s.Ops = r
	r.Register(kindRun, func(ctx context.Context, op meta.Operation) (any, error) {
		var in runInput
		if err := json.Unmarshal(op.Input, &in); err != nil {
			return nil, err
		}
		return s.run(ctx, in)
	})
	r.Register(kindRestore, func(ctx context.Context, op meta.Operation) (any, error) {
		var in restoreInput
		if err := json.Unmarshal(op.Input, &in); err != nil {
			return nil, err
		}
		return s.restore(ctx, in)
	})
}

// AdHocOptions are TriggerBackupRequest's backupRuleOptions.
type AdHocOptions struct {
	RuleName      string `json:"ruleName"`
	TriggerOption *struct {
		RetentionTagOverride string `json:"retentionTagOverride"`
	} `json:"triggerOption"`
}

// StartAdHocBackup starts a backup of the instance now: a job and the
// operation that runs it, in one transaction. At most MaxAdHocBackupsPerDay
// an instance.
func (s *Service) StartAdHocBackup(ctx context.Context, instanceID string, o AdHocOptions, activity string) (JobResource, meta.Operation, error) {
	if strings.TrimSpace(o.RuleName) == "" {
		return JobResource{}, meta.Operation{}, invalid("InvalidRequestContent", "backupRuleOptions.ruleName", "backupRuleOptions.ruleName, the policy's backup rule, is required.")
	}
	if o.TriggerOption == nil || strings.TrimSpace(o.TriggerOption.RetentionTagOverride) == "" {
		return JobResource{}, meta.Operation{}, invalid("InvalidRequestContent", "backupRuleOptions.triggerOption.retentionTagOverride",
			"backupRuleOptions.triggerOption.retentionTagOverride, the retention rule to keep the backup under, is required.")
	}
	var job JobResource
	var op meta.Operation
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		bi, err := s.LoadInstance(ctx, tx, instanceID)
		if err != nil {
			return err
		}
		if st := bi.Properties.CurrentProtectionState; st != StateConfigured {
			return errs.E(errs.Invalid, "UserErrorInvalidProtectionStateForOperation",
				"A backup cannot be taken while the backup instance is '%s'; it needs ProtectionConfigured.", st)
		}
		p, err := loadPolicy(ctx, tx, vaultOf(bi.ID), bi.Properties.PolicyInfo.PolicyID, func() error {
			return errs.E(errs.Invalid, "UserErrorBackupPolicyNotFound", "The instance's backup policy no longer exists.")
		})
		if err != nil {
			return err
		}
		rule, err := p.backupRule()
		if err != nil {
			return err
		}
		if !strings.EqualFold(rule.Name, o.RuleName) {
			return invalid("UserErrorInvalidRuleName", "backupRuleOptions.ruleName",
				"The policy '%s' has no backup rule '%s'; its backup rule is '%s'.", p.Name, o.RuleName, rule.Name)
		}
		keep, err := p.retentionRule(o.TriggerOption.RetentionTagOverride)
		if err != nil {
			return invalid("UserErrorInvalidRetentionTag", "backupRuleOptions.triggerOption.retentionTagOverride",
				"The policy '%s' has no retention rule '%s'.", p.Name, o.TriggerOption.RetentionTagOverride)
		}
		if kept, err := tx.CountTimes(ctx, meta.TimeQuery{Kind: timeAdHocPt, Owner: bi.ID}); err != nil {
			return err
		} else if kept >= MaxOnDemandPoints {
			return errs.E(errs.Invalid, "UserErrorMaxOnDemandRecoveryPointsReached",
				"The backup instance keeps %d recovery points of on-demand backups, the most a disk may; wait for some to expire.", kept)
		}
		job = s.newJob(bi, uuid.NewString(), "Backup", activity, true)
		job.Properties.ExtendedInfo.AdditionalDetails = map[string]string{"PolicyRuleName": rule.Name, "RetentionTag": keep.Name}
		op, err = s.enqueueUserJob(ctx, tx, job, adHocLimit, kindRun, runInput{InstanceID: bi.ID, JobID: job.ID, Tag: keep.Name})
		return err
	})
	if err != nil {
		return JobResource{}, meta.Operation{}, err
	}
	s.Ops.Wake()
	return job, op, nil
}

// dailyLimit bounds the jobs a client may ask of one instance in 24 hours.
type dailyLimit struct {
	kind string // the time index kind that counts them
	most int
	code string
	what string
}

var (
	adHocLimit   = dailyLimit{timeAdHoc, MaxAdHocBackupsPerDay, "UserErrorMaxAdhocBackupLimitReached", "on-demand backups"}
	restoreLimit = dailyLimit{timeRestore, MaxRestoresPerDay, "UserErrorMaxRestoreLimitReached", "restores"}
)

// enqueueUserJob refuses job past its instance's daily limit; otherwise it
// records the job, counts it, and enqueues the operation of kind that runs
// it, all in tx.
func (s *Service) enqueueUserJob(ctx context.Context, tx meta.Tx, job JobResource, l dailyLimit, kind string, input any) (meta.Operation, error) {
	instance, now := job.Properties.BackupInstanceID, s.Clock.Now()
	n, err := tx.CountTimes(ctx, meta.TimeQuery{Kind: l.kind, Owner: instance, From: now.Add(-24 * time.Hour)})
	if err != nil {
		return meta.Operation{}, err
	}
	if n >= l.most {
		return meta.Operation{}, errs.E(errs.Invalid, l.code,
			"The backup instance has had %d %s in the last 24 hours, the most allowed; try again later.", n, l.what)
	}
	if err := s.saveJob(ctx, tx, job); err != nil {
		return meta.Operation{}, err
	}
	if err := tx.SetTime(ctx, job.ID, l.kind, instance, now); err != nil {
		return meta.Operation{}, err
	}
	return s.Ops.Enqueue(ctx, tx, kind, instance, input)
}

// run is one backup of an instance: for a scheduled slot or ad hoc. It
// checks the vault identity's rights, takes an incremental snapshot of the
// disk into the snapshot resource group as that identity, and records the
// recovery point and the job's end in one transaction. A crash anywhere
// reruns it: the snapshot has a name fixed by the job, so a finished one is
// found and recorded, an unfinished one is finished or, if its point in
// time was lost, taken again; the job ends once.
func (s *Service) run(ctx context.Context, in runInput) (any, error) {
	return s.runJob(ctx, in.JobID, func(job JobResource) error {
		point, err := s.backUp(ctx, in, job)
		if err == nil {
			s.log().Info("backup", "instance", in.InstanceID, "recovery_point", point.Name, "job", job.Name)
		}
		return err
	})
}

// runJob runs work for the job jobID once. A job that has ended already
// (an earlier attempt finished it) returns its outcome; a transient
// failure is returned for the runner to try again; any other failure ends
// the job Failed with its user error, which the operation reports too.
// work ends the job itself on success, in the transaction that records
// what it made.
func (s *Service) runJob(ctx context.Context, jobID string, work func(JobResource) error) (any, error) {
	job, err := LoadJob(ctx, s.Store, jobID)
	if err != nil {
		return nil, err
	}
	if job.Properties.Status != JobInProgress {
		return jobInfo(job.ID), jobFailure(job)
	}
	err = work(job)
	if err != nil && (errs.Is(err, errs.Transient) || ctx.Err() != nil) {
		return nil, err
	}
	if err != nil {
		failure := userFailure(err, job.Properties.ActivityID)
		if e := s.Store.InTx(ctx, func(tx meta.Tx) error { return s.endJob(ctx, tx, job.ID, failure, nil) }); e != nil {
			return nil, e
		}
		return nil, failure
	}
	return jobInfo(job.ID), nil
}

// userFailure turns what stopped a job into the user error the job and the
// operation report.
func userFailure(err error, activity string) error {
	var e *errs.Error
	if errors.As(err, &e) && len(e.AdditionalInfo) > 0 {
		return err
	}
	kind := errs.KindOf(err)
	code, msg := "UserErrorBackupFailed", "The backup failed: "+messageOf(err)
	if kind == errs.Internal {
		code, msg = "InternalServerError", "The backup failed with an internal error."
	}
	return UserError(kind, code, msg, UserFacingError{IsUserError: kind != errs.Internal,
		Properties: map[string]string{"ActivityId": activity}})
}

// jobFailure is the error a finished job ended with, nil if it completed.
func jobFailure(j JobResource) error {
	if j.Properties.Status != JobFailed || len(j.Properties.ErrorDetails) == 0 {
		return nil
	}
	f := j.Properties.ErrorDetails[0]
	return UserError(errs.Invalid, f.Code, f.Message, f)
}

func (s *Service) backUp(ctx context.Context, in runInput, job JobResource) (pointRecord, error) {
	bi, err := s.LoadInstance(ctx, s.Store, in.InstanceID)
	if err != nil {
		return pointRecord{}, err
	}
	if st := bi.Properties.CurrentProtectionState; st != StateConfigured {
		return pointRecord{}, errs.E(errs.Invalid, "UserErrorInvalidProtectionStateForOperation",
			"The backup instance is '%s'; backups run only while it is ProtectionConfigured.", st)
	}
	v, err := LoadVault(ctx, s.Store, vaultOf(bi.ID))
	if err != nil {
		return pointRecord{}, err
	}
	p, err := loadPolicy(ctx, s.Store, v.ID, bi.Properties.PolicyInfo.PolicyID, func() error {
		return errs.E(errs.Invalid, "UserErrorBackupPolicyNotFound", "The instance's backup policy no longer exists.")
	})
	if err != nil {
		return pointRecord{}, err
	}
	if v.Identity == nil || v.Identity.PrincipalID == "" {
		return pointRecord{}, simpleUserError("UserErrorBackupVaultManagedIdentityMissing", "The Backup vault "+v.ID+" has no system-assigned managed identity.",
			"Enable the vault's system-assigned identity and grant it the disk backup roles.", job.Properties.ActivityID)
	}
	diskID, group := bi.Properties.DataSourceInfo.ResourceID, bi.Properties.SnapshotGroup()
	principal := v.Identity.PrincipalID
	// A revoked role fails the job: Disk Backup Reader's action on the disk,
	// Disk Snapshot Contributor's on the snapshot resource group.
	for _, need := range []permission{
		{"Microsoft.Compute/disks/beginGetAccess/action", diskID},
		{"Microsoft.Compute/snapshots/write", group},
	} {
		ok, err := s.Permissions.Allowed(ctx, principal, need.action, need.scope)
		if err != nil {
			return pointRecord{}, err
		}
		if !ok {
			return pointRecord{}, missingPermission(principal, need, job.Properties.ActivityID)
		}
	}
	name := strings.ReplaceAll(job.Name, "-", "")
	snapID := group + "/providers/Microsoft.Compute/snapshots/" + bi.Name + "-" + name
	if len(bi.Name)+1+len(name) > 80 {
		snapID = group + "/providers/Microsoft.Compute/snapshots/coffer-" + name
	}
	snap, err := s.snapshot(ctx, disk.SnapshotRequest{ID: snapID, DiskID: diskID, Incremental: true,
		Principal: auth.Principal{ObjectID: principal}, Tags: map[string]string{BackupTag: bi.ID, RecoveryPointTag: name}})
	if err != nil {
		return pointRecord{}, err
	}
	taken := snap.Properties.TimeCreated
	var point pointRecord
	err = s.Store.InTx(ctx, func(tx meta.Tx) error {
		previous := time.Time{}
		last, err := tx.ListTimes(ctx, meta.TimeQuery{Kind: timePoint, Owner: bi.ID, To: taken, Desc: true, Limit: 1})
		if err != nil {
			return err
		}
		if len(last) > 0 {
			previous = last[0].At
		}
		ret, err := p.RetentionOf(taken, previous)
		if err != nil {
			return err
		}
		if in.Tag != "" {
			keep, err := p.retentionRule(in.Tag)
			if err != nil {
				return err
			}
			expires, err := addISODuration(taken, keep.Lifecycles[0].DeleteAfter.Duration)
			if err != nil {
				return err
			}
			ret = Retention{Tag: keep.Name, Expires: expires}
		}
		sku := "Standard_LRS"
		size := snap.Properties.DiskSizeBytes
		if d, err := disk.LoadByID(ctx, tx, diskID); err == nil {
			sku = d.SKU.Name
		}
		point = pointRecord{PointResource: PointResource{ID: pointID(bi.ID, name), Name: name, Type: RecoveryPointType,
			Properties: RecoveryPoint{ObjectType: "AzureBackupDiscreteRecoveryPoint", RecoveryPointID: name,
				RecoveryPointTime: taken, RecoveryPointType: "Incremental", FriendlyName: lastSegment(snapID),
				PolicyName: p.Name, PolicyVersion: "", RetentionTagName: ret.Tag, RetentionTagVersion: "1",
				RecoveryPointDataStoresDetails: []DataStoreDetail{{ID: snap.Properties.UniqueID, Type: "OperationalStore",
					CreationTime: taken, ExpiryTime: ret.Expires, MetaData: "", Visible: true, State: "COMMITTED"}},
				ExpiryTime: ret.Expires, RecoveryPointState: "Completed"}},
			SnapshotID: snap.ID, DiskSizeBytes: size, DiskSKU: sku, AdHoc: in.Slot.IsZero()}
		if err := s.savePoint(ctx, tx, point); err != nil {
			return err
		}
		return s.endJob(ctx, tx, job.ID, nil, func(j *Job) {
			j.ExtendedInfo.AdditionalDetails["RetentionTag"] = ret.Tag
			j.ExtendedInfo.AdditionalDetails["RecoveryPointId"] = name
			j.ExtendedInfo.AdditionalDetails["SnapshotId"] = snap.ID
			j.ExtendedInfo.SourceRecoverPoint = &JobRecoveryPoint{RecoveryPointID: name, RecoveryPointTime: &taken}
		})
	})
	return point, err
}

// snapshot takes the snapshot req names, or finds it: a snapshot an earlier
// attempt finished is used as it is; one it began is finished, or taken
// again if its point in time was lost (OperationPreempted).
func (s *Service) snapshot(ctx context.Context, req disk.SnapshotRequest) (disk.SnapshotRecord, error) {
	for attempt := 0; ; attempt++ {
		rec, err := disk.LoadSnapshot(ctx, s.Store, req.ID)
		switch {
		case err == nil && rec.Properties.ProvisioningState == disk.ProvisioningSucceeded:
			return rec, nil
		case err == nil:
			if err := s.Snapshots.StoreSnapshot(ctx, req.ID); err == nil {
				continue
			} else if !preempted(err) || attempt > 2 {
				return disk.SnapshotRecord{}, err
			}
			continue // removed: take it again, within the slot
		case !errs.Is(err, errs.NotFound):
			return disk.SnapshotRecord{}, err
		}
		rec, err = s.Snapshots.TakeSnapshot(ctx, req)
		if preempted(err) && attempt < 2 {
			continue
		}
		if errs.Is(err, errs.Conflict) && !preempted(err) {
			// Another snapshot of the disk is being stored: later.
			return disk.SnapshotRecord{}, errs.E(errs.Transient, "SnapshotInProgress", "%s", messageOf(err)).Wrap(err)
		}
		return rec, err
	}
}

func preempted(err error) bool {
	var e *errs.Error
	return errors.As(err, &e) && e.Code == "OperationPreempted"
}

// slotName is the name of the job (and operation) of an instance's slot:
// the same however many schedulers fire it and however often.
func slotName(instanceID string, slot time.Time) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("coffer-backup-slot:"+strings.ToLower(instanceID)+"@"+slot.UTC().Format(time.RFC3339))).String()
}

// ScheduleDue fires every instance whose next slot has come: the latest
// slot at or before now, once (slots missed while no scheduler ran are not
// made up one by one), and moves its next slot on. Instances not
// ProtectionConfigured do not fire; their slots move on. It returns how
// many slots it fired.
func (s *Service) ScheduleDue(ctx context.Context) (int, error) {
	now := s.Clock.Now()
	fired := 0
	for {
		due, err := s.Store.ListTimes(ctx, meta.TimeQuery{Kind: timeNextSlot, To: now, Limit: 200})
		if err != nil || len(due) == 0 {
			return fired, err
		}
		// A page of slots in one transaction: thousands of instances on
		// one interval fire together, and one commit a slot would keep the
		// store's writer from the backups themselves. Should the page fail,
		// each slot goes on its own, so one bad instance holds up no other.
		n := 0
		err = s.Store.InTx(ctx, func(tx meta.Tx) error {
			n = 0
			for _, d := range due {
				ok, err := s.fire(ctx, tx, d.ID, d.At, now)
				if err != nil {
					return err
				}
				if ok {
					n++
				}
			}
			return nil
		})
		if err != nil {
			n = 0
			for _, d := range due {
				var ok bool
				if err := s.Store.InTx(ctx, func(tx meta.Tx) (err error) { ok, err = s.fire(ctx, tx, d.ID, d.At, now); return err }); err != nil {
					return fired + n, err
				}
				if ok {
					n++
				}
			}
		}
		fired += n
		if s.Ops != nil {
			s.Ops.Wake()
		}
	}
}

// fire fires the instance's slot due, in tx, and moves its next slot on;
// it reports whether it created a backup.
func (s *Service) fire(ctx context.Context, tx meta.Tx, instanceID string, due, now time.Time) (bool, error) {
	bi, err := s.LoadInstance(ctx, tx, instanceID)
	if errs.Is(err, errs.NotFound) {
		return false, tx.SetTime(ctx, instanceID, timeNextSlot, "", time.Time{})
	}
	if err != nil {
		return false, err
	}
	p, err := loadPolicy(ctx, tx, vaultOf(bi.ID), bi.Properties.PolicyInfo.PolicyID, func() error { return errs.E(errs.NotFound, "NotFound", "") })
	if errs.Is(err, errs.NotFound) {
		return false, tx.SetTime(ctx, instanceID, timeNextSlot, "", time.Time{})
	}
	if err != nil {
		return false, err
	}
	next := p.NextSlot(now)
	if next.IsZero() {
		return false, tx.SetTime(ctx, instanceID, timeNextSlot, "", time.Time{})
	}
	fired := false
	if bi.Properties.CurrentProtectionState == StateConfigured {
		// The latest slot at or before now.
		slot := due
		for n := p.NextSlot(slot); !n.IsZero() && !n.After(now); n = p.NextSlot(slot) {
			slot = n
		}
		name := slotName(bi.ID, slot)
		if _, err := LoadJob(ctx, tx, jobID(vaultOf(bi.ID), name)); errs.Is(err, errs.NotFound) {
			// The job starts when it is created: its lateness against the
			// slot shows as startTime - ScheduledTime.
			job := s.newJob(bi, name, "Backup", name, false)
			job.Properties.ExtendedInfo.AdditionalDetails = map[string]string{"ScheduledTime": slot.UTC().Format(time.RFC3339)}
			if err := s.saveJob(ctx, tx, job); err != nil {
				return false, err
			}
			if _, _, err := s.Ops.EnqueueOnce(ctx, tx, name, kindRun, bi.ID, runInput{InstanceID: bi.ID, JobID: job.ID, Slot: slot}); err != nil {
				return false, err
			}
			fired = true
		} else if err != nil {
			return false, err
		}
	}
	return fired, tx.SetTime(ctx, instanceID, timeNextSlot, "", next)
}

// schedule sets the instance's next slot from now, in tx: when protection
// is configured or resumed.
func (s *Service) schedule(ctx context.Context, tx meta.Tx, bi InstanceResource) error {
	p, err := loadPolicy(ctx, tx, vaultOf(bi.ID), bi.Properties.PolicyInfo.PolicyID, func() error { return errs.E(errs.NotFound, "NotFound", "") })
	if err != nil {
		return err
	}
	return tx.SetTime(ctx, bi.ID, timeNextSlot, "", p.NextSlot(s.Clock.Now()))
}

// NextDue is when the earliest next slot is, zero if none.
func (s *Service) NextDue(ctx context.Context) (time.Time, error) {
	first, err := s.Store.ListTimes(ctx, meta.TimeQuery{Kind: timeNextSlot, Limit: 1})
	if err != nil || len(first) == 0 {
		return time.Time{}, err
	}
	return first[0].At, nil
}

// ExpireDue deletes the recovery points whose retention has run out: the
// snapshot first, then the point. A point of an instance whose protection
// is stopped is kept (stopped with retain data keeps it forever), and so is
// an instance's newest point, so failing backups never leave a disk with
// none. It returns how many points it deleted.
func (s *Service) ExpireDue(ctx context.Context) (int, error) {
	now := s.Clock.Now()
	deleted := 0
	var after *meta.Timed
	for {
		due, err := s.Store.ListTimes(ctx, meta.TimeQuery{Kind: timeExpiry, To: now, After: after, Limit: 200})
		if err != nil || len(due) == 0 {
			return deleted, err
		}
		for _, d := range due {
			ok, err := s.expire(ctx, d.ID)
			if err != nil {
				return deleted, err
			}
			if ok {
				deleted++
			}
		}
		last := due[len(due)-1]
		after = &last
	}
}

func (s *Service) expire(ctx context.Context, id string) (bool, error) {
	p, err := loadPoint(ctx, s.Store, id)
	if errs.Is(err, errs.NotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	instance := id[:strings.LastIndex(id, "/recoveryPoints/")]
	bi, err := s.LoadInstance(ctx, s.Store, instance)
	if err == nil && (bi.Properties.CurrentProtectionState == StateStopped || bi.SoftDeleted()) {
		return false, nil // kept until protection resumes, or the purge
	}
	newest, err := s.Store.ListTimes(ctx, meta.TimeQuery{Kind: timePoint, Owner: instance, Desc: true, Limit: 1})
	if err != nil {
		return false, err
	}
	if len(newest) == 1 && strings.EqualFold(newest[0].ID, id) {
		return false, nil
	}
	if err := s.Snapshots.DeleteSnapshot(ctx, p.SnapshotID); err != nil {
		return false, err
	}
	_, err = s.Store.DeleteResource(ctx, id)
	return err == nil, err
}

// messageOf is the client-safe message of err.
func messageOf(err error) string {
	var e *errs.Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return "internal error"
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// Run fires due slots and expires recovery points until ctx ends. It
// sleeps on the clock until the earliest next slot, at most a minute (for
// expiry), or until Wake says a schedule changed.
func (s *Service) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if _, err := s.ScheduleDue(ctx); err != nil && ctx.Err() == nil {
			s.log().Error("schedule backups", "err", err)
		}
		if _, err := s.ExpireDue(ctx); err != nil && ctx.Err() == nil {
			s.log().Error("expire recovery points", "err", err)
		}
		if _, err := s.PurgeDue(ctx); err != nil && ctx.Err() == nil {
			s.log().Error("purge soft-deleted backup instances", "err", err)
		}
		wait := time.Minute
		if next, err := s.NextDue(ctx); err == nil && !next.IsZero() {
			wait = min(wait, max(next.Sub(s.Clock.Now()), 0))
		}
		t := s.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C():
		case <-s.wakeup():
		}
		t.Stop()
	}
}

// Wake tells Run a schedule changed (protection configured or resumed).
func (s *Service) Wake() {
	select {
	case s.wakeup() <- struct{}{}:
	default:
	}
}

func (s *Service) wakeup() chan struct{} {
	s.wakeOnce.Do(func() { s.wake = make(chan struct{}, 1) })
	return s.wake
}
