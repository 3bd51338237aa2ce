package backup

import (
	"errors"
	"testing"

	"github.com/coffer-backup/coffer/internal/errs"
)

func TestActionsAllowedFrom(t *testing.T) {
	states := []string{StateConfiguring, StateConfiguringFailed, StateConfigured, StateStopped, StateSuspended, StateError}
	allowed := map[string][]string{
		"stopProtection":   {StateConfigured, StateSuspended, StateError},
		"suspendBackups":   {StateConfigured},
		"resumeProtection": {StateStopped},
		"resumeBackups":    {StateSuspended},
	}
	if len(Actions()) != len(allowed) {
		t.Fatalf("%d actions, want %d", len(Actions()), len(allowed))
	}
	for name, from := range allowed {
		a, ok := ActionNamed(name)
		if !ok {
			t.Fatalf("no action %s", name)
		}
		for _, st := range states {
			want := false
			for _, f := range from {
				want = want || f == st
			}
			err := a.AllowedFrom(st)
			if want && err != nil {
				t.Errorf("%s from %s refused: %v", name, st, err)
			}
			if !want && (!errs.Is(err, errs.Invalid) || codeOf(err) != "UserErrorInvalidProtectionStateForOperation") {
				t.Errorf("%s from %s: %v, want UserErrorInvalidProtectionStateForOperation", name, st, err)
			}
		}
	}
	if _, ok := ActionNamed("StopProtection"); ok {
		t.Fatal("action names are exact")
	}
	// Actions hands out copies: changing one does not change the machine.
	Actions()[0].From[0] = StateConfiguring
	if a, _ := ActionNamed(Actions()[0].Name); a.AllowedFrom(StateConfiguring) == nil {
		t.Fatal("the state machine was changed through Actions()")
	}
}

func TestActionTargets(t *testing.T) {
	for _, c := range []struct{ action, to, status string }{
		{"stopProtection", StateStopped, StateStopped},
		{"suspendBackups", StateSuspended, StateStopped},
		{"resumeProtection", StateConfigured, StateConfigured},
		{"resumeBackups", StateConfigured, StateConfigured},
	} {
		a, _ := ActionNamed(c.action)
		if a.To != c.to || a.Status != c.status {
			t.Errorf("%s leads to %s/%s, want %s/%s", c.action, a.To, a.Status, c.to, c.status)
		}
	}
}

func codeOf(err error) string {
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
