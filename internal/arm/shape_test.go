package arm

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/internal/errs"
)

// TestResponsesTakeTheirVersionsShape: the same body, answered at two
// api-versions, loses exactly what the older version's schema does not
// define, keeps the order it was written in, and is read through a
// discriminated subtype by its objectType.
func TestResponsesTakeTheirVersionsShape(t *testing.T) {
	rt := NewRouter(anyToken{}, nil, discard(), nil)
	v := APIVersions{Provider: "Microsoft.DataProtection", Versions: []string{"2021-01-01", "2024-04-01", "2026-06-01"}}
	const instance = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/backupVaults/{vaultName}/backupInstances/{backupInstanceName}"
	point := `{"id":"x","name":"r","type":"Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints","properties":{"objectType":"AzureBackupDiscreteRecoveryPoint","recoveryPointId":"r","recoveryPointTime":"2026-01-01T00:00:00Z","recoveryPointType":"Full","expiryTime":"2026-02-01T00:00:00Z","recoveryPointState":"Completed","cofferNote":{"kept":true},"recoveryPointDataStoresDetails":[{"id":"d","type":"OperationalStore","expiryTime":"2026-02-01T00:00:00Z","state":"Available","rehydrationStatus":"COMPLETED"}]}}`
	inst := `{"id":"x","name":"i","type":"Microsoft.DataProtection/backupVaults/backupInstances","tags":{"a":"b"},"properties":{"friendlyName":"d","currentProtectionState":"ProtectionConfigured","identityDetails":{"useSystemAssignedIdentity":true},"objectType":"BackupInstance"}}`
	serve := func(body string) HandlerFunc {
		return func(context.Context, *Request) (*Response, error) { return OK(json.RawMessage(body)), nil }
	}
	rt.Handle(Route{Method: "GET", Pattern: instance + "/recoveryPoints/{recoveryPointId}", Versions: v, Action: "a/read", Handler: serve(point)})
	rt.Handle(Route{Method: "GET", Pattern: instance, Versions: v, Action: "a/read", Handler: serve(inst)})
	rt.Handle(Route{Method: "GET", Pattern: instance + "/coffer", Versions: v, Action: "a/read", Handler: serve(inst)})
	base := "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/vault1/backupInstances/inst1"
	cases := []struct {
		name, path, version, want string
	}{
		{"point in its newest shape", base + "/recoveryPoints/r", "2026-06-01", point},
		{"point without expiryTime and state in 2021", base + "/recoveryPoints/r", "2021-01-01",
			`{"id":"x","name":"r","type":"Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints","properties":{"objectType":"AzureBackupDiscreteRecoveryPoint","recoveryPointId":"r","recoveryPointTime":"2026-01-01T00:00:00Z","recoveryPointType":"Full","cofferNote":{"kept":true},"recoveryPointDataStoresDetails":[{"id":"d","type":"OperationalStore","expiryTime":"2026-02-01T00:00:00Z","state":"Available","rehydrationStatus":"COMPLETED"}]}}`},
		{"instance without tags and identityDetails in 2021", base, "2021-01-01",
			`{"id":"x","name":"i","type":"Microsoft.DataProtection/backupVaults/backupInstances","properties":{"friendlyName":"d","currentProtectionState":"ProtectionConfigured","objectType":"BackupInstance"}}`},
		{"a version without its own spec takes the next one's shape", base, "2024-04-01", inst},
		{"a route no spec describes is written as it is", base + "/coffer", "2021-01-01", inst},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", c.path+"?api-version="+c.version, nil)
			req.Header.Set("Authorization", "Bearer good")
			rt.ServeHTTP(rec, req)
			got, _ := io.ReadAll(rec.Body)
			if rec.Code != 200 || strings.TrimSpace(string(got)) != c.want {
				t.Errorf("status %d\n got %s\nwant %s", rec.Code, got, c.want)
			}
		})
	}
}

// TestErrorsTakeTheirProvidersShape: Compute's CloudError defines no
// additionalInfo, so a Compute error does not carry one.
func TestErrorsTakeTheirProvidersShape(t *testing.T) {
	rt := NewRouter(anyToken{}, nil, discard(), nil)
	v := APIVersions{Provider: "Microsoft.Compute", Versions: []string{"2025-01-02"}}
	rt.Handle(Route{Method: "GET", Pattern: "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/disks/{diskName}", Versions: v, Action: "a/read",
		Handler: func(context.Context, *Request) (*Response, error) {
			return nil, errs.E(errs.NotFound, "ResourceNotFound", "gone")
		}})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/g/providers/Microsoft.Compute/disks/d?api-version=2025-01-02", nil)
	req.Header.Set("Authorization", "Bearer good")
	rt.ServeHTTP(rec, req)
	const want = `{"error":{"code":"ResourceNotFound","message":"gone","target":null,"details":[]}}`
	if got := strings.TrimSpace(rec.Body.String()); rec.Code != 404 || got != want {
		t.Errorf("status %d\n got %s\nwant %s", rec.Code, got, want)
	}
}
