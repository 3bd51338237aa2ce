package backup_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/backup"
	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
	"github.com/coffer-backup/coffer/internal/provider/authorization"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/google/uuid"
)

const (
	sub      = "4d1c0b9e-6a55-4f6e-9f3e-1c2b3a4d5e6f"
	diskSize = 2 << 20

	diskBackupReader   = "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24"
	diskSnapshotContr  = "7efff54f-a5b4-42b5-a1c5-5411624893ce"
	diskRestoreOperatr = "b50d9833-a0cb-478e-945f-707fcc997c13"
)

// dailyPolicy backs up every 4 hours from 22:00 UTC and keeps a backup 7
// days, or 30 when it is the first of its day.
const dailyPolicy = `{
  "objectType": "BackupPolicy",
  "datasourceTypes": ["Microsoft.Compute/disks"],
  "policyRules": [
    {"objectType": "AzureBackupRule", "name": "BackupHourly",
     "backupParameters": {"objectType": "AzureBackupParams", "backupType": "Incremental"},
     "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
     "trigger": {"objectType": "ScheduleBasedTriggerContext",
       "schedule": {"repeatingTimeIntervals": ["R/2026-01-01T22:00:00+00:00/PT4H"], "timeZone": "UTC"},
       "taggingCriteria": [
         {"isDefault": true, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
         {"isDefault": false, "taggingPriority": 20, "tagInfo": {"tagName": "Daily"},
          "criteria": [{"objectType": "ScheduleBasedBackupCriteria", "absoluteCriteria": ["FirstOfDay"]}]}]}},
    {"objectType": "AzureRetentionRule", "name": "Default", "isDefault": true,
     "lifecycles": [{"sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
                     "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P7D"},
                     "targetDataStoreCopySettings": []}]},
    {"objectType": "AzureRetentionRule", "name": "Daily", "isDefault": false,
     "lifecycles": [{"sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"},
                     "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": "P30D"},
                     "targetDataStoreCopySettings": []}]}
  ]}`

// env is the backup engine over real parts: SQLite, a chunk directory, the
// disk engine with real volumes, the RBAC evaluator; only the clock is fake.
type env struct {
	t        *testing.T
	ctx      context.Context
	clock    *clock.Fake
	store    meta.Store
	chunks   *chunk.Store
	inflight *snapshot.InFlight
	disks    *disk.Engine
	runner   *ops.Runner
	svc      *backup.Service
	vault    string
	identity string
	instance string
	diskID   string
}

func newEnv(t *testing.T, start time.Time) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := meta.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	chunks, err := chunk.Open(ctx, "", dir, chunk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chunks.Close() })
	clk := clock.NewFake(start)
	authz := &authorization.Service{Store: store, Clock: clk}
	inflight := snapshot.NewInFlight()
	engine := &disk.Engine{Store: store, Clock: clk, Volumes: disk.NewVolumes(filepath.Join(dir, "volumes")),
		Chunks: chunks, InFlight: inflight, Permissions: authz}
	engine.Volumes.Backing = engine.BackingReader
	t.Cleanup(func() { engine.WaitHydration(); engine.Volumes.Close() })
	runner := ops.New(store, clk, slog.New(slog.DiscardHandler), ops.Config{})
	svc := &backup.Service{Store: store, Clock: clk, Disks: engine, Permissions: authz, Data: engine, Snapshots: engine,
		Log: slog.New(slog.DiscardHandler)}
	svc.Register(runner)
	e := &env{t: t, ctx: ctx, clock: clk, store: store, chunks: chunks, inflight: inflight, disks: engine, runner: runner, svc: svc,
		identity: uuid.NewString()}
	for _, g := range []string{"rg", "snaps", "restored"} {
		e.put(groups.ID(sub, g), groups.Type, "", groups.Group{ID: groups.ID(sub, g), Name: g, Type: groups.Type, Location: "westus",
			Properties: groups.Properties{ProvisioningState: "Succeeded"}})
	}
	e.vault = groups.ID(sub, "rg") + "/providers/Microsoft.DataProtection/backupVaults/v1"
	e.put(e.vault, backup.VaultType, groups.ID(sub, "rg"), backup.Vault{ID: e.vault, Name: "v1", Type: backup.VaultType, Location: "westus",
		Identity: &backup.Identity{Type: "SystemAssigned", PrincipalID: e.identity}, Properties: backup.VaultProperties{ProvisioningState: "Succeeded"}})
	var props backup.PolicyProperties
	if err := json.Unmarshal([]byte(dailyPolicy), &props); err != nil {
		t.Fatal(err)
	}
	if err := backup.ValidatePolicy(&props); err != nil {
		t.Fatal(err)
	}
	policy := e.vault + "/backupPolicies/daily"
	e.put(policy, backup.PolicyType, e.vault, backup.Policy{ID: policy, Name: "daily", Type: backup.PolicyType, Properties: props})

	// The disk, and the roles the vault's identity needs.
	e.diskID = disk.DiskID(sub, "rg", "data")
	rec := disk.NewRecord(e.diskID, "westus", "Premium_LRS", clk.Now())
	rec.SetSize(diskSize)
	rec.Properties.CreationData = disk.CreationData{CreateOption: disk.CreateEmpty}
	rec.RestState, rec.Properties.DiskState = disk.StateUnattached, disk.StateUnattached
	if _, err := engine.Save(ctx, store, rec); err != nil {
		t.Fatal(err)
	}
	if err := engine.Provision(ctx, rec.ID, rec.Properties.UniqueID); err != nil {
		t.Fatal(err)
	}
	e.grant(diskBackupReader, e.diskID)
	e.grant(diskSnapshotContr, groups.ID(sub, "snaps"))
	e.grant(diskRestoreOperatr, groups.ID(sub, "restored"))

	// Protect it.
	var bi backup.BackupInstance
	raw := fmt.Sprintf(`{"objectType":"BackupInstance","dataSourceInfo":{"resourceID":%q,"resourceLocation":"westus"},
		"policyInfo":{"policyId":%q,"policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters",
		"dataStoreType":"OperationalStore","resourceGroupId":%q}]}}}`, e.diskID, policy, groups.ID(sub, "snaps"))
	if err := json.Unmarshal([]byte(raw), &bi); err != nil {
		t.Fatal(err)
	}
	if err := backup.NormalizeInstance(&bi, e.vault); err != nil {
		t.Fatal(err)
	}
	err = store.InTx(ctx, func(tx meta.Tx) error {
		out, _, err := svc.PutInstance(ctx, tx, backup.InstanceRequest{VaultID: e.vault, Name: "bi", Properties: bi})
		e.instance = out.ID
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Configure(ctx, backup.ProtectionRequest{VaultID: e.vault, InstanceID: e.instance, Instance: bi}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	return e
}

func (e *env) put(id, typ, parent string, v any) {
	e.t.Helper()
	body, _ := json.Marshal(v)
	if _, err := e.store.PutResource(e.ctx, meta.Resource{ID: id, Type: typ, Name: id[len(id)-len(lastOf(id)):], Subscription: sub,
		Parent: parent, Body: body, UpdatedAt: e.clock.Now()}); err != nil {
		e.t.Fatal(err)
	}
}

func lastOf(id string) string {
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '/' {
			return id[i+1:]
		}
	}
	return id
}

// grant assigns a built-in role to the vault's identity at scope, as a role
// assignment row and its index, which is what the evaluator reads.
func (e *env) grant(role, scope string) string {
	e.t.Helper()
	id := scope + "/providers/Microsoft.Authorization/roleAssignments/" + uuid.NewString()
	err := e.store.InTx(e.ctx, func(tx meta.Tx) error {
		if _, err := tx.PutResource(e.ctx, meta.Resource{ID: id, Type: authorization.AssignmentType, Name: lastOf(id),
			Body: json.RawMessage(`{}`), UpdatedAt: e.clock.Now()}); err != nil {
			return err
		}
		return tx.IndexAssignment(e.ctx, meta.AssignmentIndex{ID: id, Principal: e.identity, Scope: scope, RoleID: role})
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// write puts random bytes at off on the protected disk and returns what the
// disk holds afterwards.
func (e *env) write(off int64, n int) []byte {
	e.t.Helper()
	rec, err := disk.LoadByID(e.ctx, e.store, e.diskID)
	if err != nil {
		e.t.Fatal(err)
	}
	vol, err := e.disks.Volumes.Open(rec.Properties.UniqueID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer e.disks.Volumes.Release(rec.Properties.UniqueID)
	p := make([]byte, n)
	rand.Read(p)
	if _, err := vol.WriteAt(p, off); err != nil {
		e.t.Fatal(err)
	}
	all := make([]byte, diskSize)
	if _, err := vol.ReadAt(all, 0); err != nil {
		e.t.Fatal(err)
	}
	return all
}

// tick is what a server does at time now: fire due slots, run operations,
// expire recovery points.
func (e *env) tick() {
	e.t.Helper()
	if _, err := e.svc.ScheduleDue(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.runner.RunDue(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.svc.ExpireDue(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) points() []backup.PointResource {
	e.t.Helper()
	var all []backup.PointResource
	after := ""
	for {
		page, next, err := e.svc.Points(e.ctx, e.instance, time.Time{}, time.Time{}, after, 7)
		if err != nil {
			e.t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			return all
		}
		after = next
	}
}

// TestFortyDaysOfBackups runs a PT4H policy (7 days, first of the day 30)
// for 40 simulated days: at every hour exactly the expected recovery points
// exist, with the right tags and expiry, expired snapshots are gone, and a
// collection frees their chunks.
func TestFortyDaysOfBackups(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	e := newEnv(t, start)
	type expected struct {
		at      time.Time
		tag     string
		expires time.Time
	}
	var want []expected
	contents := map[time.Time][]byte{}
	slot := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC) // 22:00 + k*4h
	lastDay := time.Time{}
	for hour := 1; hour <= 40*24; hour++ {
		now := start.Add(time.Duration(hour) * time.Hour)
		if !now.Before(slot) {
			// The disk changes before each backup; the slot fires at its time.
			e.clock.Set(slot.Add(-time.Minute))
			contents[slot] = e.write(int64(hour%32)*64<<10, 4096)
			e.clock.Set(slot)
			e.tick()
			day := slot.Truncate(24 * time.Hour)
			x := expected{at: slot, tag: "Default", expires: slot.Add(7 * 24 * time.Hour)}
			if !day.Equal(lastDay) {
				x = expected{at: slot, tag: "Daily", expires: slot.Add(30 * 24 * time.Hour)}
				lastDay = day
			}
			want = append(want, x)
			slot = slot.Add(4 * time.Hour)
		}
		e.clock.Set(now)
		e.tick()

		var live []expected
		for i, x := range want {
			if x.expires.After(now) || i == len(want)-1 {
				live = append(live, x)
			}
		}
		got := e.points()
		if len(got) != len(live) {
			t.Fatalf("%s: %d recovery points, want %d", now, len(got), len(live))
		}
		for i, p := range got {
			x := live[i]
			if !p.Properties.RecoveryPointTime.Equal(x.at) || p.Properties.RetentionTagName != x.tag || !p.Properties.ExpiryTime.Equal(x.expires) {
				t.Fatalf("%s: point %d = %s %s expires %s, want %s %s expires %s", now, i, p.Properties.RecoveryPointTime,
					p.Properties.RetentionTagName, p.Properties.ExpiryTime, x.at, x.tag, x.expires)
			}
		}
	}
	if len(want) != 40*6 {
		t.Fatalf("%d backups in 40 days, want 240", len(want))
	}
	// Every expired point's snapshot is gone; every live one's is there.
	live := map[string]bool{}
	for _, p := range e.points() {
		live[p.Properties.FriendlyName] = true
	}
	page, err := e.store.ListResources(e.ctx, meta.Query{Type: disk.SnapshotType, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != len(live) {
		t.Fatalf("%d snapshots in the snapshot group, %d live recovery points", len(page.Items), len(live))
	}
	for _, res := range page.Items {
		if !live[res.Name] {
			t.Fatalf("snapshot %s outlived its recovery point", res.Name)
		}
	}
	// The collector frees exactly what no live snapshot uses.
	// Chunk files carry the real time; the collector compares with it.
	stats, err := snapshot.NewCollector(e.chunks, e.inflight, snapshot.CollectorOptions{Grace: -1, Clock: clock.Real{}}).Run(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Deleted == 0 || stats.Chunks-stats.Deleted != stats.Marked {
		t.Fatalf("collection after expiry: %+v", stats)
	}
	if rep, err := snapshot.Verify(e.ctx, e.chunks, snapshot.VerifyOptions{}); err != nil || !rep.OK() {
		t.Fatalf("verify after collection: %+v %v", rep, err)
	}

	// The oldest surviving point and the newest restore to new disks equal
	// to the source at their moments.
	got := e.points()
	for i, p := range []backup.PointResource{got[0], got[len(got)-1]} {
		target := disk.DiskID(sub, "restored", fmt.Sprintf("r%d", i))
		job, _, err := e.svc.StartRestore(e.ctx, e.instance, restoreRequest(p.Name, target), "test")
		if err != nil {
			t.Fatal(err)
		}
		e.tick()
		done, err := backup.LoadJob(e.ctx, e.store, job.ID)
		if err != nil || done.Properties.Status != backup.JobCompleted {
			t.Fatalf("restore job: %+v %v", done.Properties, err)
		}
		rec, err := disk.LoadByID(e.ctx, e.store, target)
		if err != nil || rec.SKU.Name != "Premium_LRS" || rec.Properties.DiskSizeBytes != diskSize {
			t.Fatalf("restored disk: %+v %v", rec, err)
		}
		if b := e.read(target); !bytes.Equal(b, contents[p.Properties.RecoveryPointTime]) {
			t.Fatalf("disk restored from %s differs from the source at that moment", p.Properties.RecoveryPointTime)
		}
	}
}

func restoreRequest(point, target string) backup.RestoreRequest {
	r := backup.RestoreRequest{ObjectType: "AzureBackupRecoveryPointBasedRestoreRequest", RecoveryPointID: point,
		SourceDataStoreType: "OperationalStore", RestoreTargetInfo: &backup.RestoreTargetInfo{ObjectType: "restoreTargetInfo",
			RecoveryOption: "FailIfExists", RestoreLocation: "westus", DatasourceInfo: &backup.Datasource{ResourceID: target}}}
	if err := backup.NormalizeRestore(&r, ""); err != nil {
		panic(err)
	}
	return r
}

func (e *env) read(diskID string) []byte {
	e.t.Helper()
	rec, err := disk.LoadByID(e.ctx, e.store, diskID)
	if err != nil {
		e.t.Fatal(err)
	}
	vol, err := e.disks.Volumes.Open(rec.Properties.UniqueID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer e.disks.Volumes.Release(rec.Properties.UniqueID)
	b := make([]byte, rec.Properties.DiskSizeBytes)
	if _, err := vol.ReadAt(b, 0); err != nil {
		e.t.Fatal(err)
	}
	return b
}

// TestSchedulerEdges: a slot fires once however often schedulers look; the
// slots missed while no scheduler ran fire once, not as a burst; a
// suspended or stopped instance does not fire; a revoked role fails the
// job with UserErrorMissingRequiredPermissions and leaves no point; the
// newest point is kept while later backups fail.
func TestSchedulerEdges(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	e := newEnv(t, start)
	e.write(0, 4096)
	e.clock.Set(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	for i := 0; i < 3; i++ {
		n, err := e.svc.ScheduleDue(e.ctx)
		if err != nil || n != boolInt(i == 0) {
			t.Fatalf("look %d: fired %d, %v", i, n, err)
		}
	}
	e.tick()
	if got := len(e.points()); got != 1 {
		t.Fatalf("%d points after one slot", got)
	}
	// Down for a day and a half: 9 slots missed, one backup at start-up.
	e.clock.Advance(36 * time.Hour)
	e.tick()
	if got := len(e.points()); got != 2 {
		t.Fatalf("%d points after the outage, want 2", got)
	}
	jobs, _, err := e.svc.Jobs(e.ctx, e.vault, "", 100)
	if err != nil || len(jobs) != 2 || jobs[0].Properties.Status != backup.JobCompleted ||
		!jobs[0].Properties.StartTime.After(jobs[1].Properties.StartTime) {
		t.Fatalf("jobs newest first: %+v %v", jobs, err)
	}
	// Suspended: no backups, but retention runs.
	for _, a := range []string{"suspendBackups", "resumeBackups", "stopProtection", "resumeProtection"} {
		if err := e.svc.ChangeState(e.ctx, e.instance, a); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(8 * time.Hour)
		e.tick()
		// One tick 8 hours on fires one backup if the instance is
		// protected then (the latest of the slots it passed).
		want := map[string]int{"suspendBackups": 2, "resumeBackups": 3, "stopProtection": 3, "resumeProtection": 4}[a]
		if got := len(e.points()); got != want {
			t.Fatalf("after %s: %d points, want %d", a, got, want)
		}
	}
	// Revoke the vault's right to snapshot: the next job fails, no point.
	page, err := e.store.ListResources(e.ctx, meta.Query{Type: authorization.AssignmentType, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range page.Items {
		if _, err := e.store.DeleteResource(e.ctx, res.ID); err != nil {
			t.Fatal(err)
		}
	}
	before := len(e.points())
	e.clock.Advance(30 * 24 * time.Hour) // everything but the newest has expired
	e.tick()
	pts := e.points()
	if len(pts) != 1 {
		t.Fatalf("after a month of failing backups: %d points, want the newest kept", len(pts))
	}
	jobs, _, _ = e.svc.Jobs(e.ctx, e.vault, "", 1)
	if jobs[0].Properties.Status != backup.JobFailed || len(jobs[0].Properties.ErrorDetails) == 0 ||
		jobs[0].Properties.ErrorDetails[0].Code != "UserErrorMissingRequiredPermissions" {
		t.Fatalf("job after revoking: %+v", jobs[0].Properties)
	}
	_ = before
	// Ad hoc backups: at most 10 a day, each a job with a point.
	e.grant(diskBackupReader, e.diskID)
	e.grant(diskSnapshotContr, groups.ID(sub, "snaps"))
	opts := backup.AdHocOptions{RuleName: "BackupHourly"}
	opts.TriggerOption = &struct {
		RetentionTagOverride string `json:"retentionTagOverride"`
	}{"Daily"}
	for i := 0; i < backup.MaxAdHocBackupsPerDay; i++ {
		e.clock.Advance(time.Minute)
		if _, _, err := e.svc.StartAdHocBackup(e.ctx, e.instance, opts, "test"); err != nil {
			t.Fatalf("ad hoc %d: %v", i, err)
		}
		if _, err := e.runner.RunDue(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := e.svc.StartAdHocBackup(e.ctx, e.instance, opts, "test"); !errs.Is(err, errs.Invalid) {
		t.Fatalf("eleventh ad hoc backup: %v", err)
	}
	pts = e.points()
	if len(pts) != 11 || pts[10].Properties.RetentionTagName != "Daily" {
		t.Fatalf("after ad hoc backups: %d points, last %+v", len(pts), pts[len(pts)-1].Properties)
	}
	names := map[string]bool{}
	for _, p := range pts {
		names[p.Name] = true
	}
	if len(names) != len(pts) {
		t.Fatal("two recovery points share a name")
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].Name < pts[j].Name })
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestSoftDeleteKeepsThenPurges: in a vault with soft delete on, deleting an
// instance keeps its points and snapshots, and stops its backups; undelete
// brings it back stopped; deleted again and left, it is purged when its
// retention runs out, and a collection frees its chunks.
func TestSoftDeleteKeepsThenPurges(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC)
	e := newEnv(t, start)
	v, err := backup.LoadVault(e.ctx, e.store, e.vault)
	if err != nil {
		t.Fatal(err)
	}
	days := 14.0
	v.Properties.SecuritySettings = &backup.SecuritySettings{SoftDeleteSettings: &backup.SoftDeleteSettings{State: "On", RetentionDurationInDays: &days}}
	e.put(e.vault, backup.VaultType, groups.ID(sub, "rg"), v)
	for i := 0; i < 3; i++ {
		e.write(int64(i)<<18, 4096)
		e.clock.Advance(4 * time.Hour)
		e.tick()
	}
	if n := len(e.points()); n != 3 {
		t.Fatalf("%d points before the delete", n)
	}
	del := func() {
		t.Helper()
		if err := e.store.InTx(e.ctx, func(tx meta.Tx) error {
			_, err := e.svc.StartDelete(e.ctx, tx, e.instance, backup.Caller{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.DeleteInstance(e.ctx, e.instance, "test"); err != nil {
			t.Fatal(err)
		}
	}
	del()
	if _, err := e.svc.Instance(e.ctx, e.store, e.instance); !errs.Is(err, errs.NotFound) {
		t.Fatalf("a soft-deleted instance is still visible: %v", err)
	}
	bi, err := e.svc.Deleted(e.ctx, e.vault, "bi")
	if err != nil || bi.Properties.DeletionInfo == nil || !bi.Properties.DeletionInfo.ScheduledPurgeTime.Equal(e.clock.Now().Add(14*24*time.Hour)) {
		t.Fatalf("deleted instance: %+v %v", bi.Properties, err)
	}
	// No backups while deleted; nothing expires either.
	e.clock.Advance(10 * 24 * time.Hour)
	e.tick()
	if n := len(e.points()); n != 3 {
		t.Fatalf("%d points ten days after a soft delete, want the 3 kept", n)
	}
	if err := e.svc.Undelete(e.ctx, e.instance); err != nil {
		t.Fatal(err)
	}
	bi, err = e.svc.Instance(e.ctx, e.store, e.instance)
	if err != nil || bi.Properties.CurrentProtectionState != backup.StateStopped {
		t.Fatalf("after undelete: %+v %v", bi.Properties, err)
	}
	if err := e.svc.ChangeState(e.ctx, e.instance, "resumeProtection"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(4 * time.Hour)
	e.tick()
	// Retention runs again: the points older than 7 days go, but the
	// newest, just taken, stays.
	pts := e.points()
	if len(pts) == 0 || !pts[len(pts)-1].Properties.RecoveryPointTime.Equal(e.clock.Now()) {
		for _, p := range pts {
			t.Logf("point %s expires %s", p.Properties.RecoveryPointTime, p.Properties.ExpiryTime)
		}
		t.Fatalf("no new point after resuming at %s", e.clock.Now())
	}
	del()
	e.clock.Advance(14*24*time.Hour + time.Minute)
	if n, err := e.svc.PurgeDue(e.ctx); err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	if _, err := e.svc.Deleted(e.ctx, e.vault, "bi"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("purged instance still there: %v", err)
	}
	page, err := e.store.ListResources(e.ctx, meta.Query{Type: disk.SnapshotType, Limit: 100})
	if err != nil || len(page.Items) != 0 {
		t.Fatalf("snapshots after the purge: %d %v", len(page.Items), err)
	}
	stats, err := snapshot.NewCollector(e.chunks, e.inflight, snapshot.CollectorOptions{Grace: -1, Clock: clock.Real{}}).Run(e.ctx)
	if err != nil || stats.Deleted == 0 || stats.Marked != 0 {
		t.Fatalf("collection after the purge: %+v %v", stats, err)
	}
}

// TestOnDemandPointLimit: a disk keeps at most 50 recovery points of
// on-demand backups; the 51st is refused until some expire.
func TestOnDemandPointLimit(t *testing.T) {
	e := newEnv(t, time.Date(2026, 3, 1, 9, 30, 0, 0, time.UTC))
	opts := backup.AdHocOptions{RuleName: "BackupHourly"}
	opts.TriggerOption = &struct {
		RetentionTagOverride string `json:"retentionTagOverride"`
	}{"Daily"}
	for day := 0; day < 5; day++ {
		for i := 0; i < backup.MaxAdHocBackupsPerDay; i++ {
			e.clock.Advance(time.Minute)
			if _, _, err := e.svc.StartAdHocBackup(e.ctx, e.instance, opts, "test"); err != nil {
				t.Fatalf("day %d, backup %d: %v", day, i, err)
			}
			if _, err := e.runner.RunDue(e.ctx); err != nil {
				t.Fatal(err)
			}
		}
		e.clock.Advance(24 * time.Hour)
	}
	_, _, err := e.svc.StartAdHocBackup(e.ctx, e.instance, opts, "test")
	var ee *errs.Error
	if !errors.As(err, &ee) || ee.Code != "UserErrorMaxOnDemandRecoveryPointsReached" {
		t.Fatalf("the 51st on-demand point: %v", err)
	}
	// A month on, they have expired (Daily keeps 30 days): room again.
	e.clock.Advance(30 * 24 * time.Hour)
	if _, err := e.svc.ExpireDue(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.StartAdHocBackup(e.ctx, e.instance, opts, "test"); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}
