package arm

import (
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/coffer-backup/coffer/internal/errs"
)

// checkPath refuses a path with a segment no ARM name may hold (see
// segmentProblem). Empty segments are left to routing, which matches no
// route with them.
func checkPath(path []string) error {
	for _, seg := range path {
		if seg == "" {
			continue
		}
		if problem := segmentProblem(seg); problem != "" {
			return invalidID("/"+strings.Join(path, "/"), problem)
		}
	}
	return nil
}

// checkQuery refuses a query string that is malformed, names a parameter
// twice (case-insensitively: with Go's map order, which copy won would be
// chance) or holds text the store cannot keep (invalid UTF-8, control
// characters).
func checkQuery(raw string) error {
	seen := map[string]string{} // lower case -> first spelling
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil || !cleanText(key) {
			return errs.E(errs.Invalid, "InvalidQueryParameter", "The query string has a malformed parameter name '%s'.", shown(k))
		}
		value, err := url.QueryUnescape(v)
		if err != nil || !cleanText(value) {
			return errs.E(errs.Invalid, "InvalidQueryParameterValue",
				"The value of query parameter '%s' is not a valid escaped UTF-8 string without control characters.", shown(key)).WithTarget(key)
		}
		lower := strings.ToLower(key)
		if first, ok := seen[lower]; ok {
			return errs.E(errs.Invalid, "InvalidQueryParameter",
				"The query parameter '%s' is given more than once (as '%s' and '%s'); give each parameter once.",
				shown(first), shown(first), shown(key)).WithTarget(first)
		}
		seen[lower] = key
	}
	return nil
}

func cleanText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
