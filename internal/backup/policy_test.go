package backup

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/internal/errs"
)

// defaultDiskPolicy is the policy of the REST how-to: every 4 hours, kept 7 days.
const defaultDiskPolicy = `{
  "objectType": "BackupPolicy",
  "datasourceTypes": ["Microsoft.Compute/disks"],
  "policyRules": [
    {"objectType": "AzureBackupRule", "name": "BackupHourly",
     "backupParameters": {"objectType": "AzureBackupParams", "backupType": "Incremental"},
     "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
     "trigger": {"objectType": "ScheduleBasedTriggerContext",
       "schedule": {"repeatingTimeIntervals": ["R/2021-05-20T22:00:00+00:00/PT4H"], "timeZone": "UTC"},
       "taggingCriteria": [{"isDefault": true, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}}]}},
    {"objectType": "AzureRetentionRule", "name": "Default", "isDefault": true,
     "lifecycles": [{"sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
                     "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P7D"},
                     "targetDataStoreCopySettings": []}]}
  ]}`

func decodePolicy(t *testing.T, mutate func(p map[string]any)) (*PolicyProperties, error) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(defaultDiskPolicy), &m); err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(m)
	}
	raw, _ := json.Marshal(m)
	var p PolicyProperties
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// helpers to reach into the generic policy map
func rules(p map[string]any) []any               { return p["policyRules"].([]any) }
func backupRule(p map[string]any) map[string]any { return rules(p)[0].(map[string]any) }
func retentionRule(p map[string]any) map[string]any {
	return rules(p)[1].(map[string]any)
}
func trigger(p map[string]any) map[string]any { return backupRule(p)["trigger"].(map[string]any) }
func tags(p map[string]any) []any             { return trigger(p)["taggingCriteria"].([]any) }
func lifecycle(p map[string]any) map[string]any {
	return retentionRule(p)["lifecycles"].([]any)[0].(map[string]any)
}
func setInterval(v string) func(map[string]any) {
	return func(p map[string]any) {
		trigger(p)["schedule"].(map[string]any)["repeatingTimeIntervals"] = []any{v}
	}
}
func setDuration(v string) func(map[string]any) {
	return func(p map[string]any) { lifecycle(p)["deleteAfter"].(map[string]any)["duration"] = v }
}

// weeklyTag adds a FirstOfWeek tag and its retention rule.
func weeklyTag(p map[string]any) {
	trigger(p)["taggingCriteria"] = append(tags(p), map[string]any{
		"isDefault": false, "taggingPriority": 20, "tagInfo": map[string]any{"tagName": "Weekly"},
		"criteria": []any{map[string]any{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": []any{"FirstOfWeek"}}},
	})
	p["policyRules"] = append(rules(p), map[string]any{
		"objectType": "AzureRetentionRule", "name": "Weekly", "isDefault": false,
		"lifecycles": []any{map[string]any{
			"sourceDataStore": map[string]any{"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
			"deleteAfter":     map[string]any{"objectType": "AbsoluteDeleteOption", "duration": "P8W"},
		}},
	})
}

func TestValidPolicies(t *testing.T) {
	cases := map[string]func(map[string]any){
		"the how-to's default": nil,
		"daily":                setInterval("R/2021-07-01T19:00:00+00:00/P1D"),
		"hourly, Z offset, fractions": func(p map[string]any) {
			setInterval("R/2021-07-01T19:00:00.000Z/PT1H")(p)
			setDuration("P18D")(p)
		},
		"minutes-only time": setInterval("R/2021-07-01T19:00+05:30/PT12H"),
		"one year":          func(p map[string]any) { setInterval("R/2021-07-01T19:00:00Z/P1D")(p); setDuration("P1Y")(p) },
		"weekly tag":        weeklyTag,
		"lower-case spellings": func(p map[string]any) {
			backupRule(p)["objectType"] = "azurebackuprule"
			p["objectType"] = "backuppolicy"
		},
		"datastoreType spelling": func(p map[string]any) {
			backupRule(p)["dataStore"] = map[string]any{"objectType": "DataStoreInfoBase", "datastoreType": "OperationalStore"}
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := decodePolicy(t, mutate)
			if err != nil {
				t.Fatal(err)
			}
			if err := ValidatePolicy(p); err != nil {
				t.Fatalf("refused: %v", err)
			}
			bt := p.PolicyRules[0]
			if bt.ObjectType != "AzureBackupRule" || bt.Trigger.TaggingCriteria[0].TagInfo.ID != bt.Trigger.TaggingCriteria[0].TagInfo.TagName+"_" {
				t.Fatalf("not normalized: %+v", bt.Trigger.TaggingCriteria[0].TagInfo)
			}
			if p.PolicyRules[0].DataStore.DataStoreType != "OperationalStore" {
				t.Fatalf("dataStoreType lost: %+v", p.PolicyRules[0].DataStore)
			}
		})
	}
}

// TestMalformedPolicies: each is refused with a 400 whose message names the
// offending field.
func TestMalformedPolicies(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(map[string]any)
		want   string // in the message
	}{
		{"wrong objectType", func(p map[string]any) { p["objectType"] = "Policy" }, "properties.objectType"},
		{"no datasourceTypes", func(p map[string]any) { delete(p, "datasourceTypes") }, "properties.datasourceTypes"},
		{"two datasourceTypes", func(p map[string]any) {
			p["datasourceTypes"] = []any{"Microsoft.Compute/disks", "Microsoft.Storage/storageAccounts/blobServices"}
		}, "properties.datasourceTypes"},
		{"blob datasource", func(p map[string]any) { p["datasourceTypes"] = []any{"Microsoft.Storage/storageAccounts/blobServices"} }, "properties.datasourceTypes"},
		{"no rules", func(p map[string]any) { p["policyRules"] = []any{} }, "properties.policyRules"},
		{"no backup rule", func(p map[string]any) { p["policyRules"] = rules(p)[1:] }, "needs one AzureBackupRule"},
		{"two backup rules", func(p map[string]any) {
			second := map[string]any{}
			raw, _ := json.Marshal(backupRule(p))
			json.Unmarshal(raw, &second)
			second["name"] = "Another"
			p["policyRules"] = append(rules(p), second)
		}, "exactly one AzureBackupRule"},
		{"no default retention", func(p map[string]any) { retentionRule(p)["isDefault"] = false }, "default AzureRetentionRule"},
		{"unknown rule type", func(p map[string]any) { retentionRule(p)["objectType"] = "AzureCopyRule" }, "policyRules[1].objectType"},
		{"rule without name", func(p map[string]any) { backupRule(p)["name"] = "" }, "policyRules[0].name"},
		{"duplicate rule names", func(p map[string]any) { retentionRule(p)["name"] = "BackupHourly" }, "used twice"},
		{"no backupParameters", func(p map[string]any) { delete(backupRule(p), "backupParameters") }, "backupParameters"},
		{"bad backupParameters type", func(p map[string]any) {
			backupRule(p)["backupParameters"].(map[string]any)["objectType"] = "AzureBackupParameters"
		}, "backupParameters.objectType"},
		{"full backup", func(p map[string]any) { backupRule(p)["backupParameters"].(map[string]any)["backupType"] = "Full" }, "backupParameters.backupType"},
		{"vault store", func(p map[string]any) { backupRule(p)["dataStore"].(map[string]any)["dataStoreType"] = "VaultStore" }, "dataStore.dataStoreType"},
		{"no dataStore", func(p map[string]any) { delete(backupRule(p), "dataStore") }, "dataStore"},
		{"adhoc trigger", func(p map[string]any) { trigger(p)["objectType"] = "AdhocBasedTriggerContext" }, "trigger.objectType"},
		{"no schedule", func(p map[string]any) { delete(trigger(p), "schedule") }, "trigger.schedule"},
		{"two intervals", func(p map[string]any) {
			trigger(p)["schedule"].(map[string]any)["repeatingTimeIntervals"] = []any{"R/2021-05-20T22:00:00+00:00/PT4H", "R/2021-05-20T22:00:00+00:00/PT8H"}
		}, "repeatingTimeIntervals"},
		{"no interval", func(p map[string]any) { trigger(p)["schedule"].(map[string]any)["repeatingTimeIntervals"] = []any{} }, "repeatingTimeIntervals"},
		{"not repeating", setInterval("2021-05-20T22:00:00+00:00/PT4H"), "repeating interval"},
		{"repeat count", setInterval("R5/2021-05-20T22:00:00+00:00/PT4H"), "repeating interval"},
		{"bare time", setInterval("R/T22:00:00/PT4H"), "full date-time"},
		{"no offset", setInterval("R/2021-05-20T22:00:00/PT4H"), "full date-time"},
		{"compact time", setInterval("R/2021-05-20T2200+00:00/PT4H"), "full date-time"},
		{"3 hours", setInterval("R/2021-05-20T22:00:00+00:00/PT3H"), "PT3H"},
		{"weekly", setInterval("R/2021-05-20T22:00:00+00:00/P1W"), "P1W"},
		{"30 minutes", setInterval("R/2021-05-20T22:00:00+00:00/PT30M"), "PT30M"},
		{"bad time zone", func(p map[string]any) { trigger(p)["schedule"].(map[string]any)["timeZone"] = "Mars/Olympus" }, "timeZone"},
		{"no tagging", func(p map[string]any) { trigger(p)["taggingCriteria"] = []any{} }, "taggingCriteria"},
		{"tag without name", func(p map[string]any) { tags(p)[0].(map[string]any)["tagInfo"] = map[string]any{} }, "tagInfo.tagName"},
		{"tag without priority", func(p map[string]any) { delete(tags(p)[0].(map[string]any), "taggingPriority") }, "taggingPriority"},
		{"tag without isDefault", func(p map[string]any) { delete(tags(p)[0].(map[string]any), "isDefault") }, "isDefault"},
		{"tag without rule", func(p map[string]any) { tags(p)[0].(map[string]any)["tagInfo"] = map[string]any{"tagName": "Monthly"} }, "no AzureRetentionRule"},
		{"no default tag", func(p map[string]any) {
			weeklyTag(p)
			tags(p)[0].(map[string]any)["isDefault"] = false
			tags(p)[0].(map[string]any)["criteria"] = []any{map[string]any{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": []any{"FirstOfDay"}}}
		}, "exactly one tagging criterion must be the default"},
		{"monthly criteria", func(p map[string]any) {
			weeklyTag(p)
			tags(p)[1].(map[string]any)["criteria"].([]any)[0].(map[string]any)["absoluteCriteria"] = []any{"FirstOfMonth"}
		}, "FirstOfMonth"},
		{"criteria with days", func(p map[string]any) {
			weeklyTag(p)
			tags(p)[1].(map[string]any)["criteria"].([]any)[0].(map[string]any)["daysOfTheWeek"] = []any{"Sunday"}
		}, "only absoluteCriteria"},
		{"non-default tag without criteria", func(p map[string]any) {
			weeklyTag(p)
			delete(tags(p)[1].(map[string]any), "criteria")
		}, "criteria"},
		{"duplicate priority", func(p map[string]any) { weeklyTag(p); tags(p)[1].(map[string]any)["taggingPriority"] = 99 }, "priority 99"},
		{"untagged retention rule", func(p map[string]any) {
			weeklyTag(p)
			trigger(p)["taggingCriteria"] = tags(p)[:1]
		}, "not named by any tagging criterion"},
		{"no lifecycle", func(p map[string]any) { retentionRule(p)["lifecycles"] = []any{} }, "lifecycles"},
		{"copy to vault", func(p map[string]any) {
			lifecycle(p)["targetDataStoreCopySettings"] = []any{map[string]any{"dataStore": map[string]any{"dataStoreType": "VaultStore"}}}
		}, "targetDataStoreCopySettings"},
		{"relative delete", func(p map[string]any) {
			lifecycle(p)["deleteAfter"].(map[string]any)["objectType"] = "RelativeDeleteOption"
		}, "deleteAfter.objectType"},
		{"no deleteAfter", func(p map[string]any) { delete(lifecycle(p), "deleteAfter") }, "deleteAfter"},
		{"not a duration", setDuration("7 days"), "deleteAfter.duration"},
		{"empty duration", setDuration(""), "deleteAfter.duration"},
		{"zero duration", setDuration("P0D"), "shorter than one day"},
		{"two years", setDuration("P2Y"), "longer than one year"},
		{"400 days", setDuration("P400D"), "longer than one year"},
		{"too many snapshots", func(p map[string]any) { setInterval("R/2021-05-20T22:00:00+00:00/PT1H")(p); setDuration("P30D")(p) }, "at most 450"},
		{"source in vault store", func(p map[string]any) {
			lifecycle(p)["sourceDataStore"].(map[string]any)["dataStoreType"] = "ArchiveStore"
		}, "sourceDataStore.dataStoreType"},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := decodePolicy(t, tc.mutate)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			err = ValidatePolicy(p)
			if err == nil {
				t.Fatal("accepted")
			}
			if errs.KindOf(err) != errs.Invalid {
				t.Fatalf("kind %v, want Invalid: %v", errs.KindOf(err), err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("message %q does not name %q", err.Error(), tc.want)
			}
		})
	}
}

// TestPolicyCountsEveryRetentionRule: the 450-snapshot limit counts the
// backups every retention rule keeps, not only the default rule's.
func TestPolicyCountsEveryRetentionRule(t *testing.T) {
	withDaily := func(interval, keepDefault, keepDaily string) func(map[string]any) {
		return func(p map[string]any) {
			setInterval("R/2021-05-20T22:00:00+00:00/" + interval)(p)
			lifecycle(p)["deleteAfter"].(map[string]any)["duration"] = keepDefault
			trigger(p)["taggingCriteria"] = append(tags(p), map[string]any{"isDefault": false, "taggingPriority": 20,
				"tagInfo":  map[string]any{"tagName": "Daily"},
				"criteria": []any{map[string]any{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": []any{"FirstOfDay"}}}})
			p["policyRules"] = append(rules(p), map[string]any{"objectType": "AzureRetentionRule", "name": "Daily", "isDefault": false,
				"lifecycles": []any{map[string]any{"sourceDataStore": map[string]any{"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
					"deleteAfter": map[string]any{"objectType": "AbsoluteDeleteOption", "duration": keepDaily}, "targetDataStoreCopySettings": []any{}}}})
		}
	}
	for _, c := range []struct {
		name                             string
		interval, keepDefault, keepDaily string
		ok                               bool
	}{
		{"hourly for a week, daily for a month", "PT1H", "P7D", "P30D", true},
		{"hourly for a week, daily for a year", "PT1H", "P7D", "P365D", false}, // 162 + 365 > 450
		{"every 4 hours for a week, daily for a year", "PT4H", "P7D", "P365D", true},
		{"hourly for 18 days, daily for 30", "PT1H", "P18D", "P30D", true},
		{"hourly for 19 days alone is too many", "PT1H", "P19D", "P20D", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := decodePolicy(t, withDaily(c.interval, c.keepDefault, c.keepDaily))
			if err != nil {
				t.Fatal(err)
			}
			err = ValidatePolicy(p)
			if c.ok && err != nil || !c.ok && (err == nil || !strings.Contains(err.Error(), "450")) {
				t.Fatalf("ValidatePolicy = %v, want ok=%v", err, c.ok)
			}
		})
	}
}
