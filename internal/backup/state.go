package backup

import (
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
)

// Protection states of a backup instance (currentProtectionState).
const (
	StateConfiguring       = "ConfiguringProtection"
	StateConfiguringFailed = "ConfiguringProtectionFailed"
	StateConfigured        = "ProtectionConfigured"
	StateStopped           = "ProtectionStopped"
	StateSuspended         = "BackupSchedulesSuspended"
	StateError             = "ProtectionError"
	StateSoftDeleted       = "SoftDeleted"
)

// Action is a change of protection state a client asks for by name.
type Action struct {
	Name   string   // the POST action on the instance, e.g. stopProtection
	From   []string // the states it may start from
	To     string   // the state it leaves the instance in
	Status string   // the protectionStatus.status that goes with To
}

// Actions returns the protection state changes: stop keeps the backups and
// ends the schedule; suspend pauses the schedule; the resumes undo each.
func Actions() []Action {
	return []Action{
		{Name: "stopProtection", From: []string{StateConfigured, StateSuspended, StateError}, To: StateStopped, Status: StateStopped},
		{Name: "suspendBackups", From: []string{StateConfigured}, To: StateSuspended, Status: StateStopped},
		{Name: "resumeProtection", From: []string{StateStopped}, To: StateConfigured, Status: StateConfigured},
		{Name: "resumeBackups", From: []string{StateSuspended}, To: StateConfigured, Status: StateConfigured},
	}
}

// critical is the resource guard operation the action is, "" if none:
// stopping or suspending ends a disk's backups, so a guard protects them.
func (a Action) critical() string {
	switch a.Name {
	case "stopProtection":
		return OpStopProtection
	case "suspendBackups":
		return OpSuspendBackups
	}
	return ""
}

// ActionNamed returns the action called name.
func ActionNamed(name string) (Action, bool) {
	for _, a := range Actions() {
		if a.Name == name {
			return a, true
		}
	}
	return Action{}, false
}

// AllowedFrom returns nil if the action may start in state, else an
// errs.Invalid error (UserErrorInvalidProtectionStateForOperation).
func (a Action) AllowedFrom(state string) error {
	for _, f := range a.From {
		if f == state {
			return nil
		}
	}
	return errs.E(errs.Invalid, "UserErrorInvalidProtectionStateForOperation",
		"%s is not possible while the backup instance is '%s'; it needs one of: %s.", a.Name, state, strings.Join(a.From, ", "))
}
