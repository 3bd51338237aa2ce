package e2e

import (
	"strings"
	"testing"
)

// TestDataProtectionDatasourceID: a disk is one datasource however its id
// is spelled. With a trailing '/' or other casing the id still names the
// protected disk, so a second vault may not protect it (hardening finding
// 5: it could, and one disk had two backup instances); once the first
// instance is gone, it may.
func TestDataProtectionDatasourceID(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testDatasourceID(t, startServer(t, b.db(t))) })
	}
}

func testDatasourceID(t *testing.T, s *server) {
	admin := s.token()
	subPath := "/subscriptions/" + newSubscription()
	const v26 = "?api-version=2026-06-01"
	for _, g := range []string{"disks", "vaults", "snaps"} {
		s.mustDo("PUT", subPath+"/resourceGroups/"+g+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
	}
	disk := subPath + "/resourceGroups/disks/providers/Microsoft.Compute/disks/d1"
	s.createDisk(admin, disk, "westus", 1)
	vaultOf := func(name string) string {
		vault := subPath + "/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/" + name
		h, _ := s.mustDo("PUT", vault+v26, admin, `{"location":"westus","identity":{"type":"SystemAssigned"},"properties":{}}`, 201)
		s.poll(h.Get("Azure-AsyncOperation"), admin)
		s.mustDo("PUT", vault+"/backupPolicies/p1"+v26, admin, `{"properties":{"datasourceTypes":["Microsoft.Compute/disks"],"objectType":"BackupPolicy","policyRules":[
		 {"backupParameters":{"backupType":"Incremental","objectType":"AzureBackupParams"},"name":"BackupHourly","objectType":"AzureBackupRule",
		  "dataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"},
		  "trigger":{"objectType":"ScheduleBasedTriggerContext","schedule":{"repeatingTimeIntervals":["R/2021-05-20T22:00:00+00:00/PT4H"]},
		   "taggingCriteria":[{"isDefault":true,"taggingPriority":99,"tagInfo":{"tagName":"Default"}}]}},
		 {"isDefault":true,"name":"Default","objectType":"AzureRetentionRule","lifecycles":[{"deleteAfter":{"duration":"P7D","objectType":"AbsoluteDeleteOption"},
		   "sourceDataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"}}]}]}}`, 200)
		return vault
	}
	instance := func(vault, diskID string) string {
		return `{"objectType":"BackupInstance",
		"dataSourceInfo":{"objectType":"Datasource","resourceID":"` + diskID + `","resourceType":"Microsoft.Compute/disks","datasourceType":"Microsoft.Compute/disks"},
		"policyInfo":{"policyId":"` + vault + `/backupPolicies/p1","policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters","dataStoreType":"OperationalStore","resourceGroupId":"` + subPath + `/resourceGroups/snaps"}]}}}`
	}
	v1, v2 := vaultOf("v1"), vaultOf("v2")
	first := v1 + "/backupInstances/first"
	h, _ := s.mustDo("PUT", first+v26, admin, `{"properties":`+instance(v1, disk)+`}`, 201)
	s.poll(h.Get("Azure-AsyncOperation"), admin)

	refused := func(what string, code int, body string) {
		t.Helper()
		if code != 400 || at(jsonOf(t, body), "error", "code") != "UserErrorDppDatasourceAlreadyProtected" ||
			!strings.Contains(body, "protected under the Backup vault "+v1+".") {
			t.Fatalf("%s: %d %s", what, code, body)
		}
	}
	for _, spelling := range []string{disk + "/", strings.ToUpper(disk), strings.ToLower(disk) + "/"} {
		code, _, body := s.do("PUT", v2+"/backupInstances/second"+v26, admin, `{"properties":`+instance(v2, spelling)+`}`)
		refused("PUT "+spelling, code, body)
		code, _, body = s.do("POST", v2+"/validateForBackup"+v26, admin, `{"backupInstance":`+instance(v2, spelling)+`}`)
		refused("validateForBackup "+spelling, code, body)
	}
	s.mustDo("GET", v2+"/backupInstances/second"+v26, admin, "", 404)

	// The instance itself may be written with the other spelling; it keeps
	// one canonical id.
	h, _ = s.mustDo("PUT", first+v26, admin, `{"properties":`+instance(v1, disk+"/")+`}`, 200)
	s.poll(h.Get("Azure-AsyncOperation"), admin)
	_, body := s.mustDo("GET", first+v26, admin, "", 200)
	if got := at(jsonOf(t, body), "properties", "dataSourceInfo", "resourceID"); got != disk {
		t.Fatalf("stored resourceID %v, want %s", got, disk)
	}

	// Once the first instance is deleted, another vault may protect the disk.
	h, _ = s.mustDo("DELETE", first+v26, admin, "", 202)
	if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
		t.Fatalf("delete: %v", st)
	}
	s.mustDo("PUT", v2+"/backupInstances/second"+v26, admin, `{"properties":`+instance(v2, disk+"/")+`}`, 201)
}
