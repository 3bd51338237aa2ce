package e2e

import (
	"net/url"
	"strings"
	"testing"
)

// TestSchemaCheckCatches shows the response check fails what it must: a
// property the version does not define, a discriminated subtype's unknown
// property, a wrong objectType, and passes the same bodies in the version
// that defines them.
func TestSchemaCheckCatches(t *testing.T) {
	cat, err := loadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	const bi = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/v/backupInstances/i"
	instance := func(extra string) string {
		return `{"id":"` + bi + `","name":"i","type":"Microsoft.DataProtection/backupVaults/backupInstances",` + extra + `"properties":{"objectType":"BackupInstance","friendlyName":"d",
			"dataSourceInfo":{"objectType":"Datasource","resourceID":"/x","datasourceType":"Microsoft.Compute/disks"},
			"policyInfo":{"policyId":"/p"}}}`
	}
	rp := func(objectType, extra string) string {
		return `{"id":"` + bi + `/recoveryPoints/r","name":"r","type":"Microsoft.DataProtection/backupVaults/backupInstances/recoveryPoints",
			"properties":{"objectType":"` + objectType + `","recoveryPointTime":"2026-01-01T00:00:00Z","recoveryPointDataStoresDetails":[]` + extra + `}}`
	}
	rg := func(extra string) string {
		return `{"id":"/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/g","name":"g","type":"Microsoft.Resources/resourceGroups",` + extra + `"location":"westus","properties":{"provisioningState":"Succeeded"}}`
	}
	cases := []struct {
		name, version, path, body string
		status                    int
		wantProblem               string // "" for a pass
	}{
		{"instance 2026", "2026-06-01", bi, instance(`"tags":{"a":"b"},`), 200, ""},
		{"instance tags in 2021", "2021-01-01", bi, instance(`"tags":{"a":"b"},`), 200, "tags"},
		{"instance 2021", "2021-01-01", bi, instance(""), 200, ""},
		{"point 2026", "2026-06-01", bi + "/recoveryPoints/r", rp("AzureBackupDiscreteRecoveryPoint", `,"expiryTime":"2026-02-01T00:00:00Z"`), 200, ""},
		{"point expiryTime in 2021", "2021-01-01", bi + "/recoveryPoints/r", rp("AzureBackupDiscreteRecoveryPoint", `,"expiryTime":"2026-02-01T00:00:00Z"`), 200, "expiryTime"},
		{"point unknown objectType", "2026-06-01", bi + "/recoveryPoints/r", rp("azureBackupDiscreteRecoveryPoint", ""), 200, "objectType"},
		{"point with coffer's own property", "2026-06-01", bi + "/recoveryPoints/r", rp("AzureBackupDiscreteRecoveryPoint", `,"cofferNote":{"a":1}`), 200, ""},
		{"point unknown property", "2026-06-01", bi + "/recoveryPoints/r", rp("AzureBackupDiscreteRecoveryPoint", `,"bogus":1`), 200, "bogus"},
		{"cloud error", "2026-06-01", bi, `{"error":{"code":"NotFound","message":"m","target":null,"details":[],"additionalInfo":[]}}`, 404, ""},
		{"tenant role definition is not read as a role assignment", "2022-04-01", "/providers/Microsoft.Authorization/roleDefinitions/b50d9833-a0cb-478e-945f-707fcc997c13",
			`{"id":"/providers/Microsoft.Authorization/roleDefinitions/b50d9833-a0cb-478e-945f-707fcc997c13","name":"b50d9833-a0cb-478e-945f-707fcc997c13","type":"Microsoft.Authorization/roleDefinitions",
			"properties":{"roleName":"r","type":"BuiltInRole","description":"d","assignableScopes":["/"],"permissions":[{"actions":["*/read"],"notActions":[]}]}}`, 200, ""},
		{"cloud error extra", "2026-06-01", bi, `{"error":{"code":"NotFound","message":"m","extra":1}}`, 404, "extra"},
		// Resource groups have no /providers/ segment: Microsoft.Resources' spec describes them.
		{"resource group", "2025-04-01", "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/g", rg(""), 200, ""},
		{"resource group unknown property", "2025-04-01", "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/g", rg(`"bogus":1,`), 200, "bogus"},
		{"resource group list", "2025-04-01", "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups", `{"value":[` + rg("") + `]}`, 200, ""},
		{"resource group cloud error extra", "2025-04-01", "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/g", `{"error":{"code":"ResourceGroupNotFound","message":"m","extra":1}}`, 404, "extra"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, _ := url.Parse("https://h" + c.path + "?api-version=" + c.version)
			got := cat.check("GET", u, c.status, "application/json; charset=utf-8", []byte(c.body))
			switch {
			case c.wantProblem == "" && got != "":
				t.Errorf("want a pass, got %s", got)
			case c.wantProblem != "" && !strings.Contains(got, c.wantProblem):
				t.Errorf("want a problem naming %q, got %q", c.wantProblem, got)
			}
		})
	}
}
