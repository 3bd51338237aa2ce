package arm

import (
	"net/http"
	"strconv"
)

// Accepted is a 202 (or, with a body, 201/200) carrying the LRO headers:
// asyncURL for Azure-AsyncOperation (status monitor, "" to omit) and
// locationURL for Location (final result). retryAfter is in seconds.
func Accepted(status int, body any, asyncURL, locationURL string, retryAfter int) *Response {
	resp := &Response{Status: status, Body: body, Header: http.Header{}}
	if asyncURL != "" {
		resp.Header.Set("Azure-AsyncOperation", asyncURL)
	}
	if locationURL != "" {
		resp.Header.Set("Location", locationURL)
	}
	resp.Header.Set("Retry-After", strconv.Itoa(retryAfter))
	return resp
}
