package arm

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/coffer-backup/coffer/internal/errs"
)

// statusOf is the one table from error kind to HTTP status.
var statusOf = [...]int{
	errs.Internal:           http.StatusInternalServerError,
	errs.Invalid:            http.StatusBadRequest,
	errs.NotFound:           http.StatusNotFound,
	errs.Conflict:           http.StatusConflict,
	errs.Forbidden:          http.StatusForbidden,
	errs.Unauthenticated:    http.StatusUnauthorized,
	errs.Transient:          http.StatusServiceUnavailable,
	errs.PreconditionFailed: http.StatusPreconditionFailed,
	errs.MethodNotAllowed:   http.StatusMethodNotAllowed,
}

// Status returns the HTTP status for an error of kind k.
func Status(k errs.Kind) int {
	if int(k) < len(statusOf) && statusOf[k] != 0 {
		return statusOf[k]
	}
	return http.StatusInternalServerError
}

// ErrorBody is the ARM CloudError error object.
type ErrorBody struct {
	Code           string                `json:"code"`
	Message        string                `json:"message"`
	Target         *string               `json:"target"`
	Details        []ErrorBody           `json:"details"`
	AdditionalInfo []errs.AdditionalInfo `json:"additionalInfo"`
}

// CloudError is the body of every ARM error response.
type CloudError struct {
	Error ErrorBody `json:"error"`
}

// ToCloudError returns the status and body for err. Errors without a kind
// are internal: the client sees a generic message, the cause is logged by
// the caller.
func ToCloudError(err error) (int, CloudError) {
	var e *errs.Error
	if !errors.As(err, &e) || e.Kind == errs.Internal {
		return http.StatusInternalServerError, CloudError{Error: body(&errs.Error{
			Code: "InternalServerError", Message: "The server encountered an internal error. Please retry the request.",
		})}
	}
	return Status(e.Kind), CloudError{Error: body(e)}
}

func body(e *errs.Error) ErrorBody {
	b := ErrorBody{Code: e.Code, Message: e.Message, Details: []ErrorBody{}, AdditionalInfo: e.AdditionalInfo}
	if e.Target != "" {
		t := e.Target
		b.Target = &t
	}
	for _, d := range e.Details {
		b.Details = append(b.Details, body(d))
	}
	if b.AdditionalInfo == nil {
		b.AdditionalInfo = []errs.AdditionalInfo{}
	}
	return b
}

// WriteError writes err as a CloudError.
func WriteError(w http.ResponseWriter, err error) int {
	status, ce := ToCloudError(err)
	if status == http.StatusUnauthorized {
		var e *errs.Error
		errors.As(err, &e)
		desc := "The authentication failed."
		if e != nil {
			desc = e.Message
		}
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", error_description="`+quoteSafe(desc)+`"`)
	}
	writeJSON(w, status, ce)
	return status
}

func quoteSafe(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '"' || r == '\\' || r < 0x20 {
			continue
		}
		out = append(out, r)
	}
	return string(out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v == nil {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
