package backup

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
)

// FuzzPolicySchedule validates policies with fuzzed repeating intervals,
// time zones, retention durations and tagging criteria. ValidatePolicy
// never panics and refuses with a 400; on a policy it accepts, NextSlot
// returns a time after its input (in bounded time) and RetentionOf an
// expiry after the backup's time.
func FuzzPolicySchedule(f *testing.F) {
	for _, s := range []struct {
		interval, zone, keep, tagKeep, criterion string
	}{
		{"R/2021-05-20T22:00:00+00:00/PT4H", "UTC", "P7D", "P30D", "FirstOfDay"},
		{"R/2026-03-01T02:00:00-05:00/PT4H", "America/New_York", "P7D", "P12W", "FirstOfWeek"},
		{"R/2024-01-01T09:00:00+05:30/P1D", "", "P1Y", "P6M", "firstofday"},
		{"R/2026-03-01T22:00:00-05:00/p1d", "Europe/Berlin", "P0.5Y", "P1M", "FirstOfWeek"},
		{"R/2021-05-20T22:00Z/PT1H", "Australia/Lord_Howe", "P18D", "PT48H", "FirstOfDay"},
		{"R/2021-05-20T22:00:00.123456789+14:00/PT12H", "Pacific/Kiritimati", "P1DT12H", "P364D", "FirstOfDay"},
		{"R/0001-01-01T00:00:00+00:00/PT1H", "", "P1D", "P1D", "FirstOfDay"},
		{"R/9999-12-31T23:59:59-23:59/PT8H", "Asia/Kathmandu", "P2D", "P3D", "FirstOfWeek"},
		{"R//PT4H", "UTC", "P-7D", "PT0S", "LastOfDay"},
		{"R/2021-05-20T22:00:00+00:00/PT4H/x", "Not/AZone", "P", "7D", ""},
		{"2021-05-20T22:00:00+00:00/PT4H", "local", "P1.5W", "P1,5D", "FirstOfDay"},
	} {
		f.Add(s.interval, s.zone, s.keep, s.tagKeep, s.criterion, int64(1767225600), int64(3600))
	}
	f.Fuzz(func(t *testing.T, interval, zone, keep, tagKeep, criterion string, afterUnix, gap int64) {
		raw := policyJSON(interval, zone, keep, tagKeep, criterion)
		var props PolicyProperties
		if err := json.Unmarshal(raw, &props); err != nil {
			t.Fatalf("policy JSON: %v", err)
		}
		if err := ValidatePolicy(&props); err != nil {
			if errs.KindOf(err) != errs.Invalid {
				t.Fatalf("refused with %v (kind %v), not a 400", err, errs.KindOf(err))
			}
			return
		}
		p := Policy{ID: "/p", Properties: props}
		// Schedules run on the clock of this century, give or take.
		after := time.Unix(946684800+mod(afterUnix, 150*365*86400), mod(afterUnix, 1e9)).UTC()
		var slot time.Time
		done := make(chan struct{})
		go func() {
			defer close(done)
			slot = p.NextSlot(after)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("NextSlot(%s) of %q in %q did not return", after, interval, zone)
		}
		if !slot.After(after) {
			t.Fatalf("NextSlot(%s) of %q in %q = %s, not after", after, interval, zone, slot)
		}
		if again := p.NextSlot(slot); !again.After(slot) {
			t.Fatalf("NextSlot(%s) of %q in %q = %s, not after", slot, interval, zone, again)
		}
		previous := slot.Add(-time.Duration(mod(gap, 60*86400)) * time.Second)
		if gap == 0 {
			previous = time.Time{}
		}
		r, err := p.RetentionOf(slot, previous)
		if err != nil {
			t.Fatalf("RetentionOf(%s) of an accepted policy: %v", slot, err)
		}
		if !r.Expires.After(slot) {
			t.Fatalf("keep %q / %q: a backup at %s expires at %s", keep, tagKeep, slot, r.Expires)
		}
		if r.Expires.Sub(slot) > (maxRetentionDays+2)*24*time.Hour {
			t.Fatalf("keep %q / %q: a backup at %s is kept until %s, past a year", keep, tagKeep, slot, r.Expires)
		}
	})
}

func mod(v, m int64) int64 {
	r := v % m
	if r < 0 {
		r += m
	}
	return r
}

// policyJSON is the REST how-to's policy with a second, criterion-tagged
// retention rule, its fields taken from the fuzzer.
func policyJSON(interval, zone, keep, tagKeep, criterion string) []byte {
	lifecycle := func(d string) []any {
		return []any{map[string]any{
			"sourceDataStore": map[string]any{"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
			"deleteAfter":     map[string]any{"objectType": "AbsoluteDeleteOption", "duration": d},
		}}
	}
	schedule := map[string]any{"repeatingTimeIntervals": []any{interval}}
	if zone != "" {
		schedule["timeZone"] = zone
	}
	p := map[string]any{
		"objectType":      "BackupPolicy",
		"datasourceTypes": []any{"Microsoft.Compute/disks"},
		"policyRules": []any{
			map[string]any{"objectType": "AzureBackupRule", "name": "BackupHourly",
				"backupParameters": map[string]any{"objectType": "AzureBackupParams", "backupType": "Incremental"},
				"dataStore":        map[string]any{"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
				"trigger": map[string]any{"objectType": "ScheduleBasedTriggerContext", "schedule": schedule,
					"taggingCriteria": []any{
						map[string]any{"isDefault": true, "taggingPriority": 99, "tagInfo": map[string]any{"tagName": "Default"}},
						map[string]any{"isDefault": false, "taggingPriority": 10, "tagInfo": map[string]any{"tagName": "Tagged"},
							"criteria": []any{map[string]any{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": []any{criterion}}}},
					}}},
			map[string]any{"objectType": "AzureRetentionRule", "name": "Default", "isDefault": true, "lifecycles": lifecycle(keep)},
			map[string]any{"objectType": "AzureRetentionRule", "name": "Tagged", "isDefault": false, "lifecycles": lifecycle(tagKeep)},
		},
	}
	raw, _ := json.Marshal(p)
	return raw
}
