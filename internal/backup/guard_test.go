package backup_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/provider/authorization"
	"github.com/google/uuid"
)

const (
	readerRole      = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
	muaOperatorRole = "f54b6d04-23c6-443e-b462-9c16ab7b4a52"
)

// grantTo assigns role to principal at scope, as the evaluator reads it.
func (e *env) grantTo(principal, role, scope string) {
	e.t.Helper()
	id := scope + "/providers/Microsoft.Authorization/roleAssignments/" + uuid.NewString()
	err := e.store.InTx(e.ctx, func(tx meta.Tx) error {
		if _, err := tx.PutResource(e.ctx, meta.Resource{ID: id, Type: authorization.AssignmentType, Name: lastOf(id),
			Body: json.RawMessage(`{}`), UpdatedAt: e.clock.Now()}); err != nil {
			return err
		}
		return tx.IndexAssignment(e.ctx, meta.AssignmentIndex{ID: id, Principal: principal, Scope: scope, RoleID: role})
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func errCode(err error) string {
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// TestGuardedVaultNeedsApproval: once a vault is associated with a guard,
// its admin alone cannot delete an instance, stop protection, lower the
// vault's security or remove the guard; an approval by a holder of the
// guard permission, named in the body or carried as an auxiliary token,
// lets each through; an excluded operation is not guarded; and the guard
// cannot be deleted from under the vault.
func TestGuardedVaultNeedsApproval(t *testing.T) {
	e := newEnv(t, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
	guard := groups.ID(sub, "sec") + "/providers/Microsoft.DataProtection/resourceGuards/g1"
	admin, other := uuid.NewString(), uuid.NewString()
	inTx := func(fn func(tx meta.Tx) error) error { return e.store.InTx(e.ctx, fn) }

	for _, bad := range []struct{ exclusion, code string }{
		{backup.OpDeleteProxy, "UserErrorMandatoryCriticalOperationCannotBeExcluded"},
		{backup.OpReduceSecurity, "UserErrorMandatoryCriticalOperationCannotBeExcluded"},
		{"Microsoft.DataProtection/backupVaults/delete", "UserErrorInvalidCriticalOperation"},
	} {
		err := inTx(func(tx meta.Tx) error {
			_, _, err := e.svc.PutGuard(e.ctx, tx, backup.GuardRequest{ID: guard, Location: "westus", Exclusions: []string{bad.exclusion}})
			return err
		})
		if errCode(err) != bad.code || errs.KindOf(err) != errs.Invalid {
			t.Fatalf("excluding %s: %v, want %s", bad.exclusion, err, bad.code)
		}
	}
	err := inTx(func(tx meta.Tx) error {
		_, _, err := e.svc.PutGuard(e.ctx, tx, backup.GuardRequest{ID: guard, Location: "westus", Exclusions: []string{backup.OpSuspendBackups}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.svc.Guard(e.ctx, e.store, guard)
	if err != nil || len(g.Properties.ResourceGuardOperations) != len(backup.CriticalOperations()) {
		t.Fatalf("guard: %+v %v", g, err)
	}

	// Associating needs read access to the guard.
	associate := func(c backup.Caller) error {
		return inTx(func(tx meta.Tx) error { _, _, err := e.svc.PutProxy(e.ctx, tx, e.vault, guard, c); return err })
	}
	if err := associate(backup.Caller{Principal: admin}); errCode(err) != "AuthorizationFailed" {
		t.Fatalf("associating without read on the guard: %v", err)
	}
	e.grantTo(admin, readerRole, guard)
	if err := associate(backup.Caller{Principal: admin}); err != nil {
		t.Fatal(err)
	}
	if v, _ := backup.LoadVault(e.ctx, e.store, e.vault); !v.Properties.IsVaultProtectedByResourceGuard {
		t.Fatal("the vault does not say it is protected by a resource guard")
	}

	request := func(typ string) []string { return []string{guard + "/" + typ + "/default"} }
	del := func(c backup.Caller) error {
		return inTx(func(tx meta.Tx) error {
			_, err := e.svc.StartDelete(e.ctx, tx, e.instance, c)
			if err == nil {
				err = errRollback // only asking
			}
			return err
		})
	}
	action := func(name string, c backup.Caller) error {
		a, _ := backup.ActionNamed(name)
		return inTx(func(tx meta.Tx) error { _, err := e.svc.StartAction(e.ctx, tx, e.instance, a, c); return err })
	}
	lower := func(c backup.Caller) error {
		return inTx(func(tx meta.Tx) error { return e.svc.Authorize(e.ctx, tx, e.vault, backup.OpReduceSecurity, c) })
	}
	// Two more policies: one keeping backups for less, one for longer.
	for name, keep := range map[string]*strings.Replacer{
		"short": strings.NewReplacer(`"P7D"`, `"P3D"`, `"P30D"`, `"P3D"`),
		"long":  strings.NewReplacer(`"P30D"`, `"P90D"`),
	} {
		var props backup.PolicyProperties
		if err := json.Unmarshal([]byte(keep.Replace(dailyPolicy)), &props); err != nil {
			t.Fatal(err)
		}
		if err := backup.ValidatePolicy(&props); err != nil {
			t.Fatal(err)
		}
		id := e.vault + "/backupPolicies/" + name
		e.put(id, backup.PolicyType, e.vault, backup.Policy{ID: id, Name: name, Type: backup.PolicyType, Properties: props})
	}
	movePolicy := func(policy string, c backup.Caller) error {
		return inTx(func(tx meta.Tx) error {
			bi, err := e.svc.LoadInstance(e.ctx, tx, e.instance)
			if err != nil {
				return err
			}
			bi.Properties.PolicyInfo.PolicyID = e.vault + "/backupPolicies/" + policy
			_, _, err = e.svc.PutInstance(e.ctx, tx, backup.InstanceRequest{VaultID: e.vault, Name: bi.Name, Properties: bi.Properties, Caller: c})
			if err == nil {
				err = errRollback
			}
			return err
		})
	}
	if err := movePolicy("long", backup.Caller{Principal: admin}); err != errRollback {
		t.Errorf("moving to a policy that keeps backups longer: %v", err)
	}
	unguard := func(c backup.Caller) error {
		return inTx(func(tx meta.Tx) error { return e.svc.DeleteProxy(e.ctx, tx, e.vault, c) })
	}

	// The admin alone, even naming the requests (a Reader of the guard
	// cannot approve), is refused everything critical.
	alone := backup.Caller{Principal: admin, Requests: append(append(request("deleteProtectedItemRequests"), request("updateProtectedItemRequests")...),
		append(request("disableSoftDeleteRequests"), request("deleteResourceGuardProxyRequests")...)...)}
	for what, err := range map[string]error{
		"delete instance": del(alone), "stop protection": action("stopProtection", alone),
		"lower security": lower(alone), "remove the guard": unguard(alone), "shorten retention": movePolicy("short", alone),
	} {
		if errCode(err) != "ResourceGuardAuthorizationFailed" || errs.KindOf(err) != errs.Forbidden {
			t.Errorf("%s by the vault admin alone: %v", what, err)
		}
	}
	// Suspending backups is excluded from the guard.
	if err := action("suspendBackups", backup.Caller{Principal: admin}); err != nil {
		t.Errorf("an excluded operation was guarded: %v", err)
	}
	if err := inTx(func(tx meta.Tx) error { return e.svc.DeleteGuard(e.ctx, tx, guard) }); errCode(err) != "UserErrorResourceGuardInUse" {
		t.Fatalf("deleting a guard in use: %v", err)
	}
	if err := e.svc.HoldsUnder(e.ctx, groups.ID(sub, "sec")); errCode(err) != "UserErrorResourceGuardInUse" {
		t.Fatalf("deleting the group of a guard in use: %v", err)
	}
	if err := e.svc.HoldsUnder(e.ctx, groups.ID(sub, "rg")); errCode(err) != "UserErrorBackupVaultHasBackupInstances" {
		t.Fatalf("deleting the group of a guarded vault with an instance: %v", err)
	}

	// The security admin makes the vault admin an operator of the guard.
	e.grantTo(admin, muaOperatorRole, guard)
	if err := del(backup.Caller{Principal: admin}); errCode(err) != "ResourceGuardAuthorizationFailed" {
		t.Errorf("an operator who names no request and sends no token: %v", err)
	}
	if err := del(backup.Caller{Principal: admin, Requests: request("deleteResourceGuardProxyRequests")}); errCode(err) != "ResourceGuardAuthorizationFailed" {
		t.Errorf("a request for another operation approved a delete: %v", err)
	}
	if err := del(backup.Caller{Principal: other, Auxiliary: []string{other}}); errCode(err) != "ResourceGuardAuthorizationFailed" {
		t.Errorf("an auxiliary token of a principal without the guard permission: %v", err)
	}
	if err := del(backup.Caller{Principal: admin, Requests: request("deleteBackupInstanceRequests")}); err != errRollback {
		t.Errorf("delete, approved in the body: %v", err)
	}
	if err := del(backup.Caller{Principal: other, Auxiliary: []string{admin}}); err != errRollback {
		t.Errorf("delete, approved by an auxiliary token: %v", err)
	}
	if err := movePolicy("short", backup.Caller{Principal: admin, Requests: request("updateProtectedItemRequests")}); err != errRollback {
		t.Errorf("shortening retention, approved: %v", err)
	}
	if err := lower(backup.Caller{Principal: admin, Requests: request("disableSoftDeleteRequests")}); err != nil {
		t.Errorf("lowering security, approved: %v", err)
	}

	// unlockDelete approves removing the guard for a while.
	if _, err := e.svc.UnlockDelete(e.ctx, e.vault, backup.Caller{Principal: other}); errCode(err) != "ResourceGuardAuthorizationFailed" {
		t.Fatalf("unlockDelete without approval: %v", err)
	}
	until, err := e.svc.UnlockDelete(e.ctx, e.vault, backup.Caller{Principal: admin, Requests: request("deleteResourceGuardProxyRequests")})
	if err != nil || !until.After(e.clock.Now()) {
		t.Fatalf("unlockDelete: %v %v", until, err)
	}
	e.clock.Advance(until.Sub(e.clock.Now()) + time.Second)
	if err := unguard(backup.Caller{Principal: other}); errCode(err) != "ResourceGuardAuthorizationFailed" {
		t.Fatalf("removing the guard after the unlock expired: %v", err)
	}
	if _, err := e.svc.UnlockDelete(e.ctx, e.vault, backup.Caller{Principal: other, Auxiliary: []string{admin}}); err != nil {
		t.Fatal(err)
	}
	if err := unguard(backup.Caller{Principal: other}); err != nil {
		t.Fatalf("removing the guard within the unlock: %v", err)
	}
	if v, _ := backup.LoadVault(e.ctx, e.store, e.vault); v.Properties.IsVaultProtectedByResourceGuard {
		t.Fatal("the vault still says it is protected")
	}
	if err := del(backup.Caller{Principal: other}); err != errRollback {
		t.Fatalf("delete after the guard went: %v", err)
	}
	if err := e.svc.HoldsUnder(e.ctx, groups.ID(sub, "sec")); err != nil {
		t.Fatalf("the group of a guard no vault uses: %v", err)
	}
	if err := inTx(func(tx meta.Tx) error { return e.svc.DeleteGuard(e.ctx, tx, guard) }); err != nil {
		t.Fatalf("deleting the guard no vault uses: %v", err)
	}
}

var errRollback = errors.New("rollback")

// TestSecurityReduced: which vault writes are the guarded "lower security"
// operation.
func TestSecurityReduced(t *testing.T) {
	days := func(d float64) *float64 { return &d }
	sd := func(state string, d *float64) *backup.SecuritySettings {
		return &backup.SecuritySettings{SoftDeleteSettings: &backup.SoftDeleteSettings{State: state, RetentionDurationInDays: d}}
	}
	im := func(state string) *backup.SecuritySettings {
		return &backup.SecuritySettings{ImmutabilitySettings: &backup.ImmutabilitySettings{State: state}}
	}
	cases := []struct {
		name          string
		before, after *backup.SecuritySettings
		want          bool
	}{
		{"nothing to nothing", nil, nil, false},
		{"soft delete on", nil, sd("On", nil), false},
		{"soft delete off", sd("On", nil), sd("Off", nil), true},
		{"retention shortened", sd("On", days(30)), sd("On", days(14)), true},
		{"retention to the default, shorter", sd("On", days(30)), sd("On", nil), true},
		{"retention lengthened", sd("On", nil), sd("On", days(90)), false},
		{"AlwaysOn from On", sd("On", nil), sd("AlwaysOn", nil), false},
		{"immutability disabled", im("Unlocked"), im("Disabled"), true},
		{"immutability locked", im("Unlocked"), im("Locked"), false},
		{"off stays off", sd("Off", nil), sd("Off", nil), false},
	}
	for _, c := range cases {
		if got := backup.SecurityReduced(c.before, c.after); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
