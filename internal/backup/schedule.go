package backup

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	// A policy's timeZone must name the same zone, with the same rules, on
	// every node that may run its schedule, whatever the host has installed.
	_ "time/tzdata"

	"github.com/sosodev/duration"
)

// schedule is a validated repeating interval in its zone.
type schedule struct {
	start  time.Time
	period time.Duration // one of diskIntervals: it divides a day
	loc    *time.Location
}

// backupRule returns the policy's AzureBackupRule.
func (p Policy) backupRule() (*PolicyRule, error) {
	for i := range p.Properties.PolicyRules {
		r := &p.Properties.PolicyRules[i]
		if strings.EqualFold(r.ObjectType, "AzureBackupRule") {
			return r, nil
		}
	}
	return nil, fmt.Errorf("policy %s has no AzureBackupRule", p.ID)
}

// schedule reads the backup rule's repeating interval. The interval's start
// carries only a UTC offset; schedule.timeZone, when set, names the zone
// whose wall clock the slots follow. Without it the start's offset is the
// zone, which has no daylight saving time.
func (p Policy) schedule() (schedule, error) {
	rule, err := p.backupRule()
	if err != nil {
		return schedule{}, err
	}
	if rule.Trigger == nil || rule.Trigger.Schedule == nil || len(rule.Trigger.Schedule.RepeatingTimeIntervals) != 1 {
		return schedule{}, fmt.Errorf("policy %s has no repeating interval", p.ID)
	}
	parts := strings.Split(rule.Trigger.Schedule.RepeatingTimeIntervals[0], "/")
	if len(parts) != 3 || parts[0] != "R" {
		return schedule{}, fmt.Errorf("policy %s: bad repeating interval %q", p.ID, rule.Trigger.Schedule.RepeatingTimeIntervals[0])
	}
	start, ok := parseStart(parts[1])
	if !ok {
		return schedule{}, fmt.Errorf("policy %s: bad start %q", p.ID, parts[1])
	}
	period, ok := diskIntervals[strings.ToUpper(parts[2])]
	if !ok {
		return schedule{}, fmt.Errorf("policy %s: unsupported period %q", p.ID, parts[2])
	}
	loc := start.Location()
	switch tz := rule.Trigger.Schedule.TimeZone; {
	case strings.EqualFold(tz, "UTC"):
		loc = time.UTC
	case tz != "":
		if loc, err = time.LoadLocation(tz); err != nil {
			return schedule{}, fmt.Errorf("policy %s: time zone %q: %w", p.ID, tz, err)
		}
	}
	return schedule{start: start, period: period, loc: loc}, nil
}

func parseStart(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// NextSlot returns the first scheduled backup time strictly after after; the
// zero time if the policy has no valid schedule (ValidatePolicy refuses such
// a policy).
//
// Slots are start + k*period on the wall clock of the schedule's zone: each
// local day has the slots at the start's time of day plus multiples of the
// period, so a daily 22:00 backup stays at 22:00 across a daylight saving
// change. A slot in the hour skipped in spring runs at the time the clock
// jumps to; an hour repeated in autumn runs once.
func (p Policy) NextSlot(after time.Time) time.Time {
	s, err := p.schedule()
	if err != nil {
		return time.Time{}
	}
	if after.Before(s.start) {
		return s.start
	}
	anchor := s.start.In(s.loc)
	timeOfDay := time.Duration(anchor.Hour())*time.Hour + time.Duration(anchor.Minute())*time.Minute +
		time.Duration(anchor.Second())*time.Second + time.Duration(anchor.Nanosecond())
	first := timeOfDay % s.period
	y, m, d := after.In(s.loc).Date()
	// A day's slots all fall on or after its local midnight, so those of the
	// day of after and the next are enough; a third covers the day a
	// transition eats a slot.
	for day := 0; day < 3; day++ {
		for off := first; off < 24*time.Hour; off += s.period {
			t := wallClock(y, m, d+day, off, s.loc)
			if t.After(after) {
				return t
			}
		}
	}
	return time.Time{} // unreachable: the next day always has a slot
}

// wallClock is the instant the clock of loc reads off past midnight on the
// given day. A reading the clock skips (spring forward) is the instant the
// clock jumps past it: time.Date would read it with the offset after the
// jump, an hour early, before the slot it replaces.
func wallClock(y int, m time.Month, d int, off time.Duration, loc *time.Location) time.Time {
	hour, minute := int(off/time.Hour), int(off%time.Hour/time.Minute)
	sec, nsec := int(off%time.Minute/time.Second), int(off%time.Second)
	t := time.Date(y, m, d, hour, minute, sec, nsec, loc)
	if t.Hour() == hour && t.Minute() == minute {
		return t
	}
	_, before := t.Zone() // t fell before the jump: its offset is the old one
	return time.Date(y, m, d, hour, minute, sec, nsec, time.UTC).Add(-time.Duration(before) * time.Second)
}

// Retention is what a backup is kept under: the retention rule (tag) its
// tagging criteria chose, and when it expires.
type Retention struct {
	Tag     string
	Expires time.Time
}

// RetentionOf returns the retention of a backup taken at taken, when the
// previous successful backup of the same instance was taken at previous (the
// zero time if there was none). The tagging criteria are tried by ascending
// taggingPriority and the first that matches wins: FirstOfDay matches the
// first backup of a day, FirstOfWeek the first of a week (weeks start on
// Sunday, the first DayOfWeek of the API), both on the wall clock of the
// schedule's zone; the default criterion matches every backup. The backup
// expires at taken plus the chosen rule's deleteAfter duration.
func (p Policy) RetentionOf(taken, previous time.Time) (Retention, error) {
	rule, err := p.backupRule()
	if err != nil {
		return Retention{}, err
	}
	s, err := p.schedule()
	if err != nil {
		return Retention{}, err
	}
	criteria := append([]TaggingCriteria(nil), rule.Trigger.TaggingCriteria...)
	sort.SliceStable(criteria, func(i, j int) bool { return priority(criteria[i]) < priority(criteria[j]) })
	for _, c := range criteria {
		if c.TagInfo == nil || !matches(c, taken.In(s.loc), previous) {
			continue
		}
		keep, err := p.retentionRule(c.TagInfo.TagName)
		if err != nil {
			return Retention{}, err
		}
		expires, err := addISODuration(taken, keep.Lifecycles[0].DeleteAfter.Duration)
		if err != nil {
			return Retention{}, fmt.Errorf("policy %s: retention rule %s: %w", p.ID, keep.Name, err)
		}
		return Retention{Tag: keep.Name, Expires: expires}, nil
	}
	return Retention{}, fmt.Errorf("policy %s: no tagging criterion matches", p.ID)
}

func priority(c TaggingCriteria) int64 {
	if c.TaggingPriority == nil {
		return math.MaxInt64
	}
	return *c.TaggingPriority
}

// matches reports whether the criterion selects a backup taken at taken
// (in the schedule's zone) after one at previous.
func matches(c TaggingCriteria, taken, previous time.Time) bool {
	if c.IsDefault != nil && *c.IsDefault {
		return true
	}
	if len(c.Criteria) != 1 || len(c.Criteria[0].AbsoluteCriteria) != 1 {
		return false
	}
	if previous.IsZero() {
		return true
	}
	prev := previous.In(taken.Location())
	switch strings.ToLower(c.Criteria[0].AbsoluteCriteria[0]) {
	case "firstofday":
		return dayOf(prev) != dayOf(taken)
	case "firstofweek":
		return dayOf(prev).AddDate(0, 0, -int(prev.Weekday())) != dayOf(taken).AddDate(0, 0, -int(taken.Weekday()))
	}
	return false
}

// dayOf is the local calendar date of t, as a comparable value.
func dayOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func (p Policy) retentionRule(name string) (*PolicyRule, error) {
	for i := range p.Properties.PolicyRules {
		r := &p.Properties.PolicyRules[i]
		if strings.EqualFold(r.ObjectType, "AzureRetentionRule") && strings.EqualFold(r.Name, name) &&
			len(r.Lifecycles) == 1 && r.Lifecycles[0].DeleteAfter != nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("policy %s has no retention rule %q", p.ID, name)
}

// addISODuration adds an ISO 8601 duration to t: years, months, weeks and
// days as calendar units in UTC (so P1M from 31 January is 3 March), the
// rest as elapsed time.
func addISODuration(t time.Time, iso string) (time.Time, error) {
	d, err := duration.Parse(iso)
	if err != nil {
		return time.Time{}, err
	}
	if d.Negative {
		return time.Time{}, fmt.Errorf("negative duration %q", iso)
	}
	years, yearFrac := math.Modf(d.Years)
	months, monthFrac := math.Modf(d.Months)
	days, dayFrac := math.Modf(d.Weeks*7 + d.Days + yearFrac*365 + monthFrac*30)
	rest := time.Duration((dayFrac*24 + d.Hours) * float64(time.Hour))
	rest += time.Duration(d.Minutes*float64(time.Minute)) + time.Duration(d.Seconds*float64(time.Second))
	return t.UTC().AddDate(int(years), int(months), int(days)).Add(rest), nil
}
