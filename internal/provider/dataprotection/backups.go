package dataprotection

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

// kindValidateRestore runs validateRestore's checks.
const kindValidateRestore = "dataprotection.validateRestore"

// backupRoutes registers ad hoc backup, jobs, recovery points and restore.
func (s *Service) backupRoutes(h func(method, pattern, action string, fn arm.HandlerFunc)) {
	h(http.MethodPost, instancePath+"/backup", "backupVaults/backupInstances/backup/action", s.adHocBackup)
	h(http.MethodGet, vaultPath+"/backupJobs", "backupVaults/backupJobs/read", s.listJobs)
	h(http.MethodGet, vaultPath+"/backupJobs/{jobId}", "backupVaults/backupJobs/read", s.getJob)
	h(http.MethodGet, instancePath+"/recoveryPoints", "backupVaults/backupInstances/recoveryPoints/read", s.listPoints)
	h(http.MethodGet, instancePath+"/recoveryPoints/{recoveryPointId}", "backupVaults/backupInstances/recoveryPoints/read", s.getPoint)
	h(http.MethodPost, instancePath+"/findRestorableTimeRanges", "backupVaults/backupInstances/findRestorableTimeRanges/action", s.findRestorableTimeRanges)
	h(http.MethodPost, instancePath+"/validateRestore", "backupVaults/backupInstances/validateRestore/action", s.validateRestore)
	h(http.MethodPost, instancePath+"/restore", "backupVaults/backupInstances/restore/action", s.restore)
	s.Ops.Register(kindValidateRestore, s.runValidateRestore)

	// Soft-deleted instances.
	h(http.MethodGet, vaultPath+"/deletedBackupInstances", "backupVaults/deletedBackupInstances/read", s.listDeleted)
	h(http.MethodGet, vaultPath+"/deletedBackupInstances/{backupInstanceName}", "backupVaults/deletedBackupInstances/read", s.getDeleted)
	h(http.MethodPost, vaultPath+"/deletedBackupInstances/{backupInstanceName}/undelete", "backupVaults/deletedBackupInstances/undelete/action", s.undelete)
	s.Ops.Register(kindUndelete, s.runUndelete)
}

func instanceOf(r *arm.Request) string {
	return vaultOf(r) + "/backupInstances/" + r.Param("backupInstanceName")
}

// accepted answers an operation the engine started: 202 with the
// location-scoped status and result URLs.
func (s *Service) accepted(ctx context.Context, r *arm.Request, op meta.Operation, retryAfter int) (*arm.Response, error) {
	v, err := s.loadVault(ctx, s.Store, vaultOf(r))
	if err != nil {
		return nil, err
	}
	id := encodeOperationID(op.ID)
	sub := r.Param("subscriptionId")
	return arm.Accepted(http.StatusAccepted, nil, statusURL(r, sub, v.Location, id), resultURL(r, sub, v.Location, id), retryAfter), nil
}

func (s *Service) adHocBackup(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in struct {
		BackupRuleOptions *backup.AdHocOptions `json:"backupRuleOptions"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.BackupRuleOptions == nil {
		return nil, invalid("InvalidRequestContent", "backupRuleOptions", "The request needs 'backupRuleOptions' with the policy's rule name and the retention tag.")
	}
	_, op, err := s.Backup.StartAdHocBackup(ctx, instanceOf(r), *in.BackupRuleOptions, activityOf(r))
	if err != nil {
		return nil, err
	}
	return s.accepted(ctx, r, op, 10)
}

func (s *Service) listJobs(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	after, limit, err := r.PageArgs()
	if err != nil {
		return nil, err
	}
	jobs, next, err := s.Backup.Jobs(ctx, vaultOf(r), after, limit)
	if err != nil {
		return nil, err
	}
	return arm.List(r, jobs, next), nil
}

func (s *Service) getJob(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := s.loadVault(ctx, s.Store, vaultOf(r)); err != nil {
		return nil, err
	}
	j, err := backup.LoadJob(ctx, s.Store, vaultOf(r)+"/backupJobs/"+r.Param("jobId"))
	if err != nil {
		return nil, err
	}
	return arm.OK(j), nil
}

// pointFilter is RecoveryPoints_List's $filter:
// startDate eq '<time>' and endDate eq '<time>', either part alone.
var pointFilter = regexp.MustCompile(`(?i)^\s*(startDate|endDate)\s+eq\s+'([^']*)'\s*$`)

func parsePointFilter(f string) (from, to time.Time, err error) {
	if strings.TrimSpace(f) == "" {
		return from, to, nil
	}
	bad := func() error {
		return errs.E(errs.Invalid, "InvalidFilter",
			"The filter '%s' is not supported: use startDate eq '<ISO 8601 time>' and endDate eq '<ISO 8601 time>'.", f).WithTarget("$filter")
	}
	for _, term := range regexp.MustCompile(`(?i)\s+and\s+`).Split(f, -1) {
		m := pointFilter.FindStringSubmatch(term)
		if m == nil {
			return from, to, bad()
		}
		t, perr := parseTime(m[2])
		if perr != nil {
			return from, to, bad()
		}
		if strings.EqualFold(m[1], "startDate") {
			from = t
		} else {
			to = t
		}
	}
	return from, to, nil
}

// parseTime reads the ISO 8601 times clients send, with or without a zone
// (without one, UTC).
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errs.E(errs.Invalid, "InvalidParameter", "'%s' is not an ISO 8601 time.", s)
}

func (s *Service) listPoints(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	bi, err := s.Backup.Instance(ctx, s.Store, instanceOf(r))
	if err != nil {
		return nil, err
	}
	from, to, err := parsePointFilter(r.Query("$filter"))
	if err != nil {
		return nil, err
	}
	after, limit, err := r.PageArgs()
	if err != nil {
		return nil, err
	}
	points, next, err := s.Backup.Points(ctx, bi.ID, from, to, after, limit)
	if err != nil {
		return nil, err
	}
	return arm.List(r, points, next), nil
}

func (s *Service) getPoint(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	bi, err := s.Backup.Instance(ctx, s.Store, instanceOf(r))
	if err != nil {
		return nil, err
	}
	p, err := s.Backup.Point(ctx, bi.ID, r.Param("recoveryPointId"))
	if err != nil {
		return nil, err
	}
	return arm.OK(p), nil
}

// restorableRanges is AzureBackupFindRestorableTimeRangesResponseResource.
type restorableRanges struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Properties struct {
		ObjectType           string           `json:"objectType"`
		RestorableTimeRanges []restorableTime `json:"restorableTimeRanges"`
	} `json:"properties"`
}

type restorableTime struct {
	StartTime  string `json:"startTime"`
	EndTime    string `json:"endTime"`
	ObjectType string `json:"objectType"`
}

// findRestorableTimeRanges answers from the recovery points: a disk's are
// discrete, so the range runs from the first point in the window to the
// last, and any point in it restores.
func (s *Service) findRestorableTimeRanges(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in struct {
		SourceDataStoreType string `json:"sourceDataStoreType"`
		StartTime           string `json:"startTime"`
		EndTime             string `json:"endTime"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if !strings.EqualFold(in.SourceDataStoreType, "OperationalStore") {
		return nil, invalid("UserErrorInvalidDataStoreType", "sourceDataStoreType",
			"Disk backups are kept in the 'OperationalStore'; sourceDataStoreType '%s' holds none.", in.SourceDataStoreType)
	}
	var from, to time.Time
	var err error
	if in.StartTime != "" {
		if from, err = parseTime(in.StartTime); err != nil {
			return nil, invalid("InvalidParameter", "startTime", "'%s' is not an ISO 8601 time.", in.StartTime)
		}
	}
	if in.EndTime != "" {
		if to, err = parseTime(in.EndTime); err != nil {
			return nil, invalid("InvalidParameter", "endTime", "'%s' is not an ISO 8601 time.", in.EndTime)
		}
	}
	bi, err := s.Backup.Instance(ctx, s.Store, instanceOf(r))
	if err != nil {
		return nil, err
	}
	out := restorableRanges{ID: bi.ID, Type: "Microsoft.DataProtection/backupVaults/backupInstances/findRestorableTimeRanges"}
	out.Properties.ObjectType = "AzureBackupFindRestorableTimeRangesResponse"
	out.Properties.RestorableTimeRanges = []restorableTime{}
	var first, last time.Time
	after := ""
	for {
		page, next, err := s.Backup.Points(ctx, bi.ID, from, to, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, p := range page {
			if first.IsZero() {
				first = p.Properties.RecoveryPointTime
			}
			last = p.Properties.RecoveryPointTime
		}
		if next == "" {
			break
		}
		after = next
	}
	if !first.IsZero() {
		out.Properties.RestorableTimeRanges = append(out.Properties.RestorableTimeRanges, restorableTime{
			StartTime: first.Format(time.RFC3339Nano), EndTime: last.Format(time.RFC3339Nano), ObjectType: "RestorableTimeRange"})
	}
	return arm.OK(out), nil
}

// validateRestoreInput is the input of a validateRestore operation.
type validateRestoreInput struct {
	InstanceID string                `json:"instanceId"`
	Request    backup.RestoreRequest `json:"request"`
	ActivityID string                `json:"activityId"`
}

func (s *Service) validateRestore(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in struct {
		RestoreRequestObject *backup.RestoreRequest `json:"restoreRequestObject"`
	}
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if in.RestoreRequestObject == nil {
		return nil, invalid("InvalidRequestContent", "restoreRequestObject", "The request needs 'restoreRequestObject', the restore to validate.")
	}
	if err := backup.NormalizeRestore(in.RestoreRequestObject, "restoreRequestObject."); err != nil {
		return nil, err
	}
	id := instanceOf(r)
	if _, err := s.Backup.Instance(ctx, s.Store, id); err != nil {
		return nil, err
	}
	var op meta.Operation
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		var err error
		op, err = s.Ops.Enqueue(ctx, tx, kindValidateRestore, id,
			validateRestoreInput{InstanceID: id, Request: *in.RestoreRequestObject, ActivityID: activityOf(r)})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	return s.accepted(ctx, r, op, 10)
}

func (s *Service) runValidateRestore(ctx context.Context, op meta.Operation) (any, error) {
	var in validateRestoreInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	if err := s.Backup.ValidateRestore(ctx, in.InstanceID, in.Request, in.ActivityID); err != nil {
		return nil, err
	}
	return newJobInfo(), nil
}

func (s *Service) restore(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in backup.RestoreRequest
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := backup.NormalizeRestore(&in, ""); err != nil {
		return nil, err
	}
	_, op, err := s.Backup.StartRestore(ctx, instanceOf(r), in, activityOf(r))
	if err != nil {
		return nil, err
	}
	return s.accepted(ctx, r, op, 30)
}
