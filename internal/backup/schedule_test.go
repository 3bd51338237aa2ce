package backup

import (
	"testing"
	"time"
)

// policyWith returns a validated policy whose schedule is interval in zone
// (no timeZone when zone is ""), after mutate.
func policyWith(t *testing.T, interval, zone string, mutate ...func(map[string]any)) Policy {
	t.Helper()
	p, err := decodePolicy(t, func(m map[string]any) {
		setInterval(interval)(m)
		sched := trigger(m)["schedule"].(map[string]any)
		if zone == "" {
			delete(sched, "timeZone")
		} else {
			sched["timeZone"] = zone
		}
		for _, f := range mutate {
			f(m)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidatePolicy(p); err != nil {
		t.Fatalf("policy refused: %v", err)
	}
	return Policy{ID: "/p", Properties: *p}
}

func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNextSlot(t *testing.T) {
	cases := []struct {
		name, interval, zone string
		after, want          string
	}{
		// A start offset without a time zone is a fixed zone: slots are
		// start + k*period in elapsed time.
		{"before the start", "R/2021-05-20T22:00:00+00:00/PT4H", "", "2021-05-01T00:00:00Z", "2021-05-20T22:00:00Z"},
		{"at the start", "R/2021-05-20T22:00:00+00:00/PT4H", "", "2021-05-20T22:00:00Z", "2021-05-21T02:00:00Z"},
		{"between slots", "R/2021-05-20T22:00:00+00:00/PT4H", "", "2026-03-08T12:30:00Z", "2026-03-08T14:00:00Z"},
		{"on a slot", "R/2021-05-20T22:00:00+00:00/PT4H", "", "2026-03-08T14:00:00Z", "2026-03-08T18:00:00Z"},
		{"over midnight", "R/2021-05-20T22:00:00+00:00/PT4H", "", "2026-03-08T22:30:00Z", "2026-03-09T02:00:00Z"},
		{"fixed offset, daily", "R/2024-01-01T09:00:00+05:30/P1D", "", "2024-07-01T03:30:00Z", "2024-07-02T03:30:00Z"},
		{"fixed -05:00 keeps elapsed time in summer", "R/2026-01-05T22:00:00-05:00/P1D", "", "2026-07-01T00:00:00Z", "2026-07-01T03:00:00Z"},
		{"UTC zone reads the start in UTC", "R/2021-05-20T22:00:00+02:00/PT12H", "UTC", "2026-01-01T09:00:00Z", "2026-01-01T20:00:00Z"},

		// A named zone: slots keep their wall-clock time across DST.
		{"New York daily, winter", "R/2026-03-01T22:00:00-05:00/P1D", "America/New_York", "2026-03-07T12:00:00-05:00", "2026-03-07T22:00:00-05:00"},
		{"New York daily, over spring forward", "R/2026-03-01T22:00:00-05:00/P1D", "America/New_York", "2026-03-07T22:00:00-05:00", "2026-03-08T22:00:00-04:00"},
		{"New York daily, over fall back", "R/2026-03-01T22:00:00-05:00/P1D", "America/New_York", "2026-10-31T22:00:00-04:00", "2026-11-01T22:00:00-05:00"},
		{"New York zone read from a UTC start", "R/2021-05-20T22:00:00+00:00/P1D", "America/New_York", "2026-01-10T00:00:00Z", "2026-01-10T18:00:00-05:00"},
		{"New York 4-hourly, the skipped 02:00 runs at 03:00", "R/2026-03-01T02:00:00-05:00/PT4H", "America/New_York", "2026-03-07T22:00:00-05:00", "2026-03-08T03:00:00-04:00"},
		{"New York 4-hourly, then back on the wall clock", "R/2026-03-01T02:00:00-05:00/PT4H", "America/New_York", "2026-03-08T03:00:00-04:00", "2026-03-08T06:00:00-04:00"},
		{"New York 4-hourly, fall back", "R/2026-03-01T02:00:00-05:00/PT4H", "America/New_York", "2026-11-01T00:30:00-04:00", "2026-11-01T02:00:00-05:00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := policyWith(t, c.interval, c.zone)
			got := p.NextSlot(at(t, c.after))
			if want := at(t, c.want); !got.Equal(want) {
				t.Fatalf("NextSlot(%s) = %s, want %s", c.after, got.UTC(), want.UTC())
			}
		})
	}
}

// TestNextSlotSequence: walking the slots of a named zone for a year gives
// every day its slots at the same wall-clock times, strictly increasing.
func TestNextSlotSequence(t *testing.T) {
	p := policyWith(t, "R/2026-01-01T02:00:00-05:00/PT4H", "America/New_York")
	ny, _ := time.LoadLocation("America/New_York")
	prev := at(t, "2026-01-01T00:00:00-05:00")
	perDay := map[string]int{}
	for i := 0; i < 6*365; i++ {
		next := p.NextSlot(prev)
		if !next.After(prev) {
			t.Fatalf("NextSlot(%s) = %s, not after", prev, next)
		}
		local := next.In(ny)
		if h := local.Hour(); local.Minute() != 0 || (h%4 != 2 && !(h == 3 && local.Month() == time.March)) {
			t.Fatalf("slot %s is off the wall-clock schedule", local)
		}
		perDay[local.Format("2006-01-02")]++
		prev = next
	}
	for day, n := range perDay {
		if n != 6 && day != "2026-12-31" {
			t.Fatalf("%s has %d slots, want 6", day, n)
		}
	}
}

func TestNextSlotInvalidPolicy(t *testing.T) {
	if got := (Policy{}).NextSlot(time.Now()); !got.IsZero() {
		t.Fatalf("a policy without a schedule has slot %s", got)
	}
}

// tagged adds a tag with the criterion, priority and retention duration.
func tagged(name, criterion string, priority int, duration string) func(map[string]any) {
	return func(p map[string]any) {
		trigger(p)["taggingCriteria"] = append(tags(p), map[string]any{
			"isDefault": false, "taggingPriority": priority, "tagInfo": map[string]any{"tagName": name},
			"criteria": []any{map[string]any{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": []any{criterion}}},
		})
		p["policyRules"] = append(rules(p), map[string]any{
			"objectType": "AzureRetentionRule", "name": name, "isDefault": false,
			"lifecycles": []any{map[string]any{
				"sourceDataStore": map[string]any{"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
				"deleteAfter":     map[string]any{"objectType": "AbsoluteDeleteOption", "duration": duration},
			}},
		})
	}
}

func defaultPriority(n int) func(map[string]any) {
	return func(p map[string]any) { tags(p)[0].(map[string]any)["taggingPriority"] = n }
}

func TestRetentionOf(t *testing.T) {
	daily := tagged("Daily", "FirstOfDay", 20, "P30D")
	weekly := tagged("Weekly", "FirstOfWeek", 10, "P12W")
	const every4h = "R/2021-05-20T22:00:00+00:00/PT4H"
	cases := []struct {
		name             string
		zone             string
		mutate           []func(map[string]any)
		taken, previous  string // previous "" is no earlier backup
		wantTag, expires string
	}{
		{"only the default", "", nil, "2026-03-04T10:00:00Z", "2026-03-04T06:00:00Z", "Default", "2026-03-11T10:00:00Z"},
		{"first backup ever is first of its week", "", []func(map[string]any){daily, weekly}, "2026-03-04T10:00:00Z", "", "Weekly", "2026-05-27T10:00:00Z"},
		{"same day: default", "", []func(map[string]any){daily, weekly}, "2026-03-04T10:00:00Z", "2026-03-04T06:00:00Z", "Default", "2026-03-11T10:00:00Z"},
		{"new day, same week: first of day", "", []func(map[string]any){daily, weekly}, "2026-03-04T02:00:00Z", "2026-03-03T22:00:00Z", "Daily", "2026-04-03T02:00:00Z"},
		{"weeks start on Sunday", "", []func(map[string]any){daily, weekly}, "2026-03-08T02:00:00Z", "2026-03-07T22:00:00Z", "Weekly", "2026-05-31T02:00:00Z"},
		{"Monday is not a new week", "", []func(map[string]any){daily, weekly}, "2026-03-09T02:00:00Z", "2026-03-08T22:00:00Z", "Daily", "2026-04-08T02:00:00Z"},
		{"the lowest priority wins, even the default", "", []func(map[string]any){daily, weekly, defaultPriority(1)}, "2026-03-08T02:00:00Z", "", "Default", "2026-03-15T02:00:00Z"},
		{"days are the zone's days", "America/New_York", []func(map[string]any){daily}, "2026-03-10T03:00:00Z", "2026-03-09T12:00:00Z", "Default", "2026-03-17T03:00:00Z"},
		{"the same instants in UTC are two days", "UTC", []func(map[string]any){daily}, "2026-03-10T03:00:00Z", "2026-03-09T12:00:00Z", "Daily", "2026-04-09T03:00:00Z"},
		{"months are calendar months", "", []func(map[string]any){tagged("Monthly", "FirstOfDay", 5, "P1M")}, "2026-01-31T12:00:00Z", "", "Monthly", "2026-03-03T12:00:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := policyWith(t, every4h, c.zone, c.mutate...)
			var previous time.Time
			if c.previous != "" {
				previous = at(t, c.previous)
			}
			got, err := p.RetentionOf(at(t, c.taken), previous)
			if err != nil {
				t.Fatal(err)
			}
			if got.Tag != c.wantTag || !got.Expires.Equal(at(t, c.expires)) {
				t.Fatalf("RetentionOf = %s until %s, want %s until %s", got.Tag, got.Expires, c.wantTag, c.expires)
			}
		})
	}
}
