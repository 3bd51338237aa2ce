package arm

import (
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
)

// NormalizeLocation lower-cases and drops spaces, as ARM echoes "West US"
// back as "westus".
func NormalizeLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
}

// CheckLocation refuses a resource body without a location, as ARM does.
func CheckLocation(loc *string) error {
	if loc == nil || strings.TrimSpace(*loc) == "" {
		return errs.E(errs.Invalid, "LocationRequired", "The location property is required for this definition.").WithTarget("location")
	}
	return nil
}

// CheckTags applies ARM's tag rules: at most 50; names up to 512
// characters without <>%&\?/; values up to 256.
func CheckTags(tags *map[string]string) error {
	if tags == nil {
		return nil
	}
	if len(*tags) > 50 {
		return errs.E(errs.Invalid, "InvalidTagCount", "A resource may carry at most 50 tags, not %d.", len(*tags)).WithTarget("tags")
	}
	for k, v := range *tags {
		if k == "" || len(k) > 512 || strings.ContainsAny(k, "<>%&\\?/") {
			return errs.E(errs.Invalid, "InvalidTagNameCharacters", "The tag name '%s' is empty, longer than 512 characters or has one of <>%%&\\?/.", k).WithTarget("tags")
		}
		if len(v) > 256 {
			return errs.E(errs.Invalid, "InvalidTagValueLength", "The value of tag '%s' is longer than 256 characters.", k).WithTarget("tags")
		}
	}
	return nil
}
