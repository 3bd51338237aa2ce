package backup

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

const (
	testVault = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/v1"
	testDisk  = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/disks/providers/Microsoft.Compute/disks/d1"
)

func newService(t *testing.T) *Service {
	t.Helper()
	store, err := meta.Open(context.Background(), filepath.Join(t.TempDir(), "coffer.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &Service{Store: store, Clock: clock.NewFake(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))}
}

func instanceOf(vault, name, disk, state string) InstanceResource {
	return InstanceResource{ID: vault + "/backupInstances/" + name, Name: name, Type: InstanceType, Properties: BackupInstance{
		DataSourceInfo:         &Datasource{ResourceID: disk},
		PolicyInfo:             &PolicyInfo{PolicyID: vault + "/backupPolicies/p1"},
		CurrentProtectionState: state,
		ObjectType:             "BackupInstance",
	}}
}

// TestReindex: instances stored before the index existed (rows without
// index rows, as an older server wrote them, one with a trailing '/' in its
// disk id) are found by datasource and by policy once Reindex has run, and a
// second run changes nothing.
func TestReindex(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	for _, bi := range []InstanceResource{
		instanceOf(testVault, "old", testDisk+"/", StateConfigured),
		instanceOf(testVault, "other", testDisk+"x", StateStopped),
	} {
		body, _ := json.Marshal(bi)
		if _, err := s.Store.PutResource(ctx, meta.Resource{ID: bi.ID, Type: InstanceType, Name: bi.Name, Parent: testVault,
			Body: body, UpdatedAt: s.Clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	unindexed := BackupInstance{DataSourceInfo: &Datasource{ResourceID: testDisk}}
	if err := s.EnsureUnprotected(ctx, s.Store, &unindexed, "", "a"); err != nil {
		t.Fatalf("before Reindex the index is empty, yet: %v", err)
	}
	for run := 0; run < 2; run++ {
		n, err := s.Reindex(ctx)
		if err != nil || n != 2 {
			t.Fatalf("Reindex = %d, %v; want 2", n, err)
		}
	}
	err := s.EnsureUnprotected(ctx, s.Store, &BackupInstance{DataSourceInfo: &Datasource{ResourceID: testDisk}}, "", "activity")
	if codeOf(err) != "UserErrorDppDatasourceAlreadyProtected" {
		t.Fatalf("EnsureUnprotected after Reindex: %v", err)
	}
	if err := s.EnsureUnprotected(ctx, s.Store, &BackupInstance{DataSourceInfo: &Datasource{ResourceID: testDisk}}, testVault+"/backupInstances/OLD", ""); err != nil {
		t.Fatalf("an instance is not protected elsewhere by itself: %v", err)
	}
	users, err := s.InstancesUsing(ctx, s.Store, testVault+"/backupPolicies/P1")
	if err != nil || len(users) != 2 || users[0] != "old" || users[1] != "other" {
		t.Fatalf("InstancesUsing = %v, %v", users, err)
	}
	if n, err := s.CountInstances(ctx, s.Store, testVault); n != 2 || err != nil {
		t.Fatalf("CountInstances = %d, %v", n, err)
	}
}

// TestChangeState: the durable half of a state action moves the instance
// and its index row, is idempotent, and refuses a move the machine forbids.
func TestChangeState(t *testing.T) {
	ctx := context.Background()
	s := newService(t)
	bi := instanceOf(testVault, "bi", testDisk, StateConfigured)
	if err := s.Store.InTx(ctx, func(tx meta.Tx) error { return s.saveInstance(ctx, tx, bi) }); err != nil {
		t.Fatal(err)
	}
	state := func() (string, string) {
		t.Helper()
		got, err := s.LoadInstance(ctx, s.Store, bi.ID)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := s.Store.BackupInstancesOf(ctx, testDisk)
		if err != nil || len(idx) != 1 {
			t.Fatalf("index: %+v, %v", idx, err)
		}
		return got.Properties.CurrentProtectionState, idx[0].State
	}
	for i := 0; i < 2; i++ { // the second run is a retry after success
		if err := s.ChangeState(ctx, bi.ID, "suspendBackups"); err != nil {
			t.Fatalf("suspend, run %d: %v", i, err)
		}
	}
	if doc, idx := state(); doc != StateSuspended || idx != StateSuspended {
		t.Fatalf("after suspend: document %s, index %s", doc, idx)
	}
	if err := s.ChangeState(ctx, bi.ID, "resumeProtection"); codeOf(err) != "UserErrorInvalidProtectionStateForOperation" {
		t.Fatalf("resumeProtection while suspended: %v", err)
	}
	if err := s.ChangeState(ctx, bi.ID, "explode"); err == nil || errs.KindOf(err) != errs.Internal {
		t.Fatalf("unknown action: %v", err)
	}
	if err := s.DeleteInstance(ctx, bi.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteInstance(ctx, bi.ID, "test"); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
	if idx, _ := s.Store.BackupInstancesOf(ctx, testDisk); len(idx) != 0 {
		t.Fatalf("index row outlived the instance: %+v", idx)
	}
}

// TestNormalizeInstanceDatasource: every spelling of one disk id becomes
// one canonical id and one key.
func TestNormalizeInstanceDatasource(t *testing.T) {
	var keys []string
	for _, spelling := range []string{testDisk, testDisk + "/", testDisk[1:], "/" + testDisk + "//"} {
		b := instanceOf(testVault, "bi", spelling, "").Properties
		b.PolicyInfo.PolicyParameters = &PolicyParameters{DataStoreParametersList: []DataStoreParameters{{
			ObjectType: "AzureOperationalStoreParameters", DataStoreType: "OperationalStore",
			ResourceGroupID: "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/snaps"}}}
		if err := NormalizeInstance(&b, testVault); err != nil {
			t.Fatalf("%s: %v", spelling, err)
		}
		if b.DataSourceInfo.ResourceID != testDisk {
			t.Fatalf("%s normalized to %s", spelling, b.DataSourceInfo.ResourceID)
		}
		keys = append(keys, datasourceKey(&b))
	}
	for _, k := range keys {
		if k != keys[0] {
			t.Fatalf("keys differ: %q", keys)
		}
	}
}
