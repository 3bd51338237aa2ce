package dataprotection

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
)

// UserFacingError is DataProtection's rich error, nested in
// error.additionalInfo[].info and in protection error details.
type UserFacingError struct {
	Message           string            `json:"message"`
	RecommendedAction []string          `json:"recommendedAction"`
	Details           []UserFacingError `json:"details"`
	Code              string            `json:"code"`
	Target            string            `json:"target"`
	InnerError        *InnerError       `json:"innerError"`
	IsRetryable       bool              `json:"isRetryable"`
	IsUserError       bool              `json:"isUserError"`
	Properties        map[string]string `json:"properties"`
}

// InnerError carries the detailed, non-localized message.
type InnerError struct {
	Code           string            `json:"code"`
	AdditionalInfo map[string]string `json:"additionalInfo"`
}

// userError is an error of kind whose CloudError nests f (completed with
// code and message) as a UserFacingError.
func userError(kind errs.Kind, code, message string, f UserFacingError) *errs.Error {
	f.Code, f.Message = code, message
	if f.RecommendedAction == nil {
		f.RecommendedAction = []string{}
	}
	return &errs.Error{Kind: kind, Code: code, Message: message,
		AdditionalInfo: []errs.AdditionalInfo{{Type: "UserFacingError", Info: f}}}
}

// facingOf recovers the UserFacingError inside err (or makes one).
func facingOf(err error) *UserFacingError {
	var e *errs.Error
	if !errors.As(err, &e) {
		return &UserFacingError{Code: "InternalServerError", Message: "Internal error.", RecommendedAction: []string{}}
	}
	for _, ai := range e.AdditionalInfo {
		if ai.Type != "UserFacingError" {
			continue
		}
		raw, _ := json.Marshal(ai.Info)
		var f UserFacingError
		if json.Unmarshal(raw, &f) == nil {
			return &f
		}
	}
	return &UserFacingError{Code: e.Code, Message: e.Message, RecommendedAction: []string{}, IsUserError: true}
}

func simpleUserError(code, message, action, activity string) *errs.Error {
	return userError(errs.Invalid, code, message, UserFacingError{
		RecommendedAction: []string{action}, IsUserError: true, Properties: map[string]string{"ActivityId": activity},
	})
}

// permission is one check of the vault identity's rights.
type permission struct{ action, scope string }

// check runs what validateForBackup and configure protection verify, in
// the order the service reports them. A failed check is a user error; a
// failure to check is internal.
func (s *Service) check(ctx context.Context, in validateInput) error {
	v, err := s.loadVault(ctx, s.Store, in.VaultID)
	if err != nil {
		return err
	}
	b := in.Instance
	diskID := b.DataSourceInfo.ResourceID
	disk, err := s.Store.GetResource(ctx, diskID)
	if errs.Is(err, errs.NotFound) {
		return simpleUserError("UserErrorDatasourceNotFound", "The disk "+diskID+" does not exist.",
			"Check the disk's ARM id in dataSourceInfo.resourceID.", in.ActivityID)
	}
	if err != nil {
		return err
	}
	var diskBody struct {
		Location string `json:"location"`
	}
	if err := json.Unmarshal(disk.Body, &diskBody); err != nil {
		return err
	}
	if normalizeLocation(diskBody.Location) != normalizeLocation(v.Location) {
		return simpleUserError("UserErrorDatasourceAndBackupVaultLocationMismatch",
			"The disk is in '"+diskBody.Location+"' but the Backup vault is in '"+v.Location+"'; they must be in the same region.",
			"Use a Backup vault in the disk's region.", in.ActivityID)
	}
	snap := b.snapshotGroup()
	sp, _ := parseID(snap)
	dp, _ := parseID(diskID)
	if !strings.EqualFold(sp.Subscription, dp.Subscription) {
		return simpleUserError("UserErrorSnapshotResourceGroupInDifferentSubscription",
			"The snapshot resource group "+snap+" is not in the disk's subscription "+dp.Subscription+".",
			"Choose a snapshot resource group in the disk's subscription.", in.ActivityID)
	}
	if _, err := groups.Get(ctx, s.Store, sp.Subscription, sp.Group); err != nil {
		if errs.Is(err, errs.NotFound) {
			return simpleUserError("UserErrorSnapshotResourceGroupNotFound",
				"The snapshot resource group "+snap+" does not exist.", "Create the resource group, or name an existing one.", in.ActivityID)
		}
		return err
	}
	if v.Identity == nil || v.Identity.PrincipalID == "" {
		return simpleUserError("UserErrorBackupVaultManagedIdentityMissing",
			"The Backup vault "+v.ID+" has no system-assigned managed identity.",
			"Enable the vault's system-assigned identity (identity.type SystemAssigned) and grant it the disk backup roles.", in.ActivityID)
	}
	var p Policy
	policyName := b.PolicyInfo.PolicyID[strings.LastIndex(b.PolicyInfo.PolicyID, "/")+1:]
	if _, err := load(ctx, s.Store, in.VaultID+"/backupPolicies/"+policyName, &p, func() error {
		return simpleUserError("UserErrorBackupPolicyNotFound", "The backup policy "+b.PolicyInfo.PolicyID+" does not exist.",
			"Create the policy in the vault or name an existing one.", in.ActivityID)
	}); err != nil {
		return err
	}
	if len(p.Properties.DatasourceTypes) == 0 || !strings.EqualFold(p.Properties.DatasourceTypes[0], DiskType) {
		return simpleUserError("UserErrorPolicyDatasourceTypeMismatch", "The backup policy "+p.ID+" is not a disk backup policy.",
			"Use a policy whose datasourceTypes is Microsoft.Compute/disks.", in.ActivityID)
	}
	// The identity's rights: Disk Backup Reader on the disk, Disk Snapshot
	// Contributor on the snapshot resource group.
	const auth = "/providers/Microsoft.Authorization"
	needs := []permission{
		{"Microsoft.Authorization/roleAssignments/read", diskID + auth},
		{"Microsoft.Compute/disks/read", diskID},
		{"Microsoft.Compute/disks/beginGetAccess/action", diskID},
		{"Microsoft.Authorization/roleAssignments/read", snap + auth},
		{"Microsoft.Resources/subscriptions/resourceGroups/read", snap},
		{"Microsoft.Compute/snapshots/write", snap},
		{"Microsoft.Compute/snapshots/read", snap},
		{"Microsoft.Compute/snapshots/delete", snap},
		{"Microsoft.Compute/snapshots/beginGetAccess/action", snap},
		{"Microsoft.Compute/snapshots/endGetAccess/action", snap},
	}
	principal := v.Identity.PrincipalID
	for _, need := range needs {
		ok, err := s.Permissions.Allowed(ctx, principal, need.action, need.scope)
		if err != nil {
			return err
		}
		if !ok {
			return missingPermission(principal, need, in.ActivityID)
		}
	}
	return nil
}

func missingPermission(principal string, need permission, activity string) error {
	const msg = "Appropriate permissions to perform the operation is missing."
	detail := "Validate for Protection failed. Exception Message: The client '" + principal + "' with object id '" + principal +
		"' does not have authorization to perform action '" + need.action + "' over scope '" + need.scope +
		"' or the scope is invalid. If access was recently granted, please refresh your credentials."
	return userError(errs.Forbidden, "UserErrorMissingRequiredPermissions", msg, UserFacingError{
		RecommendedAction: []string{"Grant appropriate permissions to perform this operation as mentioned at https://aka.ms/UserErrorMissingRequiredPermissions and retry the operation."},
		InnerError: &InnerError{Code: "UserErrorMissingRequiredPermissions",
			AdditionalInfo: map[string]string{"DetailedNonLocalisedMessage": detail}},
		Properties: map[string]string{"ActivityId": activity},
	})
}
