package e2e

import (
	"testing"

	"github.com/google/uuid"
)

// TestGoldenBodies pins one body of each resource type, each operation
// status and the CloudError shape to a golden file, fetched by plain HTTP:
// the SDK's models drop fields they do not know, and a stray or renamed
// field is exactly what this test is for. The bodies do not depend on the
// metadata store, so SQLite alone records them.
func TestGoldenBodies(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	subPath := "/subscriptions/" + sub
	const (
		rgAPI   = "?api-version=2021-04-01"
		authAPI = "?api-version=2022-04-01"
		dpAPI   = "?api-version=2026-06-01"
	)
	get := func(name, url string) {
		t.Helper()
		_, body := s.mustDo("GET", url, admin, "", 200)
		golden(t, name, []byte(body))
	}
	for _, g := range []string{"disks", "vaults", "snaps"} {
		s.createGroup(admin, sub, g)
	}
	get("resource_group", subPath+"/resourceGroups/disks"+rgAPI)

	disk := subPath + "/resourceGroups/disks/providers/Microsoft.Compute/disks/d1"
	s.createDisk(admin, disk, "westus", 1)
	get("disk", disk+computeAPI)

	snapshot := subPath + "/resourceGroups/snaps/providers/Microsoft.Compute/snapshots/s1"
	monitor := s.snapshotNow(admin, disk, snapshot)
	if st := s.waitOperation(admin, monitor); st["status"] != "Succeeded" {
		t.Fatalf("snapshot: %v", st)
	}
	get("compute_operation_status", monitor)
	get("snapshot", snapshot+computeAPI)

	vault := subPath + "/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/v1"
	h, _ := s.mustDo("PUT", vault+dpAPI, admin, `{"location":"westus","identity":{"type":"SystemAssigned"},
		"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`, 201)
	if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
		t.Fatalf("vault: %v", st)
	}
	get("dataprotection_operation_status", h.Get("Azure-AsyncOperation"))
	get("backup_vault", vault+dpAPI)
	_, body := s.mustDo("GET", vault+dpAPI, admin, "", 200)
	principal := at(jsonOf(t, body), "identity", "principalId").(string)

	policy := vault + "/backupPolicies/p1"
	s.mustDo("PUT", policy+dpAPI, admin, `{"properties":{"datasourceTypes":["Microsoft.Compute/disks"],"objectType":"BackupPolicy","policyRules":[
		 {"backupParameters":{"backupType":"Incremental","objectType":"AzureBackupParams"},"name":"BackupHourly","objectType":"AzureBackupRule",
		  "dataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"},
		  "trigger":{"objectType":"ScheduleBasedTriggerContext","schedule":{"repeatingTimeIntervals":["R/2021-05-20T22:00:00+00:00/PT4H"]},
		   "taggingCriteria":[{"isDefault":true,"taggingPriority":99,"tagInfo":{"tagName":"Default"}}]}},
		 {"isDefault":true,"name":"Default","objectType":"AzureRetentionRule","lifecycles":[{"deleteAfter":{"duration":"P7D","objectType":"AbsoluteDeleteOption"},
		   "sourceDataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"}}]}]}}`, 200)
	get("backup_policy", policy+dpAPI)

	assignment := disk + "/providers/Microsoft.Authorization/roleAssignments/" + uuid.NewString()
	s.mustDo("PUT", assignment+authAPI, admin, `{"properties":{"roleDefinitionId":"`+authorizationProvider+diskBackupReaderRole+
		`","principalId":"`+principal+`","principalType":"ServicePrincipal"}}`, 201)
	get("role_assignment", assignment+authAPI)
	s.mustDo("PUT", subPath+"/resourceGroups/snaps/providers/Microsoft.Authorization/roleAssignments/"+uuid.NewString()+authAPI, admin,
		`{"properties":{"roleDefinitionId":"`+authorizationProvider+diskSnapshotContrib+`","principalId":"`+principal+`","principalType":"ServicePrincipal"}}`, 201)

	bi := vault + "/backupInstances/d1-1"
	h, _ = s.mustDo("PUT", bi+dpAPI, admin, `{"properties":{"objectType":"BackupInstance",
		"dataSourceInfo":{"objectType":"Datasource","resourceID":"`+disk+`","resourceType":"Microsoft.Compute/disks","datasourceType":"Microsoft.Compute/disks"},
		"policyInfo":{"policyId":"`+policy+`","policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters","dataStoreType":"OperationalStore","resourceGroupId":"`+subPath+`/resourceGroups/snaps"}]}}}}`, 201)
	if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
		t.Fatalf("configure protection: %v", st)
	}
	get("backup_instance", bi+dpAPI)

	role := subPath + authorizationProvider + uuid.NewString()
	s.mustDo("PUT", role+authAPI, admin, `{"properties":{"roleName":"Disk Looker","description":"Reads disks.","type":"CustomRole",
		"permissions":[{"actions":["Microsoft.Compute/disks/read"],"notActions":[]}],"assignableScopes":["`+subPath+`"]}}`, 201)
	get("role_definition_custom", role+authAPI)

	code, _, body := s.do("GET", subPath+"/resourceGroups/disks/providers/Microsoft.Compute/disks/missing"+computeAPI, admin, "")
	if code != 404 {
		t.Fatalf("missing disk: %d %s", code, body)
	}
	golden(t, "cloud_error_404", []byte(body))
	code, _, body = s.do("PUT", subPath+"/resourceGroups/disks/providers/Microsoft.Compute/disks/bad"+computeAPI, admin,
		`{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":-1}}`)
	if code != 400 {
		t.Fatalf("negative disk size: %d %s", code, body)
	}
	golden(t, "cloud_error_400", []byte(body))
}
