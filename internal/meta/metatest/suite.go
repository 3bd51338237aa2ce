// Package metatest is the conformance suite every meta.Store backend runs.
package metatest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
)

// Run runs the suite against stores made by open; each subtest gets a fresh,
// empty store.
func Run(t *testing.T, open func(t *testing.T) meta.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s meta.Store)
	}{
		{"ResourceRoundTrip", testResourceRoundTrip},
		{"CaseInsensitiveIDs", testCaseInsensitive},
		{"ListPaging", testListPaging},
		{"DeleteTree", testDeleteTree},
		{"TransactionRollback", testRollback},
		{"OperationLifecycle", testOperationLifecycle},
		{"ClaimIsExclusive", testClaimExclusive},
		{"AssignmentIndex", testAssignmentIndex},
		{"PinnedOperation", testPinnedOperation},
		{"Labels", testLabels},
		{"Times", testTimes},
		{"BackupInstanceIndex", testBackupInstanceIndex},
		{"UnstorableText", testUnstorableText},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func rg(sub, name string) meta.Resource {
	return meta.Resource{
		ID:           "/subscriptions/" + sub + "/resourceGroups/" + name,
		Type:         "Microsoft.Resources/resourceGroups",
		Name:         name,
		Subscription: sub,
		Parent:       "/subscriptions/" + sub,
		Body:         json.RawMessage(`{"location":"westus"}`),
		ETag:         "e1",
		UpdatedAt:    t0,
	}
}

const sub = "00000000-0000-0000-0000-000000000001"

func testResourceRoundTrip(t *testing.T, s meta.Store) {
	ctx := context.Background()
	r := rg(sub, "Alpha")
	created, err := s.PutResource(ctx, r)
	if err != nil || !created {
		t.Fatalf("first put: created=%v err=%v", created, err)
	}
	got, err := s.GetResource(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != r.ID || got.Name != "Alpha" || string(got.Body) != string(r.Body) || !got.CreatedAt.Equal(t0) {
		t.Fatalf("got %+v", got)
	}
	r.Body = json.RawMessage(`{"location":"westus","tags":{"a":"b"}}`)
	r.UpdatedAt = t0.Add(time.Hour)
	created, err = s.PutResource(ctx, r)
	if err != nil || created {
		t.Fatalf("second put: created=%v err=%v", created, err)
	}
	got, _ = s.GetResource(ctx, r.ID)
	if string(got.Body) != string(r.Body) || !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after update got %+v", got)
	}
	ok, err := s.DeleteResource(ctx, r.ID)
	if err != nil || !ok {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if _, err := s.GetResource(ctx, r.ID); !errs.Is(err, errs.NotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if ok, _ := s.DeleteResource(ctx, r.ID); ok {
		t.Fatal("second delete reported a deletion")
	}
}

func testCaseInsensitive(t *testing.T, s meta.Store) {
	ctx := context.Background()
	r := rg(sub, "MixedCase")
	if _, err := s.PutResource(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetResource(ctx, "/SUBSCRIPTIONS/"+sub+"/resourcegroups/mixedcase")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != r.ID {
		t.Fatalf("canonical casing lost: %q", got.ID)
	}
	other := r
	other.ID = "/subscriptions/" + sub + "/resourcegroups/MIXEDCASE"
	other.UpdatedAt = t0.Add(time.Minute)
	if created, _ := s.PutResource(ctx, other); created {
		t.Fatal("a differently cased id created a second resource")
	}
	got, _ = s.GetResource(ctx, r.ID)
	if got.ID != r.ID {
		t.Fatalf("update changed the canonical id to %q", got.ID)
	}
}

func testListPaging(t *testing.T, s meta.Store) {
	ctx := context.Background()
	const n = 57
	for i := 0; i < n; i++ {
		if _, err := s.PutResource(ctx, rg(sub, fmt.Sprintf("g%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutResource(ctx, rg("00000000-0000-0000-0000-000000000002", "elsewhere")); err != nil {
		t.Fatal(err)
	}
	q := meta.Query{Type: "microsoft.resources/RESOURCEGROUPS", Subscription: sub, Limit: 10}
	seen := map[string]bool{}
	pages := 0
	for {
		p, err := s.ListResources(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range p.Items {
			if seen[r.Name] {
				t.Fatalf("%s listed twice", r.Name)
			}
			seen[r.Name] = true
		}
		if p.Next == "" {
			break
		}
		q.After = p.Next
	}
	if len(seen) != n || pages != 6 {
		t.Fatalf("listed %d in %d pages, want %d in 6", len(seen), pages, n)
	}
	count, err := s.CountResources(ctx, meta.Query{Type: "Microsoft.Resources/resourceGroups"})
	if err != nil || count != n+1 {
		t.Fatalf("count = %d, %v", count, err)
	}
	empty, err := s.ListResources(ctx, meta.Query{Type: "Microsoft.Compute/disks"})
	if err != nil || empty.Items == nil || len(empty.Items) != 0 || empty.Next != "" {
		t.Fatalf("empty list = %#v, %v", empty, err)
	}
}

func testDeleteTree(t *testing.T, s meta.Store) {
	ctx := context.Background()
	group := rg(sub, "tree_1")
	sibling := rg(sub, "tree_10")  // shares a prefix but is not beneath
	lookalike := rg(sub, "treex1") // '_' must not act as a wildcard
	disk := meta.Resource{ID: group.ID + "/providers/Microsoft.Compute/disks/d1", Type: "Microsoft.Compute/disks",
		Name: "d1", Subscription: sub, ResourceGroup: "tree_1", Parent: group.ID, Body: json.RawMessage(`{}`), UpdatedAt: t0}
	for _, r := range []meta.Resource{group, sibling, lookalike, disk} {
		if _, err := s.PutResource(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	under, err := s.CountResources(ctx, meta.Query{Under: group.ID})
	if err != nil || under != 1 {
		t.Fatalf("under count = %d, %v", under, err)
	}
	n, err := s.DeleteTree(ctx, group.ID)
	if err != nil || n != 2 {
		t.Fatalf("DeleteTree removed %d, %v; want 2", n, err)
	}
	for _, r := range []meta.Resource{sibling, lookalike} {
		if _, err := s.GetResource(ctx, r.ID); err != nil {
			t.Fatalf("%s went with the tree: %v", r.ID, err)
		}
	}
}

func testRollback(t *testing.T, s meta.Store) {
	ctx := context.Background()
	boom := fmt.Errorf("boom")
	err := s.InTx(ctx, func(tx meta.Tx) error {
		if _, err := tx.PutResource(ctx, rg(sub, "rolled")); err != nil {
			return err
		}
		if err := tx.CreateOperation(ctx, meta.Operation{ID: "op-rolled", Kind: "k", StartedAt: t0, Input: []byte(`{}`)}); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("InTx returned %v", err)
	}
	if _, err := s.GetResource(ctx, rg(sub, "rolled").ID); !errs.Is(err, errs.NotFound) {
		t.Fatalf("rolled-back resource visible: %v", err)
	}
	if _, err := s.GetOperation(ctx, "op-rolled"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("rolled-back operation visible: %v", err)
	}
	err = s.InTx(ctx, func(tx meta.Tx) error {
		_, err := tx.PutResource(ctx, rg(sub, "kept"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetResource(ctx, rg(sub, "kept").ID); err != nil {
		t.Fatal(err)
	}
}

func testOperationLifecycle(t *testing.T, s meta.Store) {
	ctx := context.Background()
	op := meta.Operation{ID: "op1", Kind: "test", ResourceID: "/x", Input: []byte(`{"a":1}`), StartedAt: t0}
	if err := s.CreateOperation(ctx, op); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetOperation(ctx, "op1")
	if err != nil || got.Status != meta.StatusInProgress || string(got.Input) != `{"a":1}` || !got.StartedAt.Equal(t0) {
		t.Fatalf("got %+v, %v", got, err)
	}
	claimed, ok, err := s.ClaimOperation(ctx, "nodeA", t0, time.Minute)
	if err != nil || !ok || claimed.ID != "op1" || claimed.Attempts != 1 || claimed.LeaseOwner != "nodeA" {
		t.Fatalf("claim: %+v %v %v", claimed, ok, err)
	}
	if _, ok, _ := s.ClaimOperation(ctx, "nodeB", t0.Add(time.Second), time.Minute); ok {
		t.Fatal("a leased operation was claimed twice")
	}
	if ok, _ := s.RenewLease(ctx, "op1", "nodeB", t0.Add(time.Hour)); ok {
		t.Fatal("a non-owner renewed the lease")
	}
	if ok, err := s.RenewLease(ctx, "op1", "nodeA", t0.Add(2*time.Minute)); !ok || err != nil {
		t.Fatalf("owner renew: %v %v", ok, err)
	}
	// The lease expires: another node takes over.
	claimed, ok, _ = s.ClaimOperation(ctx, "nodeB", t0.Add(3*time.Minute), time.Minute)
	if !ok || claimed.LeaseOwner != "nodeB" || claimed.Attempts != 2 {
		t.Fatalf("takeover: %+v %v", claimed, ok)
	}
	// A released operation waits for not_before.
	if err := s.ReleaseOperation(ctx, "op1", "nodeB", t0.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.ClaimOperation(ctx, "nodeA", t0.Add(5*time.Minute), time.Minute); ok {
		t.Fatal("claimed before not_before")
	}
	if _, ok, _ := s.ClaimOperation(ctx, "nodeA", t0.Add(11*time.Minute), time.Minute); !ok {
		t.Fatal("not claimable after not_before")
	}
	if err := s.ReleaseLeases(ctx, "nodeA"); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetOperation(ctx, "op1")
	if got.LeaseOwner != "" {
		t.Fatalf("ReleaseLeases kept owner %q", got.LeaseOwner)
	}
	done := meta.Operation{ID: "op1", Status: meta.StatusSucceeded, Result: []byte(`{"ok":true}`), EndedAt: t0.Add(time.Hour)}
	if ok, err := s.FinishOperation(ctx, done); !ok || err != nil {
		t.Fatalf("finish: %v %v", ok, err)
	}
	if ok, _ := s.FinishOperation(ctx, done); ok {
		t.Fatal("finished twice")
	}
	got, _ = s.GetOperation(ctx, "op1")
	if got.Status != meta.StatusSucceeded || string(got.Result) != `{"ok":true}` || !got.EndedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("finished op = %+v", got)
	}
	if _, ok, _ := s.ClaimOperation(ctx, "nodeA", t0.Add(24*time.Hour), time.Minute); ok {
		t.Fatal("a finished operation was claimed")
	}
}

func testClaimExclusive(t *testing.T, s meta.Store) {
	ctx := context.Background()
	const ops = 20
	for i := 0; i < ops; i++ {
		if err := s.CreateOperation(ctx, meta.Operation{ID: fmt.Sprintf("c%02d", i), Kind: "k", Input: []byte(`{}`), StartedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	claims := map[string]string{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(owner string) {
			defer wg.Done()
			for {
				op, ok, err := s.ClaimOperation(ctx, owner, t0, time.Hour)
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				if prev, dup := claims[op.ID]; dup {
					t.Errorf("%s claimed by %s and %s", op.ID, prev, owner)
				}
				claims[op.ID] = owner
				mu.Unlock()
			}
		}(fmt.Sprintf("w%d", w))
	}
	wg.Wait()
	if len(claims) != ops {
		t.Fatalf("claimed %d of %d", len(claims), ops)
	}
}

func testAssignmentIndex(t *testing.T, s meta.Store) {
	ctx := context.Background()
	group := rg(sub, "rbac")
	put := func(id, principal, scope, role string) {
		t.Helper()
		err := s.InTx(ctx, func(tx meta.Tx) error {
			if _, err := tx.PutResource(ctx, meta.Resource{ID: id, Type: "Microsoft.Authorization/roleAssignments",
				Name: id[len(id)-4:], Body: json.RawMessage(`{}`), UpdatedAt: t0}); err != nil {
				return err
			}
			return tx.IndexAssignment(ctx, meta.AssignmentIndex{ID: id, Principal: principal, Scope: scope, RoleID: role})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutResource(ctx, group); err != nil {
		t.Fatal(err)
	}
	put("/providers/Microsoft.Authorization/roleAssignments/a001", "P1", "/", "ROLE-A")
	put(group.ID+"/providers/Microsoft.Authorization/roleAssignments/a002", "p1", group.ID, "role-b")
	put(group.ID+"/providers/Microsoft.Authorization/roleAssignments/a003", "p2", group.ID, "role-b")
	got, err := s.AssignmentsOf(ctx, "P1")
	if err != nil || len(got) != 2 {
		t.Fatalf("AssignmentsOf(P1) = %+v, %v", got, err)
	}
	if got[0].RoleID != "role-a" || got[0].Scope != "/" {
		t.Fatalf("first = %+v", got[0])
	}
	if n, _ := s.CountAssignmentsOfRole(ctx, "ROLE-B"); n != 2 {
		t.Fatalf("CountAssignmentsOfRole = %d", n)
	}
	if _, err := s.DeleteTree(ctx, group.ID); err != nil {
		t.Fatal(err)
	}
	got, _ = s.AssignmentsOf(ctx, "p1")
	if len(got) != 1 {
		t.Fatalf("after DeleteTree p1 has %+v", got)
	}
	if ok, _ := s.DeleteResource(ctx, "/providers/Microsoft.Authorization/roleAssignments/a001"); !ok {
		t.Fatal("delete failed")
	}
	if got, _ = s.AssignmentsOf(ctx, "p1"); len(got) != 0 {
		t.Fatalf("index row outlived its resource: %+v", got)
	}
}

// testPinnedOperation: an operation created leased to its node is run by
// that node at once and by another only once the lease has run out.
func testPinnedOperation(t *testing.T, s meta.Store) {
	ctx := context.Background()
	op := meta.Operation{ID: "pinned", Kind: "k", Input: []byte(`{}`), StartedAt: t0,
		LeaseOwner: "nodeA", LeaseUntil: t0.Add(time.Minute)}
	if err := s.CreateOperation(ctx, op); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.ClaimOperation(ctx, "nodeB", t0.Add(time.Second), time.Minute); ok {
		t.Fatal("another node took a pinned operation")
	}
	got, ok, err := s.ClaimOperation(ctx, "nodeA", t0.Add(time.Second), time.Minute)
	if err != nil || !ok || got.ID != "pinned" || got.Attempts != 1 {
		t.Fatalf("owner claim: %+v %v %v", got, ok, err)
	}
	// Once tried, the pin is an ordinary lease: the owner cannot claim it
	// again while it holds it, and another node can when it lapses.
	if _, ok, _ := s.ClaimOperation(ctx, "nodeA", t0.Add(2*time.Second), time.Minute); ok {
		t.Fatal("the owner claimed its own running operation twice")
	}
	if got, ok, _ := s.ClaimOperation(ctx, "nodeB", t0.Add(2*time.Minute), time.Minute); !ok || got.LeaseOwner != "nodeB" {
		t.Fatalf("takeover after the lease: %+v %v", got, ok)
	}
}

// testLabels: a label finds its resources case-insensitively, a new value
// replaces the old, an empty one removes it, and labels go with their
// resources on delete and on a tree delete.
func testLabels(t *testing.T, s meta.Store) {
	ctx := context.Background()
	group := rg(sub, "labels")
	if _, err := s.PutResource(ctx, group); err != nil {
		t.Fatal(err)
	}
	snap := func(name, family string) string {
		t.Helper()
		id := group.ID + "/providers/Microsoft.Compute/snapshots/" + name
		err := s.InTx(ctx, func(tx meta.Tx) error {
			if _, err := tx.PutResource(ctx, meta.Resource{ID: id, Type: "Microsoft.Compute/snapshots", Name: name,
				Subscription: sub, ResourceGroup: "labels", Parent: group.ID, Body: json.RawMessage(`{}`), UpdatedAt: t0}); err != nil {
				return err
			}
			return tx.SetLabel(ctx, id, "family", family)
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := snap("a", "FAM-1")
	snap("b", "fam-1")
	c := snap("c", "fam-2")
	count := func(value string) int {
		t.Helper()
		n, err := s.CountLabeled(ctx, "family", value)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("Fam-1"); n != 2 {
		t.Fatalf("CountLabeled(fam-1) = %d, want 2", n)
	}
	ids, err := s.FindLabeled(ctx, "family", "fam-2")
	if err != nil || len(ids) != 1 || ids[0] != c {
		t.Fatalf("FindLabeled(fam-2) = %v, %v", ids, err)
	}
	if n, _ := s.CountLabeled(ctx, "other", "fam-1"); n != 0 {
		t.Fatalf("another label's values counted: %d", n)
	}
	if err := s.SetLabel(ctx, c, "family", "fam-1"); err != nil {
		t.Fatal(err)
	}
	if count("fam-1") != 3 || count("fam-2") != 0 {
		t.Fatalf("relabel: fam-1 %d, fam-2 %d", count("fam-1"), count("fam-2"))
	}
	if err := s.SetLabel(ctx, c, "family", ""); err != nil {
		t.Fatal(err)
	}
	if count("fam-1") != 2 {
		t.Fatalf("empty value kept the label: %d", count("fam-1"))
	}
	if _, err := s.DeleteResource(ctx, a); err != nil {
		t.Fatal(err)
	}
	if count("fam-1") != 1 {
		t.Fatalf("label outlived its resource: %d", count("fam-1"))
	}
	// A label written after its resource went is not kept, so it cannot
	// cling to a later resource of the same id.
	if err := s.SetLabel(ctx, a, "family", "fam-9"); err != nil {
		t.Fatal(err)
	}
	snap("a", "fam-3")
	if count("fam-9") != 0 {
		t.Fatalf("a label of a deleted resource was kept: %d", count("fam-9"))
	}
	if _, err := s.DeleteTree(ctx, group.ID); err != nil {
		t.Fatal(err)
	}
	if count("fam-1") != 0 {
		t.Fatalf("label outlived its group: %d", count("fam-1"))
	}
	// A resource created again under a deleted one's id starts unlabelled.
	snapID := group.ID + "/providers/Microsoft.Compute/snapshots/b"
	if _, err := s.PutResource(ctx, meta.Resource{ID: snapID, Type: "Microsoft.Compute/snapshots", Name: "b", Body: json.RawMessage(`{}`), UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if count("fam-1") != 0 {
		t.Fatalf("a recreated resource inherited a label: %d", count("fam-1"))
	}
}

// testBackupInstanceIndex: instances are found by datasource and by vault
// whatever the casing, a re-index replaces the row, a rolled-back index row
// is not there, and the rows go with their resources.
func testBackupInstanceIndex(t *testing.T, s meta.Store) {
	ctx := context.Background()
	group := "/subscriptions/" + sub + "/resourceGroups/bk"
	v1 := group + "/providers/Microsoft.DataProtection/backupVaults/v1"
	v2 := group + "/providers/Microsoft.DataProtection/backupVaults/v2"
	disk := func(n string) string { return group + "/providers/Microsoft.Compute/disks/" + n }
	put := func(tx meta.Tx, vault, name, datasource, state string) error {
		id := vault + "/backupInstances/" + name
		if _, err := tx.PutResource(ctx, meta.Resource{ID: id, Type: "Microsoft.DataProtection/backupVaults/backupInstances",
			Name: name, Parent: vault, Body: json.RawMessage(`{}`), UpdatedAt: t0}); err != nil {
			return err
		}
		return tx.IndexBackupInstance(ctx, meta.BackupInstanceIndex{ID: id, Vault: vault, Datasource: datasource,
			Policy: vault + "/backupPolicies/P1", State: state})
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.InTx(ctx, func(tx meta.Tx) error { return put(tx, v1, "BI-A", disk("Disk1"), "ConfiguringProtection") }))
	must(s.InTx(ctx, func(tx meta.Tx) error { return put(tx, v1, "bi-c", disk("disk3"), "ProtectionConfigured") }))
	must(s.InTx(ctx, func(tx meta.Tx) error { return put(tx, v2, "bi-b", disk("disk2"), "ProtectionConfigured") }))

	got, err := s.BackupInstancesOf(ctx, strings.ToUpper(disk("disk1"))+"/")
	if err != nil || len(got) != 1 || got[0].ID != v1+"/backupInstances/BI-A" || got[0].Vault != strings.ToLower(v1) ||
		got[0].Datasource != strings.ToLower(disk("disk1")) || got[0].Policy != strings.ToLower(v1+"/backupPolicies/p1") {
		t.Fatalf("BackupInstancesOf(disk1) = %+v, %v", got, err)
	}
	// Indexing again replaces the row.
	must(s.InTx(ctx, func(tx meta.Tx) error { return put(tx, v1, "bi-a", disk("disk1"), "ProtectionStopped") }))
	if got, _ := s.BackupInstancesOf(ctx, disk("disk1")); len(got) != 1 || got[0].State != "ProtectionStopped" {
		t.Fatalf("after re-index: %+v", got)
	}
	if got, err := s.BackupInstancesIn(ctx, strings.ToUpper(v1)); err != nil || len(got) != 2 ||
		got[0].ID != v1+"/backupInstances/BI-A" || got[1].ID != v1+"/backupInstances/bi-c" {
		t.Fatalf("BackupInstancesIn(v1) = %+v, %v", got, err)
	}
	boom := fmt.Errorf("boom")
	if err := s.InTx(ctx, func(tx meta.Tx) error {
		if err := put(tx, v2, "rolled", disk("disk9"), "ConfiguringProtection"); err != nil {
			return err
		}
		return boom
	}); err != boom {
		t.Fatalf("InTx returned %v", err)
	}
	if got, err := s.BackupInstancesOf(ctx, disk("disk9")); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("rolled-back index row: %#v, %v", got, err)
	}

	if ok, err := s.DeleteResource(ctx, v1+"/backupInstances/bi-a"); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if got, _ := s.BackupInstancesOf(ctx, disk("disk1")); len(got) != 0 {
		t.Fatalf("index row outlived its resource: %+v", got)
	}
	if _, err := s.DeleteTree(ctx, v2); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.BackupInstancesIn(ctx, v2); len(got) != 0 {
		t.Fatalf("index rows outlived their vault: %+v", got)
	}
	if got, _ := s.BackupInstancesIn(ctx, v1); len(got) != 1 || got[0].Datasource != strings.ToLower(disk("disk3")) {
		t.Fatalf("another vault's rows went: %+v", got)
	}
}

// testTimes: the time index lists by owner and kind in time order both
// ways, pages with After, bounds by From and To, counts, replaces a time,
// removes it on a zero time, and goes with the resource.
func testTimes(t *testing.T, s meta.Store) {
	ctx := context.Background()
	group := rg(sub, "times")
	if _, err := s.PutResource(ctx, group); err != nil {
		t.Fatal(err)
	}
	vault := group.ID + "/providers/Microsoft.DataProtection/backupVaults/v"
	job := func(n int, at time.Time, owner string) string {
		t.Helper()
		id := fmt.Sprintf("%s/backupJobs/j%02d", vault, n)
		err := s.InTx(ctx, func(tx meta.Tx) error {
			if _, err := tx.PutResource(ctx, meta.Resource{ID: id, Type: "Microsoft.DataProtection/backupVaults/backupJobs",
				Name: fmt.Sprintf("j%02d", n), Parent: vault, Body: json.RawMessage(`{}`), UpdatedAt: t0}); err != nil {
				return err
			}
			return tx.SetTime(ctx, id, "job", owner, at)
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, job(i, t0.Add(time.Duration(i)*time.Hour), strings.ToUpper(vault)))
	}
	other := job(9, t0, "/elsewhere")
	list := func(q meta.TimeQuery) []string {
		t.Helper()
		got, err := s.ListTimes(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, g := range got {
			out = append(out, g.ID)
		}
		return out
	}
	if got := list(meta.TimeQuery{Kind: "job", Owner: vault}); !slices.Equal(got, ids) {
		t.Fatalf("ascending = %v", got)
	}
	newest := list(meta.TimeQuery{Kind: "job", Owner: vault, Desc: true, Limit: 2})
	if !slices.Equal(newest, []string{ids[4], ids[3]}) {
		t.Fatalf("newest two = %v", newest)
	}
	next := list(meta.TimeQuery{Kind: "job", Owner: vault, Desc: true, Limit: 2, After: &meta.Timed{ID: ids[3], At: t0.Add(3 * time.Hour)}})
	if !slices.Equal(next, []string{ids[2], ids[1]}) {
		t.Fatalf("second page = %v", next)
	}
	due := list(meta.TimeQuery{Kind: "job", To: t0.Add(time.Hour)})
	if !slices.Equal(due, []string{ids[0], other, ids[1]}) && !slices.Equal(due, []string{other, ids[0], ids[1]}) {
		t.Fatalf("due by t0+1h, any owner = %v", due)
	}
	if n, err := s.CountTimes(ctx, meta.TimeQuery{Kind: "job", Owner: vault, From: t0.Add(time.Hour), To: t0.Add(3 * time.Hour)}); err != nil || n != 3 {
		t.Fatalf("count in [1h, 3h] = %d, %v", n, err)
	}
	if err := s.SetTime(ctx, ids[0], "job", vault, t0.Add(10*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := list(meta.TimeQuery{Kind: "job", Owner: vault, Desc: true, Limit: 1}); !slices.Equal(got, []string{ids[0]}) {
		t.Fatalf("after a new time the newest is %v", got)
	}
	if err := s.SetTime(ctx, ids[0], "job", vault, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountTimes(ctx, meta.TimeQuery{Kind: "job", Owner: vault}); n != 4 {
		t.Fatalf("after removing a time: %d", n)
	}
	if n, _ := s.CountTimes(ctx, meta.TimeQuery{Kind: "other"}); n != 0 {
		t.Fatalf("another kind counted: %d", n)
	}
	if _, err := s.DeleteResource(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteTree(ctx, group.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountTimes(ctx, meta.TimeQuery{Kind: "job"}); n != 0 {
		t.Fatalf("times outlived their resources: %d left", n)
	}
}

// testUnstorableText: text PostgreSQL cannot hold (invalid UTF-8, NUL) is
// the caller's mistake on every backend, never a failed statement.
func testUnstorableText(t *testing.T, s meta.Store) {
	ctx := context.Background()
	if _, err := s.PutResource(ctx, rg(sub, "ok")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"x\xffy", "x\x00y", "\x00\xff"} {
		badRG := rg(sub, bad)
		badBody := rg(sub, "body")
		badBody.Body = []byte(`{"location":"` + bad + `"}`)
		checks := map[string]error{}
		_, checks["GetResource"] = s.GetResource(ctx, badRG.ID)
		_, checks["PutResource id"] = s.PutResource(ctx, badRG)
		_, checks["PutResource body"] = s.PutResource(ctx, badBody)
		_, checks["DeleteResource"] = s.DeleteResource(ctx, badRG.ID)
		_, checks["DeleteTree"] = s.DeleteTree(ctx, badRG.ID)
		_, checks["ListResources after"] = s.ListResources(ctx, meta.Query{Subscription: sub, After: bad})
		_, checks["ListResources group"] = s.ListResources(ctx, meta.Query{ResourceGroup: bad})
		_, checks["CountResources"] = s.CountResources(ctx, meta.Query{Under: badRG.ID})
		_, checks["GetOperation"] = s.GetOperation(ctx, bad)
		_, checks["AssignmentsOf"] = s.AssignmentsOf(ctx, bad)
		for what, err := range checks {
			if !errs.Is(err, errs.Invalid) {
				t.Errorf("%s(%q) = %v, want an Invalid error", what, bad, err)
			}
		}
	}
	if p, err := s.ListResources(ctx, meta.Query{Subscription: sub}); err != nil || len(p.Items) != 1 {
		t.Fatalf("store after refusals: %v %v", p.Items, err)
	}
}
