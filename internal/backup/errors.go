package backup

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
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

// UserError is an error of kind whose CloudError nests f (completed with
// code and message) as a UserFacingError.
func UserError(kind errs.Kind, code, message string, f UserFacingError) *errs.Error {
	f.Code, f.Message = code, message
	if f.RecommendedAction == nil {
		f.RecommendedAction = []string{}
	}
	return &errs.Error{Kind: kind, Code: code, Message: message,
		AdditionalInfo: []errs.AdditionalInfo{{Type: "UserFacingError", Info: f}}}
}

// FacingOf recovers the UserFacingError inside err (or makes one).
func FacingOf(err error) *UserFacingError {
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
	return UserError(errs.Invalid, code, message, UserFacingError{
		RecommendedAction: []string{action}, IsUserError: true, Properties: map[string]string{"ActivityId": activity},
	})
}

func missingPermission(principal string, need permission, activity string) error {
	const msg = "Appropriate permissions to perform the operation is missing."
	detail := "Validate for Protection failed. Exception Message: The client '" + principal + "' with object id '" + principal +
		"' does not have authorization to perform action '" + need.action + "' over scope '" + need.scope +
		"' or the scope is invalid. If access was recently granted, please refresh your credentials."
	return UserError(errs.Forbidden, "UserErrorMissingRequiredPermissions", msg, UserFacingError{
		RecommendedAction: []string{"Grant appropriate permissions to perform this operation as mentioned at https://aka.ms/UserErrorMissingRequiredPermissions and retry the operation."},
		InnerError: &InnerError{Code: "UserErrorMissingRequiredPermissions",
			AdditionalInfo: map[string]string{"DetailedNonLocalisedMessage": detail}},
		Properties: map[string]string{"ActivityId": activity},
	})
}

// alreadyProtected is the error for protecting a disk that the instance bi
// protects already.
func alreadyProtected(bi meta.BackupInstanceIndex, activityID string) error {
	vault := bi.ID[:strings.LastIndex(strings.ToLower(bi.ID), "/backupinstances/")]
	name := bi.ID[strings.LastIndex(bi.ID, "/")+1:]
	msg := "Datasource is already protected under the Backup vault " + vault + "."
	action := "Delete the backup instance " + name + " from the Backup vault " + vault + " to re-protect the datasource in any other vault."
	if bi.State == StateSoftDeleted {
		msg = "Datasource is protected by the soft-deleted backup instance " + name + " of the Backup vault " + vault + "."
		action = "Undelete the backup instance " + name + " in the Backup vault " + vault + " and use it, or wait until it is purged."
	}
	return UserError(errs.Invalid, "UserErrorDppDatasourceAlreadyProtected", msg, UserFacingError{
		RecommendedAction: []string{action},
		Properties:        map[string]string{"ActivityId": activityID},
	})
}
