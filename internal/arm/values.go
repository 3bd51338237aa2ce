package arm

import (
	"encoding/json"
	"slices"
	"strings"
)

// Some values changed their text between api-versions while the schema
// stayed a free string, so the specs' schemas cannot say it and shapegen
// cannot generate it: only the property's description names the texts.
// Each such change is listed here with the versions it applies to, taken
// from the descriptions in the official specs (Azure/azure-rest-api-specs);
// TestValueTextsMatchTheSpecs checks every vendored version's description
// against this list, so a newly vendored spec that disagrees fails.
//
// Providers write the newest texts; the front door writes the older ones
// to a client of an older version.

// valueChange is one property whose texts changed.
type valueChange struct {
	provider   string
	definition string // the schema definition holding the property
	property   string
	// until: versions before it use the old texts. Empty for an enum: the
	// old texts apply where the version's spec (or its neighbour's) lists
	// them among the property's values.
	until string
	// old: the newest text -> the text versions before until use.
	old map[string]string
}

// valueChanges lists what is known. DataProtection's job status: the
// DataProtection specs up to 2024-04-01 (read: 2021-01-01, 2022-12-01,
// 2024-02-01-preview, 2024-04-01) describe AzureBackupJob.status as
// "InProgress/Success/Failed/Cancelled/SuccessWithWarning"; 2025-01-01 and
// later as "InProgress/Completed/Failed/Cancelled/CompletedWithWarnings/
// Cancelling/Paused" (stable/2024-04-01 and stable/2025-01-01
// dataprotection.json).
//
// A vault's storageSettings[].datastoreType: 2021-01-01 (and 2021-07-01)
// list ArchiveStore/SnapshotStore/VaultStore, 2022-12-01 and later
// ArchiveStore/OperationalStore/VaultStore: the snapshot tier was renamed
// the operational one. The spec's enum says which versions spell it which
// way, so this entry carries no version.
func valueChanges() []valueChange {
	return []valueChange{{
		provider: "Microsoft.DataProtection", definition: "AzureBackupJob", property: "status",
		until: "2025-01-01",
		old:   map[string]string{"Completed": "Success", "CompletedWithWarnings": "SuccessWithWarning"},
	}, {
		provider: "Microsoft.DataProtection", definition: "StorageSetting", property: "datastoreType",
		old: map[string]string{"OperationalStore": "SnapshotStore"},
	}}
}

// valueTexts is the changes that may apply to one provider and version,
// by "definition.property".
type valueTexts map[string]valueChange

// textsAt is what a client of provider at version may read and write
// differently.
func textsAt(provider, version string) valueTexts {
	var vt valueTexts
	v := strings.ToLower(version)
	for _, c := range valueChanges() {
		if strings.EqualFold(c.provider, provider) && (c.until == "" || v < c.until) {
			if vt == nil {
				vt = valueTexts{}
			}
			vt[c.definition+"."+c.property] = c
		}
	}
	return vt
}

// applies reports whether old is this version's text: by version, or by
// the version's enum (enum: the property's values in its shape).
func (c valueChange) applies(old string, enum []string) bool {
	return c.until != "" || slices.Contains(enum, old)
}

// toVersion returns raw, the value of property prop of definition def, in
// the texts of the version (enum: the property's values at the version).
func (vt valueTexts) toVersion(def, prop string, enum []string, raw []byte) []byte {
	c, ok := vt[def+"."+prop]
	if !ok {
		return raw
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return raw
	}
	old, ok := c.old[s]
	if !ok || !c.applies(old, enum) {
		return raw
	}
	out, _ := json.Marshal(old)
	return out
}

// fromVersion is toVersion the other way: a request's value in the
// newest text.
func (vt valueTexts) fromVersion(def, prop string, enum []string, raw []byte) ([]byte, bool) {
	c, ok := vt[def+"."+prop]
	if !ok {
		return raw, false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return raw, false
	}
	for current, old := range c.old {
		if old == s && c.applies(old, enum) {
			out, _ := json.Marshal(current)
			return out, true
		}
	}
	return raw, false
}
