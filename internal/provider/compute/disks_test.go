package compute

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/snapshot"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/blobapi"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
)

const testSub = "8f1d7c1e-3b7a-4c55-9d43-2f0e6a0b9c11"

// fixture is a disk service over a SQLite store whose operations the test
// runs by hand, so it can run one twice as a crashed node's successor would.
type fixture struct {
	t     *testing.T
	svc   *Service
	clock *clock.Fake
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := meta.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	log := slog.New(slog.DiscardHandler)
	chunks, err := chunk.Open(ctx, "", dir, chunk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chunks.Close() })
	engine := &disk.Engine{Store: store, Clock: clk, Volumes: disk.NewVolumes(filepath.Join(dir, "volumes")),
		Chunks: chunks, InFlight: snapshot.NewInFlight()}
	svc := &Service{
		Store: store, Clock: clk, Ops: ops.New(store, clk, log, ops.Config{}), Disks: engine,
		Signer: blobapi.Signer{Key: make([]byte, 32), Clock: clk},
	}
	t.Cleanup(func() { engine.Volumes.Close() })
	svc.Routes(arm.NewRouter(nil, nil, log, nil))
	group, _ := json.Marshal(groups.Group{ID: groups.ID(testSub, "rg"), Name: "rg", Type: groups.Type,
		Location: "westus", Properties: groups.Properties{ProvisioningState: "Succeeded"}})
	if _, err := store.PutResource(ctx, meta.Resource{ID: groups.ID(testSub, "rg"), Type: groups.Type, Name: "rg",
		Subscription: testSub, Parent: "/subscriptions/" + testSub, Body: group, UpdatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, svc: svc, clock: clk}
}

// call runs a handler as the router would.
func (f *fixture) call(h arm.HandlerFunc, method, name, suffix, body string) (*arm.Response, error) {
	f.t.Helper()
	hr := httptest.NewRequest(method, "https://coffer.test"+DiskID(testSub, "rg", name)+suffix+"?api-version=2025-01-02", strings.NewReader(body))
	return h(context.Background(), &arm.Request{
		HTTP: hr, APIVersion: "2025-01-02", Body: []byte(body), BaseURL: "https://coffer.test",
		Params: map[string]string{"subscriptionId": testSub, "resourceGroupName": "rg", "diskName": name},
	})
}

// operation returns the operation an accepted response points at.
func (f *fixture) operation(resp *arm.Response) meta.Operation {
	f.t.Helper()
	u := resp.Header.Get("Azure-AsyncOperation")
	id := u[strings.LastIndex(u, "/")+1 : strings.Index(u, "?")]
	op, err := f.svc.Store.GetOperation(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return op
}

func (f *fixture) disk(name string) disk.Record {
	f.t.Helper()
	rec, err := disk.Load(context.Background(), f.svc.Store, testSub, "rg", name)
	if err != nil {
		f.t.Fatal(err)
	}
	return rec
}

// TestOperationsRerun runs every disk operation twice, as happens when a
// node dies after the work and before recording it.
func TestOperationsRerun(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	resp, err := f.call(f.svc.put, http.MethodPut, "d1", "", `{"location":"West US","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusAccepted || resp.Body.(disk.Disk).Properties.ProvisioningState != disk.ProvisioningUpdating {
		t.Fatalf("create answered %d %+v", resp.Status, resp.Body)
	}
	create := f.operation(resp)
	for range 2 {
		if _, err := f.svc.runProvision(ctx, create); err != nil {
			t.Fatal(err)
		}
	}
	rec := f.disk("d1")
	if rec.Properties.ProvisioningState != disk.ProvisioningSucceeded {
		t.Fatalf("after provisioning: %s", rec.Properties.ProvisioningState)
	}

	// Grow: a crash after the volume grew and before the row said so.
	resp, err = f.call(f.svc.patch, http.MethodPatch, "d1", "", `{"properties":{"diskSizeGB":3}}`)
	if err != nil {
		t.Fatal(err)
	}
	grow := f.operation(resp)
	if err := f.svc.Disks.Volumes.Ensure(rec.Properties.UniqueID, 3*disk.GiB); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := f.svc.runProvision(ctx, grow); err != nil {
			t.Fatal(err)
		}
	}
	if rec = f.disk("d1"); rec.Properties.ProvisioningState != disk.ProvisioningSucceeded || rec.Properties.DiskSizeBytes != 3*disk.GiB {
		t.Fatalf("after grow: %+v", rec.Properties)
	}

	resp, err = f.call(f.svc.delete, http.MethodDelete, "d1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	del := f.operation(resp)
	for range 2 {
		if _, err := f.svc.runDelete(ctx, del); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(f.svc.Disks.Volumes.Dir(rec.Properties.UniqueID)); !os.IsNotExist(err) {
		t.Fatalf("volume after delete: %v", err)
	}
	if _, err := disk.Load(ctx, f.svc.Store, testSub, "rg", "d1"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("disk after delete: %v", err)
	}
	// The create operation run once more, late, must not bring it back.
	if _, err := f.svc.runProvision(ctx, create); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.svc.Disks.Volumes.Dir(rec.Properties.UniqueID)); !os.IsNotExist(err) {
		t.Fatal("a late provision recreated the volume of a deleted disk")
	}
}

// TestAccessLifecycle follows a grant from beginGetAccess to expiry and
// revocation, through Lookup.
func TestAccessLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	resp, err := f.call(f.svc.put, http.MethodPut, "up", "", `{"location":"westus","properties":{"creationData":{"createOption":"Upload","uploadSizeBytes":20972032}}}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.runProvision(ctx, f.operation(resp)); err != nil {
		t.Fatal(err)
	}
	grantOf := func(access string) (blobapi.Grant, error) {
		resp, err := f.call(f.svc.beginGetAccess, http.MethodPost, "up", "/beginGetAccess", `{"access":"`+access+`","durationInSeconds":60}`)
		if err != nil {
			return blobapi.Grant{}, err
		}
		out, err := f.svc.runGrant(ctx, f.operation(resp))
		if err != nil {
			t.Fatal(err)
		}
		u := out.(AccessURI).AccessSAS
		hr := httptest.NewRequest(http.MethodGet, u, nil)
		g, err := f.svc.Signer.Verify(strings.Split(hr.URL.Path, "/")[2], hr.URL.Query())
		if err != nil {
			t.Fatal(err)
		}
		return g, nil
	}
	if _, err := grantOf("Read"); !errs.Is(err, errs.Conflict) {
		t.Fatalf("read access before the upload: %v", err)
	}
	w, err := grantOf("Write")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.disk("up").Properties.DiskState; got != disk.StateActiveUpload {
		t.Fatalf("state %s", got)
	}
	d, release, err := f.svc.Disks.Lookup(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if d.Size() != 20972032 {
		t.Fatalf("size %d", d.Size())
	}
	release()
	// A read-only grant for the same access id is not the live access.
	if _, _, err := f.svc.Disks.Lookup(ctx, blobapi.Grant{AccessID: w.AccessID, ResourceID: w.ResourceID}); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("read lookup of a write access: %v", err)
	}

	// Expiry revokes: Lookup refuses and the disk settles, now Unattached
	// because its upload window closed.
	f.clock.Advance(61 * time.Second)
	if _, _, err := f.svc.Disks.Lookup(ctx, w); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("lookup after expiry: %v", err)
	}
	resp, err = f.call(f.svc.get, http.MethodGet, "up", "", "")
	if err != nil || resp.Body.(disk.Disk).Properties.DiskState != disk.StateUnattached {
		t.Fatalf("state after expiry: %+v %v", resp, err)
	}
	r, err := grantOf("Read")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := grantOf("Read"); !errs.Is(err, errs.Conflict) {
		t.Fatalf("second grant: %v", err)
	}
	if _, err := f.call(f.svc.endGetAccess, http.MethodPost, "up", "/endGetAccess", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.Disks.Lookup(ctx, r); !errs.Is(err, errs.Forbidden) {
		t.Fatalf("lookup after endGetAccess: %v", err)
	}
	if got := f.disk("up").Properties.DiskState; got != disk.StateUnattached {
		t.Fatalf("state after endGetAccess %s", got)
	}
}

// TestUpdateRules covers PATCH and PUT-on-existing refusals.
func TestUpdateRules(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	resp, err := f.call(f.svc.put, http.MethodPut, "d", "", `{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":2}}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.runProvision(ctx, f.operation(resp)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, method, body string
		kind               errs.Kind
		code               string
	}{
		{"shrink", http.MethodPatch, `{"properties":{"diskSizeGB":1}}`, errs.Invalid, "InvalidParameter"},
		{"move", http.MethodPatch, `{"location":"eastus"}`, errs.Invalid, "InvalidParameter"},
		{"bad sku", http.MethodPatch, `{"sku":{"name":"Tape_LRS"}}`, errs.Invalid, "InvalidParameter"},
		{"change createOption", http.MethodPut, `{"location":"westus","properties":{"creationData":{"createOption":"Upload","uploadSizeBytes":20972032}}}`, errs.Conflict, "PropertyChangeNotAllowed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := f.svc.patch
			if c.method == http.MethodPut {
				h = f.svc.put
			}
			_, err := f.call(h, c.method, "d", "", c.body)
			var e *errs.Error
			if !errs.Is(err, c.kind) || !asErr(err, &e) || e.Code != c.code {
				t.Fatalf("got %v, want %s", err, c.code)
			}
		})
	}
	// PUT on an existing disk is an update: 200, tags replaced.
	resp, err = f.call(f.svc.put, http.MethodPut, "d", "", `{"location":"West US","tags":{"a":"b"},"properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":2}}`)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != http.StatusOK || resp.Body.(disk.Disk).Tags["a"] != "b" {
		t.Fatalf("update by PUT: %d %+v", resp.Status, resp.Body)
	}
}

func asErr(err error, target **errs.Error) bool {
	e, ok := err.(*errs.Error)
	if ok {
		*target = e
	}
	return ok
}

// TestDeleteDuringProvision: a delete that ran while the create's volume
// was being made leaves no orphan volume behind.
func TestDeleteDuringProvision(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	resp, err := f.call(f.svc.put, http.MethodPut, "d", "", `{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`)
	if err != nil {
		t.Fatal(err)
	}
	create := f.operation(resp)
	uid := f.disk("d").Properties.UniqueID
	// The create's handler has read the row and is making the volume...
	if err := f.svc.Disks.Volumes.Ensure(uid, disk.GiB); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Disks.Volumes.Remove(uid); err != nil {
		t.Fatal(err)
	}
	// ...while the delete runs to the end.
	resp, err = f.call(f.svc.delete, http.MethodDelete, "d", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.runDelete(ctx, f.operation(resp)); err != nil {
		t.Fatal(err)
	}
	// The volume the create then makes is removed by the create itself.
	var in provisionInput
	json.Unmarshal(create.Input, &in)
	if err := f.svc.Disks.Volumes.Ensure(in.UniqueID, disk.GiB); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.runProvision(ctx, create); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.svc.Disks.Volumes.Dir(uid)); !os.IsNotExist(err) {
		t.Fatalf("orphan volume: %v", err)
	}
}
