package backup

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/sosodev/duration"
)

// Policy is a stored backup policy, in the document ARM serves.
type Policy struct {
	ID         string           `json:"id"`
	Name       string           `json:"name"`
	Type       string           `json:"type"`
	Properties PolicyProperties `json:"properties"`
}

// PolicyProperties is a BackupPolicy.
type PolicyProperties struct {
	PolicyRules     []PolicyRule `json:"policyRules"`
	DatasourceTypes []string     `json:"datasourceTypes"`
	ObjectType      string       `json:"objectType"`
}

// PolicyRule is an AzureBackupRule or an AzureRetentionRule.
type PolicyRule struct {
	// AzureBackupRule
	BackupParameters *BackupParameters `json:"backupParameters,omitempty"`
	Trigger          *Trigger          `json:"trigger,omitempty"`
	DataStore        *DataStoreInfo    `json:"dataStore,omitempty"`
	// AzureRetentionRule
	IsDefault  *bool       `json:"isDefault,omitempty"`
	Lifecycles []Lifecycle `json:"lifecycles,omitempty"`

	Name       string `json:"name"`
	ObjectType string `json:"objectType"`
}

// BackupParameters are AzureBackupParams.
type BackupParameters struct {
	BackupType string `json:"backupType"`
	ObjectType string `json:"objectType"`
}

// DataStoreInfo names a data store. json matches field names without
// regard to case, so "datastoreType" (as some docs spell it) is accepted.
type DataStoreInfo struct {
	DataStoreType string `json:"dataStoreType"`
	ObjectType    string `json:"objectType"`
}

// Trigger is a ScheduleBasedTriggerContext.
type Trigger struct {
	Schedule        *Schedule         `json:"schedule,omitempty"`
	TaggingCriteria []TaggingCriteria `json:"taggingCriteria"`
	ObjectType      string            `json:"objectType"`
}

// Schedule holds one ISO 8601 repeating interval.
type Schedule struct {
	RepeatingTimeIntervals []string `json:"repeatingTimeIntervals"`
	TimeZone               string   `json:"timeZone,omitempty"`
}

// TaggingCriteria decides which retention tag a backup gets.
type TaggingCriteria struct {
	Criteria        []BackupCriteria `json:"criteria,omitempty"`
	IsDefault       *bool            `json:"isDefault"`
	TaggingPriority *int64           `json:"taggingPriority"`
	TagInfo         *TagInfo         `json:"tagInfo"`
}

// BackupCriteria is a ScheduleBasedBackupCriteria.
type BackupCriteria struct {
	AbsoluteCriteria []string `json:"absoluteCriteria,omitempty"`
	DaysOfMonth      []any    `json:"daysOfMonth,omitempty"`
	DaysOfTheWeek    []string `json:"daysOfTheWeek,omitempty"`
	MonthsOfYear     []string `json:"monthsOfYear,omitempty"`
	ScheduleTimes    []string `json:"scheduleTimes,omitempty"`
	WeeksOfTheMonth  []string `json:"weeksOfTheMonth,omitempty"`
	ObjectType       string   `json:"objectType"`
}

// TagInfo names a retention tag; the service fills ID as "<tagName>_".
type TagInfo struct {
	ETag    string `json:"eTag,omitempty"`
	ID      string `json:"id,omitempty"`
	TagName string `json:"tagName"`
}

// Lifecycle says how long backups in a data store are kept.
type Lifecycle struct {
	DeleteAfter                 *DeleteOption     `json:"deleteAfter"`
	SourceDataStore             *DataStoreInfo    `json:"sourceDataStore"`
	TargetDataStoreCopySettings []json.RawMessage `json:"targetDataStoreCopySettings"`
}

// DeleteOption is an AbsoluteDeleteOption.
type DeleteOption struct {
	Duration   string `json:"duration"`
	ObjectType string `json:"objectType"`
}

// Disk backup policy limits.
const (
	maxRetentionDays  = 365 // "up to one year" for the operational store
	maxRetainedPoints = 450 // the service keeps at most 450 scheduled snapshots a disk
)

// diskIntervals are the backup frequencies a disk policy may use.
var diskIntervals = map[string]time.Duration{
	"PT1H": time.Hour, "PT2H": 2 * time.Hour, "PT4H": 4 * time.Hour, "PT6H": 6 * time.Hour,
	"PT8H": 8 * time.Hour, "PT12H": 12 * time.Hour, "P1D": 24 * time.Hour,
}

func policyError(target, format string, args ...any) *errs.Error {
	return errs.E(errs.Invalid, "UserErrorInvalidPolicy", "Invalid backup policy: "+target+": "+format, args...).WithTarget(target)
}

// ValidatePolicy checks a disk backup policy as the service does and
// normalizes it in place (canonical casing, tagInfo.id filled). Every
// violation is a 400 whose message and target name the field.
func ValidatePolicy(p *PolicyProperties) error {
	if t, ok := oneOfFold(p.ObjectType, "BackupPolicy"); ok {
		p.ObjectType = t
	} else {
		return policyError("properties.objectType", "must be 'BackupPolicy', not '%s'", p.ObjectType)
	}
	if len(p.DatasourceTypes) != 1 {
		return policyError("properties.datasourceTypes", "must list exactly one datasource type, 'Microsoft.Compute/disks' (got %d)", len(p.DatasourceTypes))
	}
	if !strings.EqualFold(p.DatasourceTypes[0], DiskType) {
		return errs.E(errs.Invalid, "UserErrorUnsupportedDatasourceType",
			"Invalid backup policy: properties.datasourceTypes: '%s' is not supported; this service protects 'Microsoft.Compute/disks'.", p.DatasourceTypes[0]).
			WithTarget("properties.datasourceTypes")
	}
	p.DatasourceTypes[0] = DiskType
	if len(p.PolicyRules) == 0 {
		return policyError("properties.policyRules", "must hold one AzureBackupRule and at least one AzureRetentionRule")
	}
	var backup *PolicyRule
	retention := map[string]*PolicyRule{}
	var defaultRetention *PolicyRule
	names := map[string]bool{}
	for i := range p.PolicyRules {
		rule := &p.PolicyRules[i]
		at := fmt.Sprintf("properties.policyRules[%d]", i)
		if strings.TrimSpace(rule.Name) == "" {
			return policyError(at+".name", "every rule needs a name")
		}
		if names[strings.ToLower(rule.Name)] {
			return policyError(at+".name", "the rule name '%s' is used twice", rule.Name)
		}
		names[strings.ToLower(rule.Name)] = true
		switch {
		case strings.EqualFold(rule.ObjectType, "AzureBackupRule"):
			rule.ObjectType = "AzureBackupRule"
			if backup != nil {
				return policyError(at, "a disk policy has exactly one AzureBackupRule; '%s' is a second one", rule.Name)
			}
			backup = rule
			if err := validateBackupRule(rule, at); err != nil {
				return err
			}
		case strings.EqualFold(rule.ObjectType, "AzureRetentionRule"):
			rule.ObjectType = "AzureRetentionRule"
			if err := validateRetentionRule(rule, at); err != nil {
				return err
			}
			retention[strings.ToLower(rule.Name)] = rule
			if rule.IsDefault != nil && *rule.IsDefault {
				if defaultRetention != nil {
					return policyError(at+".isDefault", "only one retention rule may be the default; '%s' and '%s' both are", defaultRetention.Name, rule.Name)
				}
				defaultRetention = rule
			}
		default:
			return policyError(at+".objectType", "must be 'AzureBackupRule' or 'AzureRetentionRule', not '%s'", rule.ObjectType)
		}
	}
	if backup == nil {
		return policyError("properties.policyRules", "a disk policy needs one AzureBackupRule")
	}
	if defaultRetention == nil {
		return policyError("properties.policyRules", "a disk policy needs a default AzureRetentionRule (isDefault: true)")
	}
	// Tags link the backup rule to retention rules by name.
	tagged := map[string]bool{}
	defaults := 0
	priorities := map[int64]string{}
	for i := range backup.Trigger.TaggingCriteria {
		tc := &backup.Trigger.TaggingCriteria[i]
		at := fmt.Sprintf("properties.policyRules[backup].trigger.taggingCriteria[%d]", i)
		if tc.TagInfo == nil || strings.TrimSpace(tc.TagInfo.TagName) == "" {
			return policyError(at+".tagInfo.tagName", "every tagging criterion needs tagInfo.tagName")
		}
		if tc.IsDefault == nil {
			return policyError(at+".isDefault", "is required")
		}
		if tc.TaggingPriority == nil {
			return policyError(at+".taggingPriority", "is required")
		}
		name := tc.TagInfo.TagName
		rule, ok := retention[strings.ToLower(name)]
		if !ok {
			return policyError(at+".tagInfo.tagName", "the tag '%s' has no AzureRetentionRule of the same name", name)
		}
		if tagged[strings.ToLower(name)] {
			return policyError(at+".tagInfo.tagName", "the tag '%s' is used twice", name)
		}
		tagged[strings.ToLower(name)] = true
		if other, dup := priorities[*tc.TaggingPriority]; dup {
			return policyError(at+".taggingPriority", "priority %d is used by both '%s' and '%s'", *tc.TaggingPriority, other, name)
		}
		priorities[*tc.TaggingPriority] = name
		tc.TagInfo.TagName = rule.Name
		tc.TagInfo.ID = rule.Name + "_"
		if *tc.IsDefault {
			defaults++
			if rule != defaultRetention {
				return policyError(at+".tagInfo.tagName", "the default tag must name the default retention rule '%s', not '%s'", defaultRetention.Name, name)
			}
			if len(tc.Criteria) > 0 {
				return policyError(at+".criteria", "the default tag applies to every backup and takes no criteria")
			}
			continue
		}
		if err := validateCriteria(tc.Criteria, at+".criteria"); err != nil {
			return err
		}
	}
	if defaults != 1 {
		return policyError("properties.policyRules[backup].trigger.taggingCriteria", "exactly one tagging criterion must be the default (isDefault: true); %d are", defaults)
	}
	for key, rule := range retention {
		if !tagged[key] {
			return policyError("properties.policyRules", "the retention rule '%s' is not named by any tagging criterion", rule.Name)
		}
	}
	// Retention may not keep more scheduled backups than a disk can hold,
	// counting every rule: each backup is kept under the one tag it gets.
	interval := diskIntervals[scheduleParts(backup.Trigger.Schedule.RepeatingTimeIntervals[0])]
	if points := (Policy{Properties: *p}).retainedAtMost(); points > maxRetainedPoints {
		return policyError("properties.policyRules[retention].lifecycles[0].deleteAfter.duration",
			"keeping backups taken every %s under these retention rules retains up to %d snapshots; a disk keeps at most %d scheduled ones, so shorten the retention or back up less often",
			interval, points, maxRetainedPoints)
	}
	return nil
}

// retainedAtMost is the most scheduled backups the policy keeps at once:
// it takes a backup at every slot for longer than the longest retention
// and counts, at each slot, those not yet expired. Every backup gets one
// tag (RetentionOf), so a daily or weekly rule adds only the backups it
// takes from the default rule and keeps longer.
func (p Policy) retainedAtMost() int {
	var longest time.Duration
	for i := range p.Properties.PolicyRules {
		if r := &p.Properties.PolicyRules[i]; strings.EqualFold(r.ObjectType, "AzureRetentionRule") && len(r.Lifecycles) > 0 {
			longest = max(longest, keepsFor(r))
		}
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(longest + 8*24*time.Hour)
	var expiries []time.Time
	most := 0
	previous := time.Time{}
	for t := p.NextSlot(start); !t.IsZero() && t.Before(end); t = p.NextSlot(t) {
		r, err := p.RetentionOf(t, previous)
		if err != nil {
			return 0
		}
		previous = t
		kept := expiries[:0]
		for _, e := range expiries {
			if e.After(t) {
				kept = append(kept, e)
			}
		}
		expiries = append(kept, r.Expires)
		most = max(most, len(expiries))
	}
	return most
}

// keepsLessThan reports whether moving an instance from old to p shortens
// how long its backups are kept: p's default retention rule, or its
// longest rule, keeps for less than old's.
func (p Policy) keepsLessThan(old Policy) bool {
	dflt, longest := p.retentions()
	oldDefault, oldLongest := old.retentions()
	return dflt < oldDefault || longest < oldLongest
}

// retentions are how long the default retention rule and the longest one
// keep backups.
func (p Policy) retentions() (dflt, longest time.Duration) {
	for i := range p.Properties.PolicyRules {
		r := &p.Properties.PolicyRules[i]
		if !strings.EqualFold(r.ObjectType, "AzureRetentionRule") || len(r.Lifecycles) == 0 {
			continue
		}
		d := keepsFor(r)
		longest = max(longest, d)
		if r.IsDefault != nil && *r.IsDefault {
			dflt = d
		}
	}
	return dflt, longest
}

func validateBackupRule(rule *PolicyRule, at string) error {
	bp := rule.BackupParameters
	if bp == nil {
		return policyError(at+".backupParameters", "is required for an AzureBackupRule")
	}
	if t, ok := oneOfFold(bp.ObjectType, "AzureBackupParams"); ok {
		bp.ObjectType = t
	} else {
		return policyError(at+".backupParameters.objectType", "must be 'AzureBackupParams', not '%s'", bp.ObjectType)
	}
	if t, ok := oneOfFold(bp.BackupType, "Incremental"); ok {
		bp.BackupType = t
	} else {
		return policyError(at+".backupParameters.backupType", "disk backups are 'Incremental', not '%s'", bp.BackupType)
	}
	if err := validateDataStore(rule.DataStore, at+".dataStore"); err != nil {
		return err
	}
	tr := rule.Trigger
	if tr == nil {
		return policyError(at+".trigger", "is required for an AzureBackupRule")
	}
	if t, ok := oneOfFold(tr.ObjectType, "ScheduleBasedTriggerContext"); ok {
		tr.ObjectType = t
	} else {
		return policyError(at+".trigger.objectType", "must be 'ScheduleBasedTriggerContext' for disks, not '%s'", tr.ObjectType)
	}
	if tr.Schedule == nil {
		return policyError(at+".trigger.schedule", "is required")
	}
	if n := len(tr.Schedule.RepeatingTimeIntervals); n != 1 {
		return policyError(at+".trigger.schedule.repeatingTimeIntervals", "must hold exactly one interval, not %d", n)
	}
	norm, err := parseRepeatingInterval(tr.Schedule.RepeatingTimeIntervals[0])
	if err != nil {
		return policyError(at+".trigger.schedule.repeatingTimeIntervals[0]", "%v", err)
	}
	tr.Schedule.RepeatingTimeIntervals[0] = norm
	if tz := tr.Schedule.TimeZone; tz != "" && !strings.EqualFold(tz, "UTC") {
		if _, err := time.LoadLocation(tz); err != nil {
			return policyError(at+".trigger.schedule.timeZone", "'%s' is not a known time zone", tz)
		}
	}
	if len(tr.TaggingCriteria) == 0 {
		return policyError(at+".trigger.taggingCriteria", "needs at least the default tag")
	}
	return nil
}

func validateDataStore(ds *DataStoreInfo, at string) error {
	if ds == nil {
		return policyError(at, "is required")
	}
	if t, ok := oneOfFold(ds.ObjectType, "DataStoreInfoBase"); ok {
		ds.ObjectType = t
	} else {
		return policyError(at+".objectType", "must be 'DataStoreInfoBase', not '%s'", ds.ObjectType)
	}
	if t, ok := oneOfFold(ds.DataStoreType, "OperationalStore"); ok {
		ds.DataStoreType = t
	} else {
		return policyError(at+".dataStoreType", "disk backups live in the 'OperationalStore', not '%s'", ds.DataStoreType)
	}
	return nil
}

// scheduleParts returns the period of a normalized repeating interval.
func scheduleParts(interval string) string { return interval[strings.LastIndex(interval, "/")+1:] }

// parseRepeatingInterval checks R/<start>/<period> and returns it with the
// period in canonical case.
func parseRepeatingInterval(s string) (string, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || parts[0] != "R" {
		return "", fmt.Errorf("'%s' is not an ISO 8601 repeating interval of the form R/<start date-time>/<period>", s)
	}
	start := parts[1]
	if _, ok := parseStart(start); !ok {
		return "", fmt.Errorf("the start '%s' must be a full date-time with a UTC offset, e.g. 2021-05-20T22:00:00+00:00", start)
	}
	period := strings.ToUpper(parts[2])
	if _, ok := diskIntervals[period]; !ok {
		return "", fmt.Errorf("the period '%s' is not one disks support: PT1H, PT2H, PT4H, PT6H, PT8H, PT12H or P1D", parts[2])
	}
	return "R/" + start + "/" + period, nil
}

func validateRetentionRule(rule *PolicyRule, at string) error {
	if rule.IsDefault == nil {
		f := false
		rule.IsDefault = &f
	}
	if len(rule.Lifecycles) != 1 {
		return policyError(at+".lifecycles", "a disk retention rule has exactly one lifecycle, not %d", len(rule.Lifecycles))
	}
	lc := &rule.Lifecycles[0]
	if err := validateDataStore(lc.SourceDataStore, at+".lifecycles[0].sourceDataStore"); err != nil {
		return err
	}
	if len(lc.TargetDataStoreCopySettings) > 0 {
		return policyError(at+".lifecycles[0].targetDataStoreCopySettings", "disk backups stay in the operational store and cannot be copied to another data store")
	}
	lc.TargetDataStoreCopySettings = []json.RawMessage{}
	del := lc.DeleteAfter
	if del == nil {
		return policyError(at+".lifecycles[0].deleteAfter", "is required")
	}
	if t, ok := oneOfFold(del.ObjectType, "AbsoluteDeleteOption"); ok {
		del.ObjectType = t
	} else {
		return policyError(at+".lifecycles[0].deleteAfter.objectType", "must be 'AbsoluteDeleteOption', not '%s'", del.ObjectType)
	}
	d, err := duration.Parse(del.Duration)
	if err != nil || del.Duration == "" {
		return policyError(at+".lifecycles[0].deleteAfter.duration", "'%s' is not an ISO 8601 duration such as P7D", del.Duration)
	}
	days := d.Years*365 + d.Months*30 + d.Weeks*7 + d.Days + d.Hours/24 + d.Minutes/1440 + d.Seconds/86400
	if d.Negative || days < 1 {
		return policyError(at+".lifecycles[0].deleteAfter.duration", "'%s' is shorter than one day", del.Duration)
	}
	if days > maxRetentionDays {
		return policyError(at+".lifecycles[0].deleteAfter.duration", "'%s' is longer than one year, the most disk backups can be kept", del.Duration)
	}
	return nil
}

// keepsFor returns how long a retention rule keeps backups.
func keepsFor(rule *PolicyRule) time.Duration {
	d, err := duration.Parse(rule.Lifecycles[0].DeleteAfter.Duration)
	if err != nil {
		return 0
	}
	days := d.Years*365 + d.Months*30 + d.Weeks*7 + d.Days
	return time.Duration(days*24*float64(time.Hour)) + time.Duration(d.Hours*float64(time.Hour))
}

func validateCriteria(cs []BackupCriteria, at string) error {
	if len(cs) != 1 {
		return policyError(at, "a non-default tag needs exactly one ScheduleBasedBackupCriteria, not %d", len(cs))
	}
	c := &cs[0]
	if t, ok := oneOfFold(c.ObjectType, "ScheduleBasedBackupCriteria"); ok {
		c.ObjectType = t
	} else {
		return policyError(at+"[0].objectType", "must be 'ScheduleBasedBackupCriteria', not '%s'", c.ObjectType)
	}
	if len(c.AbsoluteCriteria) != 1 {
		return policyError(at+"[0].absoluteCriteria", "disk policies tag by exactly one of FirstOfDay or FirstOfWeek")
	}
	v, ok := oneOfFold(c.AbsoluteCriteria[0], "FirstOfDay", "FirstOfWeek")
	if !ok {
		return policyError(at+"[0].absoluteCriteria", "'%s' is not supported for disks: use FirstOfDay or FirstOfWeek", c.AbsoluteCriteria[0])
	}
	c.AbsoluteCriteria[0] = v
	if len(c.DaysOfMonth)+len(c.DaysOfTheWeek)+len(c.MonthsOfYear)+len(c.WeeksOfTheMonth)+len(c.ScheduleTimes) > 0 {
		return policyError(at+"[0]", "disk policies support only absoluteCriteria, not days, weeks, months or times")
	}
	return nil
}

func oneOfFold(v string, set ...string) (string, bool) {
	for _, s := range set {
		if strings.EqualFold(v, s) {
			return s, true
		}
	}
	return "", false
}
