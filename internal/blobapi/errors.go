package blobapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
)

// Azure Blob Storage error codes this package sends. Clients match on these
// (bloberror.HasCode), so they are Azure's spelling, not ARM's.
const (
	codeAuthenticationFailed            = "AuthenticationFailed"
	codeAuthorizationPermissionMismatch = "AuthorizationPermissionMismatch"
	codeAuthorizationFailure            = "AuthorizationFailure"
	codeBlobNotFound                    = "BlobNotFound"
	codeCannotVerifyCopySource          = "CannotVerifyCopySource"
	codeConditionNotMet                 = "ConditionNotMet"
	codeInternalError                   = "InternalError"
	codeInvalidHeaderValue              = "InvalidHeaderValue"
	codeInvalidInput                    = "InvalidInput"
	codeInvalidMd5                      = "InvalidMd5"
	codeInvalidPageRange                = "InvalidPageRange"
	codeInvalidQueryParameterValue      = "InvalidQueryParameterValue"
	codeInvalidRange                    = "InvalidRange"
	codeInvalidURI                      = "InvalidUri"
	codeLeaseNotPresent                 = "LeaseNotPresentWithBlobOperation"
	codeMd5Mismatch                     = "Md5Mismatch"
	codeCrc64Mismatch                   = "Crc64Mismatch"
	codeMissingContentLength            = "MissingContentLengthHeader"
	codeMissingRequiredHeader           = "MissingRequiredHeader"
	codeOutOfRangeInput                 = "OutOfRangeInput"
	codeOutOfRangeQueryParameterValue   = "OutOfRangeQueryParameterValue"
	codePreviousSnapshotNotFound        = "PreviousSnapshotNotFound"
	codeRequestBodyTooLarge             = "RequestBodyTooLarge"
	codeSequenceNumberConditionNotMet   = "SequenceNumberConditionNotMet"
	codeServerBusy                      = "ServerBusy"
	codeUnsupportedHeader               = "UnsupportedHeader"
	codeUnsupportedHTTPVerb             = "UnsupportedHttpVerb"
	codeUnsupportedQueryParameter       = "UnsupportedQueryParameter"
)

// wireError is one row of the table from Azure code to status and default
// message, in the manner of minio's api-errors: the only place a code gets
// its status.
type wireError struct {
	status  int
	message string
}

// lookupCode returns Azure's status and message for a code this package
// sends, and false for any other code.
func lookupCode(code string) (wireError, bool) {
	switch code {
	case codeAuthenticationFailed:
		return wireError{http.StatusForbidden, msgAuthFailed}, true
	case codeAuthorizationPermissionMismatch:
		return wireError{http.StatusForbidden, "This request is not authorized to perform this operation using this permission."}, true
	case codeAuthorizationFailure:
		return wireError{http.StatusForbidden, "This request is not authorized to perform this operation."}, true
	case codeBlobNotFound:
		return wireError{http.StatusNotFound, "The specified blob does not exist."}, true
	case codeCannotVerifyCopySource:
		return wireError{http.StatusForbidden, "This request is not authorized to perform this operation."}, true
	case codeConditionNotMet:
		return wireError{http.StatusPreconditionFailed, "The condition specified using HTTP conditional header(s) is not met."}, true
	case codeInternalError:
		return wireError{http.StatusInternalServerError, "The server encountered an internal error. Please retry the request."}, true
	case codeInvalidHeaderValue:
		return wireError{http.StatusBadRequest, "The value for one of the HTTP headers is not in the correct format."}, true
	case codeInvalidInput:
		return wireError{http.StatusBadRequest, "One of the request inputs is not valid."}, true
	case codeInvalidMd5:
		return wireError{http.StatusBadRequest, "The MD5 value specified in the request is invalid. The MD5 value must be 128 bits and Base64-encoded."}, true
	case codeInvalidPageRange:
		return wireError{http.StatusRequestedRangeNotSatisfiable, "The page range specified is invalid."}, true
	case codeInvalidQueryParameterValue:
		return wireError{http.StatusBadRequest, "Value for one of the query parameters specified in the request URI is invalid."}, true
	case codeInvalidRange:
		return wireError{http.StatusRequestedRangeNotSatisfiable, "The range specified is invalid for the current size of the resource."}, true
	case codeInvalidURI:
		return wireError{http.StatusBadRequest, "The requested URI does not represent any resource on the server."}, true
	case codeLeaseNotPresent:
		return wireError{http.StatusPreconditionFailed, "There is currently no lease on the blob."}, true
	case codeMd5Mismatch:
		return wireError{http.StatusBadRequest, "The MD5 value specified in the request did not match with the MD5 value calculated by the server."}, true
	case codeCrc64Mismatch:
		return wireError{http.StatusBadRequest, "The CRC64 value specified in the request did not match with the CRC64 value calculated by the server."}, true
	case codeMissingContentLength:
		return wireError{http.StatusLengthRequired, "Content-Length HTTP header is missing."}, true
	case codeMissingRequiredHeader:
		return wireError{http.StatusBadRequest, "An HTTP header that's mandatory for this request is not specified."}, true
	case codeOutOfRangeInput:
		return wireError{http.StatusBadRequest, "One of the request inputs is out of range."}, true
	case codeOutOfRangeQueryParameterValue:
		return wireError{http.StatusBadRequest, "One of the query parameters specified in the request URI is outside the permissible range."}, true
	case codePreviousSnapshotNotFound:
		return wireError{http.StatusConflict, "The previous snapshot is not found."}, true
	case codeRequestBodyTooLarge:
		return wireError{http.StatusRequestEntityTooLarge, "The request body is too large and exceeds the maximum permissible limit."}, true
	case codeSequenceNumberConditionNotMet:
		return wireError{http.StatusPreconditionFailed, "The sequence number condition specified was not met."}, true
	case codeServerBusy:
		return wireError{http.StatusServiceUnavailable, "The server is currently unable to receive requests. Please retry your request."}, true
	case codeUnsupportedHeader:
		return wireError{http.StatusBadRequest, "One of the HTTP headers specified in the request is not supported."}, true
	case codeUnsupportedHTTPVerb:
		return wireError{http.StatusMethodNotAllowed, "The resource doesn't support specified Http Verb."}, true
	case codeUnsupportedQueryParameter:
		return wireError{http.StatusBadRequest, "One of the query parameters specified in the request URI is not supported."}, true
	}
	return wireError{}, false
}

// blobErr builds a client error with an Azure code from the table above and,
// optionally, Azure's extra elements (HeaderName, QueryParameterName, ...)
// as name/value pairs.
func blobErr(code string, extra ...string) *errs.Error {
	we, _ := lookupCode(code)
	e := &errs.Error{Kind: kindOfStatus(we.status), Code: code, Message: we.message}
	for i := 0; i+1 < len(extra); i += 2 {
		e.Details = append(e.Details, &errs.Error{Code: extra[i], Message: extra[i+1]})
	}
	return e
}

func headerErr(code, header, value string) *errs.Error {
	return blobErr(code, "HeaderName", header, "HeaderValue", value)
}

func queryErr(code, param, value, reason string) *errs.Error {
	e := blobErr(code, "QueryParameterName", param, "QueryParameterValue", value)
	if reason != "" {
		e.Details = append(e.Details, &errs.Error{Code: "Reason", Message: reason})
	}
	return e
}

// kindOfStatus keeps the errs kind of a wire error truthful for anyone who
// logs or inspects it before it is written.
func kindOfStatus(status int) errs.Kind {
	switch status {
	case http.StatusForbidden:
		return errs.Forbidden
	case http.StatusNotFound:
		return errs.NotFound
	case http.StatusPreconditionFailed:
		return errs.PreconditionFailed
	case http.StatusMethodNotAllowed:
		return errs.MethodNotAllowed
	case http.StatusConflict:
		return errs.Conflict
	case http.StatusServiceUnavailable:
		return errs.Transient
	case http.StatusInternalServerError, 0:
		return errs.Internal
	}
	return errs.Invalid
}

// wire decides what the client is told about err. Codes from the table keep
// their status; errors from Lookup or the Disk, whose codes are coffer's, are
// told by kind with an Azure code so clients see a vocabulary they know.
// Internal errors say nothing beyond InternalError.
func wire(err error) (status int, code, message string, details []*errs.Error) {
	var e *errs.Error
	if !errors.As(err, &e) {
		we, _ := lookupCode(codeInternalError)
		return we.status, codeInternalError, we.message, nil
	}
	if we, ok := lookupCode(e.Code); ok && e.Kind != errs.Internal {
		msg := e.Message
		if msg == "" {
			msg = we.message
		}
		return we.status, e.Code, msg, e.Details
	}
	code = codeInternalError
	switch e.Kind {
	case errs.Invalid:
		code = codeInvalidInput
	case errs.NotFound:
		code = codeBlobNotFound
	case errs.Forbidden:
		code = codeAuthorizationFailure
	case errs.Unauthenticated:
		code = codeAuthenticationFailed
	case errs.PreconditionFailed:
		code = codeConditionNotMet
	case errs.MethodNotAllowed:
		code = codeUnsupportedHTTPVerb
	case errs.Transient:
		code = codeServerBusy
	case errs.Conflict:
		// Azure has no generic conflict code; the dependency's own code is
		// the most useful thing to show.
		msg := e.Message
		if e.Code == "" {
			return http.StatusConflict, "Conflict", msg, nil
		}
		return http.StatusConflict, e.Code, msg, nil
	}
	we, _ := lookupCode(code)
	msg := e.Message
	if e.Kind == errs.Internal || msg == "" {
		msg = we.message
	}
	return we.status, code, msg, nil
}

// azureTime is the format of the Time line in an error message.
const azureTime = "2006-01-02T15:04:05.0000000Z"

// errorBody renders Azure's error XML. The message carries the request id and
// time on their own lines because that is where Azure puts them and where
// people look for them when filing a support case.
func errorBody(code, message string, details []*errs.Error, requestID string, now time.Time) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><Error><Code>`)
	xmlText(&b, code)
	b.WriteString("</Code><Message>")
	xmlText(&b, message+"\nRequestId:"+requestID+"\nTime:"+now.UTC().Format(azureTime))
	b.WriteString("</Message>")
	for _, d := range details {
		if !xmlName(d.Code) {
			continue
		}
		b.WriteString("<" + d.Code + ">")
		xmlText(&b, d.Message)
		b.WriteString("</" + d.Code + ">")
	}
	b.WriteString("</Error>")
	return []byte(b.String())
}

func xmlText(b *strings.Builder, s string) {
	// Newlines stay literal, as in Azure's bodies; characters XML 1.0 cannot
	// carry are dropped so a message can never make the document invalid.
	for _, c := range s {
		switch {
		case c == '&':
			b.WriteString("&amp;")
		case c == '<':
			b.WriteString("&lt;")
		case c == '>':
			b.WriteString("&gt;")
		case c == '\n' || c == '\t' || c >= 0x20 && c < 0xFFFE:
			b.WriteRune(c)
		}
	}
}

// xmlName accepts the ASCII element names used for error details, so a
// detail can never break the document.
func xmlName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		letter := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// writeError sends err in Azure's format. HEAD gets the headers only, as from
// Azure, so clients read x-ms-error-code.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, message string, details []*errs.Error, requestID string, now time.Time) {
	h := w.Header()
	h.Set("x-ms-error-code", code)
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	body := errorBody(code, message, details, requestID, now)
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
