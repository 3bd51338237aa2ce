// Package errs gives coffer's errors a kind. Packages below the ARM front door
// say what went wrong (invalid input, missing resource, conflict...) with a
// Kind and an ARM-style code; only internal/arm turns that into an HTTP status
// and a CloudError body.
package errs

import (
	"errors"
	"fmt"
)

// Kind classifies an error for the client.
type Kind int

// The kinds of error. Internal is the zero value so an unclassified error is
// never mistaken for the client's fault.
const (
	Internal           Kind = iota // a bug or an unexpected failure; details are logged, not sent
	Invalid                        // the request is malformed or breaks a rule (400)
	NotFound                       // the addressed thing does not exist (404)
	Conflict                       // the thing exists or is in a state that forbids this (409)
	Forbidden                      // the caller may not do this (403)
	Unauthenticated                // no valid credentials (401)
	Transient                      // try again later (503)
	PreconditionFailed             // an If-Match or similar precondition failed (412)
	MethodNotAllowed               // the route exists, the method does not (405)
)

// Error is an error with a kind, an ARM error code, a client-facing message
// and an optional target (the field or resource the error is about).
type Error struct {
	Kind    Kind
	Code    string // ARM error code, e.g. "ResourceGroupNotFound"
	Message string // safe to show to the client
	Target  string
	// Details and AdditionalInfo are passed through to the CloudError body.
	Details        []*Error
	AdditionalInfo []AdditionalInfo
	Err            error // the cause, logged but never sent to the client
}

// AdditionalInfo is the ARM error additionalInfo entry.
type AdditionalInfo struct {
	Type string `json:"type"`
	Info any    `json:"info"`
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// E builds an error of the given kind and code with a formatted message.
func E(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithTarget sets the target and returns e.
func (e *Error) WithTarget(target string) *Error { e.Target = target; return e }

// Wrap attaches a cause and returns e.
func (e *Error) Wrap(err error) *Error { e.Err = err; return e }

// KindOf returns the kind of err, Internal if it carries none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }
