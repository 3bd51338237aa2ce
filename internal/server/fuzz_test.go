package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/blobapi"
	"github.com/coffer-backup/coffer/internal/chunk"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
	"github.com/coffer-backup/coffer/internal/provider/authorization"
	"github.com/coffer-backup/coffer/internal/snapshot"
)

const (
	fuzzSub   = "8f1d7c1e-3b7a-4c55-9d43-2f0e6a0b9c11"
	fuzzAdmin = "0b7e6a52-3c55-4d1a-9e0f-1f2d3c4b5a69"
	fuzzRG    = "/subscriptions/" + fuzzSub + "/resourceGroups/rg"
	fuzzVault = fuzzRG + "/providers/Microsoft.DataProtection/backupVaults/v1"
)

// armFixture is the ARM front door wired as Run wires it (same router,
// providers, engines and authorizer) over SQLite in a temporary directory,
// served in-process without a listener. Operations run only when the test
// calls RunDue, so a request costs what the handler does and no more.
type armFixture struct {
	tb      testing.TB
	handler http.Handler
	token   string
	runner  *ops.Runner
}

func newARMFixture(tb testing.TB) *armFixture {
	tb.Helper()
	ctx := context.Background()
	dir := tb.TempDir()
	clk := clock.NewFake(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	log := slog.New(slog.DiscardHandler)
	store, err := meta.Open(ctx, filepath.Join(dir, "meta.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	verifier := auth.Verifier{Key: pub, Clock: clk}
	token, err := auth.Signer{Key: priv, Clock: clk}.Mint(fuzzAdmin, "admin", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}

	runner := ops.New(store, clk, log, ops.Config{Owner: "fuzz"})
	authz := &authorization.Service{Store: store, Clock: clk}
	if err := authz.Bootstrap(ctx, fuzzAdmin); err != nil {
		tb.Fatal(err)
	}
	volumes := disk.NewVolumes(filepath.Join(dir, VolumeDir))
	tb.Cleanup(func() { volumes.Close() })
	chunks, err := chunk.Open(ctx, "", dir, chunk.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { chunks.Close() })
	plane, err := wire(ctx, planeParts{Store: store, Clock: clk, Runner: runner, Authz: authz, Verifier: verifier,
		Volumes: volumes, Chunks: chunks, InFlight: snapshot.NewInFlight(), SASKey: make([]byte, blobapi.MinKeyLen),
		TenantID: fuzzAdmin, Log: log})
	if err != nil {
		tb.Fatal(err)
	}
	engine := plane.engine
	router := plane.router
	tb.Cleanup(engine.WaitHydration)
	return &armFixture{tb: tb, handler: router, token: token, runner: runner}
}

// do sends one request and returns the recorded answer.
func (f *armFixture) do(method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "https://coffer.test"+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, req)
	return w
}

// mustPut creates a resource and runs the operation it started, failing
// the test unless it ends up there.
func (f *armFixture) mustPut(path, body string) {
	f.tb.Helper()
	if w := f.do(http.MethodPut, path, body); w.Code >= 300 {
		f.tb.Fatalf("PUT %s: %d %s", path, w.Code, w.Body)
	}
	if _, err := f.runner.RunDue(context.Background()); err != nil {
		f.tb.Fatal(err)
	}
	if w := f.do(http.MethodGet, path, ""); w.Code != http.StatusOK {
		f.tb.Fatalf("GET %s after PUT: %d %s", path, w.Code, w.Body)
	}
}

// putTarget is one resource type whose PUT body the fuzzer writes: its path
// (with %s for a name chosen per body) and seed bodies.
type putTarget struct {
	name, path, version string
	seeds               []string
}

const (
	fuzzPolicy = `{"properties":{"objectType":"BackupPolicy","datasourceTypes":["Microsoft.Compute/disks"],"policyRules":[` +
		`{"objectType":"AzureBackupRule","name":"BackupHourly","backupParameters":{"objectType":"AzureBackupParams","backupType":"Incremental"},` +
		`"dataStore":{"objectType":"DataStoreInfoBase","dataStoreType":"OperationalStore"},"trigger":{"objectType":"ScheduleBasedTriggerContext",` +
		`"schedule":{"repeatingTimeIntervals":["R/2021-05-20T22:00:00+00:00/PT4H"],"timeZone":"UTC"},` +
		`"taggingCriteria":[{"isDefault":true,"taggingPriority":99,"tagInfo":{"tagName":"Default"}}]}},` +
		`{"objectType":"AzureRetentionRule","name":"Default","isDefault":true,"lifecycles":[{"sourceDataStore":{"objectType":"DataStoreInfoBase",` +
		`"dataStoreType":"OperationalStore"},"deleteAfter":{"objectType":"AbsoluteDeleteOption","duration":"P7D"},"targetDataStoreCopySettings":[]}]}]}}`
	fuzzInstance = `{"properties":{"objectType":"BackupInstance","friendlyName":"d1","dataSourceInfo":{"objectType":"Datasource",` +
		`"datasourceType":"Microsoft.Compute/disks","resourceID":"` + fuzzRG + `/providers/Microsoft.Compute/disks/d1","resourceName":"d1",` +
		`"resourceType":"Microsoft.Compute/disks","resourceLocation":"westus","resourceUri":""},"policyInfo":{"policyId":"` + fuzzVault +
		`/backupPolicies/p1","policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters",` +
		`"dataStoreType":"OperationalStore","resourceGroupId":"` + fuzzRG + `"}]}}}}`
)

var putTargets = []putTarget{
	{"disk", fuzzRG + "/providers/Microsoft.Compute/disks/%s", "2025-01-02", []string{
		`{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`,
		`{"location":"westus","sku":{"name":"Premium_LRS"},"properties":{"creationData":{"createOption":"Copy","sourceResourceId":"` + fuzzRG + `/providers/Microsoft.Compute/snapshots/s1"}}}`,
		`{"location":"westus","properties":{"creationData":{"createOption":"Upload","uploadSizeBytes":1074790400}}}`,
		`{"location":"westus","tags":{"a":"b"},"properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":-1}}`,
	}},
	{"snapshot", fuzzRG + "/providers/Microsoft.Compute/snapshots/%s", "2025-01-02", []string{
		`{"location":"westus","properties":{"incremental":true,"creationData":{"createOption":"Copy","sourceResourceId":"` + fuzzRG + `/providers/Microsoft.Compute/disks/d1"}}}`,
		`{"location":"westus","properties":{"incremental":false,"creationData":{"createOption":"CopyStart","sourceResourceId":"/subscriptions/x"}}}`,
	}},
	{"resource group", "/subscriptions/" + fuzzSub + "/resourceGroups/%s", "2021-04-01", []string{
		`{"location":"westus"}`, `{"location":"westus","tags":{"k":"v"},"managedBy":"x"}`, `{"location":""}`,
	}},
	{"vault", fuzzRG + "/providers/Microsoft.DataProtection/backupVaults/v%s", "2025-07-01", []string{
		`{"location":"westus","identity":{"type":"SystemAssigned"},"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`,
		`{"location":"westus","identity":{"type":"None"},"properties":{"storageSettings":[]}}`,
	}},
	{"policy", fuzzVault + "/backupPolicies/%s", "2025-07-01", []string{
		fuzzPolicy,
		strings.Replace(fuzzPolicy, "PT4H", "P1D", 1),
		strings.Replace(fuzzPolicy, "P7D", "P2Y", 1),
	}},
	{"backup instance", fuzzVault + "/backupInstances/%s", "2025-07-01", []string{
		fuzzInstance,
		strings.Replace(fuzzInstance, "/disks/d1", "/disks/nope", 1),
	}},
	{"role assignment", fuzzRG + "/providers/Microsoft.Authorization/roleAssignments/aaaaaaaa-0000-0000-0000-00000000000%s", "2022-04-01", []string{
		`{"properties":{"roleDefinitionId":"/subscriptions/` + fuzzSub + `/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c","principalId":"3f2504e0-4f89-11d3-9a0c-0305e82c3301","principalType":"ServicePrincipal"}}`,
		`{"properties":{"roleDefinitionId":"b24988ac-6180-42a0-ab88-20f7382dd24c","principalId":"x","condition":"@Resource"}}`,
	}},
	{"role definition", "/subscriptions/" + fuzzSub + "/providers/Microsoft.Authorization/roleDefinitions/bbbbbbbb-0000-0000-0000-00000000000%s", "2022-04-01", []string{
		`{"properties":{"roleName":"Disk Looker","description":"Reads disks.","type":"CustomRole","permissions":[{"actions":["Microsoft.Compute/disks/read"],"notActions":[],"dataActions":[],"notDataActions":[]}],"assignableScopes":["/subscriptions/` + fuzzSub + `"]}}`,
		`{"properties":{"roleName":"","permissions":[{"actions":["*"]}],"assignableScopes":["/"]}}`,
	}},
}

// FuzzARMPutBodies sends fuzzed JSON bodies to the PUT of every resource
// type through the real router, authorizer and providers. Whatever the body,
// the answer is never a 5xx, and every refusal is a CloudError with a code.
func FuzzARMPutBodies(f *testing.F) {
	for i, t := range putTargets {
		for _, s := range t.seeds {
			f.Add(uint8(i), s)
		}
		f.Add(uint8(i), `{}`)
		f.Add(uint8(i), `{"properties":null}`)
	}
	f.Add(uint8(0), `[`)
	f.Add(uint8(4), `{"properties":{"policyRules":[{"objectType":"AzureBackupRule","trigger":{"schedule":{"repeatingTimeIntervals":["R/x/PT1H"]}}}]}}`)

	fx := newARMFixture(f)
	// What the bodies refer to: a group, a vault, a policy and a disk.
	fx.mustPut(fuzzRG+"?api-version=2021-04-01", `{"location":"westus"}`)
	fx.mustPut(fuzzVault+"?api-version=2025-07-01", putTargets[3].seeds[0])
	fx.mustPut(fuzzVault+"/backupPolicies/p1?api-version=2025-07-01", fuzzPolicy)
	fx.mustPut(fuzzRG+"/providers/Microsoft.Compute/disks/d1?api-version=2025-01-02", putTargets[0].seeds[0])

	f.Fuzz(func(t *testing.T, kind uint8, body string) {
		target := putTargets[int(kind)%len(putTargets)]
		// A few names per type, so bodies both create and update.
		h := fnv.New32a()
		h.Write([]byte(body))
		name := fmt.Sprintf("%d", h.Sum32()%4)
		if target.name != "role assignment" && target.name != "role definition" {
			name = "fz" + name
		}
		path := fmt.Sprintf(target.path, name) + "?api-version=" + target.version
		w := fx.do(http.MethodPut, path, body)
		checkARMAnswer(t, "PUT "+target.name, w)
	})
}

// checkARMAnswer fails unless w is below 500 and, when a refusal, a
// CloudError naming a code.
func checkARMAnswer(t *testing.T, what string, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 500 {
		t.Fatalf("%s: %d %s", what, w.Code, w.Body)
	}
	if w.Code < 400 {
		return
	}
	var ce arm.CloudError
	if err := json.Unmarshal(w.Body.Bytes(), &ce); err != nil || ce.Error.Code == "" || ce.Error.Message == "" {
		t.Fatalf("%s: %d with a body that is no CloudError (%v): %s", what, w.Code, err, w.Body)
	}
}
