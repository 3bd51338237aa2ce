package e2e

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

const dp = "?api-version=2021-01-01"

// jsonOf decodes a response body for field assertions.
func jsonOf(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not JSON: %q", body)
	}
	return m
}

// at walks a decoded JSON value by keys and indexes.
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// mustDo sends a request and checks the status.
func (s *server) mustDo(method, path, token, body string, want int) (http.Header, string) {
	s.t.Helper()
	code, h, resp := s.do(method, path, token, body)
	if code != want {
		s.t.Fatalf("%s %s: %d, want %d: %s", method, path, code, want, resp)
	}
	return h, resp
}

// poll GETs a status monitor until it leaves Inprogress.
func (s *server) poll(url, token string) map[string]any {
	s.t.Helper()
	defer s.record.polling()()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := s.mustDo("GET", url, token, "", 200)
		m := jsonOf(s.t, body)
		if st := m["status"]; st != "Inprogress" && st != "InProgress" {
			return m
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("operation still running: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// createDisk makes an empty managed disk and waits until it is provisioned.
func (s *server) createDisk(token, id, location string, sizeGB int) {
	s.t.Helper()
	code, _, body := s.do("PUT", id+"?api-version=2025-01-02", token,
		`{"location":"`+location+`","sku":{"name":"Standard_LRS"},"properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":`+itoa(sizeGB)+`}}`)
	if code != 200 && code != 201 && code != 202 {
		s.t.Fatalf("create disk: %d %s", code, body)
	}
	defer s.record.polling()()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, body := s.mustDo("GET", id+"?api-version=2025-01-02", token, "", 200)
		if at(jsonOf(s.t, body), "properties", "provisioningState") == "Succeeded" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatal("disk never provisioned")
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

var operationURL = regexp.MustCompile(`^https://[^/]+/subscriptions/([0-9a-f-]{36})/providers/Microsoft\.DataProtection/locations/westus/(operationStatus|operationResults)/([A-Za-z0-9_=-]+)\?api-version=2021-01-01$`)

// TestSeedReplay replays every exchange of the Microsoft Learn article
// "Back up Azure Disks using Azure Data Protection REST API" at api-version
// 2021-01-01 with its bodies verbatim (ids substituted), on both stores.
func TestSeedReplay(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			// A small delay on every operation lets the first status poll
			// see it in progress, as the article does.
			testSeedReplay(t, startServer(t, b.db(t), "--debug-operation-delay", "700ms"))
		})
	}
}

func testSeedReplay(t *testing.T, s *server) {
	s.record = &transcript{}
	admin := s.token()
	sub := newSubscription()
	subPath := "/subscriptions/" + sub
	for _, g := range []string{"RG-DiskBackup", "TestBkpVaultRG", "snapshot-rg"} {
		s.mustDo("PUT", subPath+"/resourcegroups/"+g+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
	}
	disk := subPath + "/resourceGroups/RG-DiskBackup/providers/Microsoft.Compute/disks/msdiskbackup"
	s.createDisk(admin, disk, "westUS", 1)
	vault := subPath + "/resourceGroups/TestBkpVaultRG/providers/Microsoft.DataProtection/backupVaults/testBkpVault"
	snapshotRG := subPath + "/resourcegroups/snapshot-rg"

	// Prerequisites: the vault (with its identity) and the disk policy, as the
	// linked how-tos create them.
	h, body := s.mustDo("PUT", vault+dp, admin, `{"location":"westus","identity":{"type":"systemAssigned"},
		"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`, 201)
	if h.Get("Azure-AsyncOperation") == "" || h.Get("Location") == "" || at(jsonOf(t, body), "properties", "provisioningState") != "Provisioning" {
		t.Fatalf("vault PUT headers: %v", h)
	}
	s.poll(h.Get("Azure-AsyncOperation"), admin)
	_, body = s.mustDo("GET", vault+dp, admin, "", 200)
	v := jsonOf(t, body)
	principal, _ := at(v, "identity", "principalId").(string)
	if _, err := uuid.Parse(principal); err != nil || at(v, "identity", "type") != "SystemAssigned" || at(v, "identity", "tenantId") == nil ||
		at(v, "properties", "provisioningState") != "Succeeded" {
		t.Fatalf("vault: %s", body)
	}
	_, body = s.mustDo("PUT", vault+"/backupPolicies/DiskBackup-Policy"+dp, admin, `{"properties":{
		"datasourceTypes":["Microsoft.Compute/disks"],"objectType":"BackupPolicy",
		"policyRules":[{"backupParameters":{"backupType":"Incremental","objectType":"AzureBackupParams"},
		  "trigger":{"schedule":{"repeatingTimeIntervals":["R/2021-05-20T22:00:00+00:00/PT4H"]},
		    "taggingCriteria":[{"isDefault":true,"taggingPriority":99,"tagInfo":{"tagName":"Default"}}],
		    "objectType":"ScheduleBasedTriggerContext"},
		  "dataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"},
		  "name":"BackupHourly","objectType":"AzureBackupRule"},
		 {"isDefault":true,"lifecycles":[{"deleteAfter":{"duration":"P7D","objectType":"AbsoluteDeleteOption"},
		   "sourceDataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"}}],
		  "name":"Default","objectType":"AzureRetentionRule"}]}}`, 200)
	if at(jsonOf(t, body), "properties", "policyRules", 0, "trigger", "taggingCriteria", 0, "tagInfo", "id") != "Default_" {
		t.Fatalf("policy: %s", body)
	}

	// The article's request body, ids substituted.
	instance := `{
        "dataSourceInfo": {
          "datasourceType": "Microsoft.Compute/disks",
          "objectType": "Datasource",
          "resourceID": "` + disk + `",
          "resourceLocation": "westUS",
          "resourceName": "msdiskbackup",
          "resourceType": "Microsoft.Compute/disks",
          "resourceUri": ""
        },
        "policyInfo": {
          "policyId": "` + vault + `/backupPolicies/DiskBackup-Policy",
          "policyParameters": {
            "dataStoreParametersList": [
              {
                "dataStoreType": "OperationalStore",
                "objectType": "AzureOperationalStoreParameters",
                "resourceGroupId": "` + snapshotRG + `"
              }
            ]
          }
        },
        "objectType": "BackupInstance"
      }`
	validate := func() (string, string) {
		t.Helper()
		h, body := s.mustDo("POST", strings.Replace(vault, "/subscriptions/", "/Subscriptions/", 1)+"/validateForBackup"+dp, admin,
			`{"backupInstance": `+instance+`}`, 202)
		if body != "" || h.Get("Retry-After") != "10" {
			t.Fatalf("202: body %q Retry-After %q", body, h.Get("Retry-After"))
		}
		async, loc := h.Get("Azure-AsyncOperation"), h.Get("Location")
		ma, ml := operationURL.FindStringSubmatch(async), operationURL.FindStringSubmatch(loc)
		if ma == nil || ml == nil || ma[2] != "operationStatus" || ml[2] != "operationResults" || ma[3] != ml[3] || ma[1] != sub {
			t.Fatalf("LRO headers:\n Azure-AsyncOperation: %s\n Location: %s", async, loc)
		}
		if !strings.HasSuffix(strings.TrimRight(ma[3], "="), "") || !strings.Contains(ma[3], "=") && len(ma[3])%4 != 0 {
			t.Fatalf("operation id %q is not base64", ma[3])
		}
		return async, ma[3]
	}

	// Validate without the roles: in progress, then failed naming the missing action.
	async, opID := validate()
	_, body = s.mustDo("GET", async, admin, "", 200)
	st := jsonOf(t, body)
	wantID := subPath + "/providers/Microsoft.DataProtection/locations/westus/operationStatus/" + opID
	if st["status"] != "Inprogress" || st["endTime"] != "0001-01-01T00:00:00" || st["id"] != wantID || st["name"] != opID {
		t.Fatalf("first poll: %s", body)
	}
	if _, err := time.Parse(time.RFC3339Nano, st["startTime"].(string)); err != nil {
		t.Fatalf("startTime: %v", st["startTime"])
	}
	st = s.poll(async, admin)
	info := at(st, "error", "additionalInfo", 0, "info")
	detail, _ := at(info, "innerError", "additionalInfo", "DetailedNonLocalisedMessage").(string)
	if st["status"] != "Failed" || at(st, "error", "code") != "UserErrorMissingRequiredPermissions" ||
		at(st, "error", "message") != "Appropriate permissions to perform the operation is missing." ||
		at(st, "error", "additionalInfo", 0, "type") != "UserFacingError" ||
		at(info, "code") != "UserErrorMissingRequiredPermissions" || at(info, "isRetryable") != false ||
		at(info, "innerError", "code") != "UserErrorMissingRequiredPermissions" || st["endTime"] == "0001-01-01T00:00:00" {
		t.Fatalf("failed validation: %v", st)
	}
	wantDetail := "Validate for Protection failed. Exception Message: The client '" + principal + "' with object id '" + principal +
		"' does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/read' over scope '" + disk +
		"/providers/Microsoft.Authorization' or the scope is invalid. If access was recently granted, please refresh your credentials."
	if detail != wantDetail {
		t.Fatalf("detail:\n got %s\nwant %s", detail, wantDetail)
	}
	actions, _ := at(info, "recommendedAction").([]any)
	if len(actions) != 1 || !strings.Contains(actions[0].(string), "https://aka.ms/UserErrorMissingRequiredPermissions") {
		t.Fatalf("recommendedAction: %v", actions)
	}

	// Half the roles: the next missing action is named.
	grant := func(role, scope string) {
		t.Helper()
		s.mustDo("PUT", scope+"/providers/Microsoft.Authorization/roleAssignments/"+uuid.NewString()+"?api-version=2022-04-01", admin,
			`{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/`+role+`","principalId":"`+principal+`","principalType":"ServicePrincipal"}}`, 201)
	}
	grant(diskBackupReaderRole, disk)
	async, _ = validate()
	st = s.poll(async, admin)
	detail, _ = at(st, "error", "additionalInfo", 0, "info", "innerError", "additionalInfo", "DetailedNonLocalisedMessage").(string)
	if st["status"] != "Failed" || !strings.Contains(detail, "'Microsoft.Authorization/roleAssignments/read' over scope '"+snapshotRG+"/providers/Microsoft.Authorization'") {
		t.Fatalf("after Disk Backup Reader: %v", st)
	}
	grant(diskSnapshotContrib, snapshotRG)
	async, _ = validate()
	st = s.poll(async, admin)
	if st["status"] != "Succeeded" || st["error"] != nil || st["endTime"] == "0001-01-01T00:00:00" {
		t.Fatalf("validation with all roles: %v", st)
	}

	// Configure backup: 201 with the instance body, Azure-AsyncOperation, Retry-After 15.
	biName := "msdiskbackup-2dc6eb5b-d008-4d68-9e49-7132d99da0ed"
	bi := vault + "/backupInstances/" + biName
	h, body = s.mustDo("PUT", bi+dp, admin, `{
      "name": "`+biName+`",
      "type": "Microsoft.DataProtection/backupvaults/backupInstances",
      "properties": `+instance+`}`, 201)
	if h.Get("Retry-After") != "15" || operationURL.FindStringSubmatch(h.Get("Azure-AsyncOperation")) == nil {
		t.Fatalf("201 headers: %v", h)
	}
	m := jsonOf(t, body)
	for path, want := range map[string]any{
		"id": bi, "name": biName, "type": "Microsoft.DataProtection/backupVaults/backupInstances",
	} {
		if m[path] != want {
			t.Fatalf("%s = %v, want %v", path, m[path], want)
		}
	}
	p := m["properties"]
	checks := []struct {
		path []any
		want any
	}{
		{[]any{"friendlyName"}, "msdiskbackup"},
		{[]any{"dataSourceInfo", "resourceID"}, disk},
		{[]any{"dataSourceInfo", "datasourceType"}, "Microsoft.Compute/disks"},
		{[]any{"dataSourceInfo", "resourceLocation"}, "westUS"},
		{[]any{"dataSourceInfo", "resourceUri"}, ""},
		{[]any{"policyInfo", "policyId"}, vault + "/backupPolicies/DiskBackup-Policy"},
		{[]any{"policyInfo", "policyParameters", "dataStoreParametersList", 0, "resourceGroupId"}, snapshotRG},
		{[]any{"policyInfo", "policyParameters", "dataStoreParametersList", 0, "objectType"}, "AzureOperationalStoreParameters"},
		{[]any{"protectionStatus", "status"}, "ConfiguringProtection"},
		{[]any{"currentProtectionState"}, "ConfiguringProtection"},
		{[]any{"provisioningState"}, "Provisioning"},
		{[]any{"objectType"}, "BackupInstance"},
	}
	for _, c := range checks {
		if got := at(p, c.path...); got != c.want {
			t.Fatalf("properties %v = %v, want %v\n%s", c.path, got, c.want, body)
		}
	}
	st = s.poll(h.Get("Azure-AsyncOperation"), admin)
	if st["status"] != "Succeeded" {
		t.Fatalf("configure: %v", st)
	}
	_, body = s.mustDo("GET", bi+dp, admin, "", 200)
	if at(jsonOf(t, body), "properties", "currentProtectionState") != "ProtectionConfigured" ||
		at(jsonOf(t, body), "properties", "protectionStatus", "status") != "ProtectionConfigured" {
		t.Fatalf("after configure: %s", body)
	}

	// Validate again: the disk is protected, an immediate 400.
	code, _, body := s.do("POST", vault+"/validateForBackup"+dp, admin, `{"backupInstance": `+instance+`}`)
	e := jsonOf(t, body)
	info = at(e, "error", "additionalInfo", 0, "info")
	wantMsg := "Datasource is already protected under the Backup vault " + vault + "."
	if code != 400 || at(e, "error", "code") != "UserErrorDppDatasourceAlreadyProtected" || at(e, "error", "message") != wantMsg ||
		at(e, "error", "additionalInfo", 0, "type") != "UserFacingError" || at(info, "message") != wantMsg ||
		at(info, "code") != "UserErrorDppDatasourceAlreadyProtected" || at(info, "isRetryable") != false ||
		at(info, "recommendedAction", 0) != "Delete the backup instance "+biName+" from the Backup vault "+vault+" to re-protect the datasource in any other vault." {
		t.Fatalf("already protected: %d %s", code, body)
	}

	// Stop protection and delete data: 202, Retry-After 30, both headers.
	h, _ = s.mustDo("DELETE", bi+dp, admin, "", 202)
	if h.Get("Retry-After") != "30" || operationURL.FindStringSubmatch(h.Get("Azure-AsyncOperation")) == nil ||
		operationURL.FindStringSubmatch(h.Get("Location")) == nil {
		t.Fatalf("delete headers: %v", h)
	}
	if st = s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
		t.Fatalf("delete: %v", st)
	}
	s.mustDo("GET", bi+dp, admin, "", 404)
	s.mustDo("GET", h.Get("Location"), admin, "", 204)
	golden(t, "seed_replay", s.record.JSON(t))
}

// TestProtectionLifecycle covers what the article does not: state changes,
// what may not be deleted or changed while in use, and the newest api-version.
func TestProtectionLifecycle(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	subPath := "/subscriptions/" + sub
	const v26 = "?api-version=2026-06-01"
	for _, g := range []string{"disks", "vaults", "snaps"} {
		s.mustDo("PUT", subPath+"/resourceGroups/"+g+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
	}
	disk := subPath + "/resourceGroups/disks/providers/Microsoft.Compute/disks/d1"
	s.createDisk(admin, disk, "westus", 1)
	vault := subPath + "/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/v1"
	// 2021-01-01 requires storageSettings; newer versions do not.
	code, _, body := s.do("PUT", vault+dp, admin, `{"location":"westus","identity":{"type":"SystemAssigned"},"properties":{}}`)
	if code != 400 || !strings.Contains(body, "storageSettings") {
		t.Fatalf("2021 vault without storageSettings: %d %s", code, body)
	}
	h, body := s.mustDo("PUT", vault+v26, admin, `{"location":"westus","identity":{"type":"SystemAssigned"},
		"properties":{"securitySettings":{"softDeleteSettings":{"state":"On","retentionDurationInDays":14},"immutabilitySettings":{"state":"Disabled"}}}}`, 201)
	if at(jsonOf(t, body), "identity", "type") != "SystemAssigned" {
		t.Fatalf("vault PUT body: %s", body)
	}
	s.poll(h.Get("Azure-AsyncOperation"), admin)
	_, body = s.mustDo("GET", vault+v26, admin, "", 200)
	principal := at(jsonOf(t, body), "identity", "principalId").(string)
	if at(jsonOf(t, body), "properties", "securitySettings", "softDeleteSettings", "state") != "On" {
		t.Fatalf("securitySettings lost: %s", body)
	}
	// PATCH keeps the identity.
	_, body = s.mustDo("PATCH", vault+v26, admin, `{"tags":{"env":"test"}}`, 200)
	if at(jsonOf(t, body), "identity", "principalId") != principal || at(jsonOf(t, body), "tags", "env") != "test" {
		t.Fatalf("patch: %s", body)
	}
	_, body = s.mustDo("POST", subPath+"/resourceGroups/vaults/providers/Microsoft.DataProtection/locations/westus/checkNameAvailability"+v26, admin,
		`{"name":"v1","type":"Microsoft.DataProtection/BackupVaults"}`, 200)
	if at(jsonOf(t, body), "nameAvailable") != false {
		t.Fatalf("name check: %s", body)
	}
	_, body = s.mustDo("GET", subPath+"/providers/Microsoft.DataProtection/backupVaults"+v26, admin, "", 200)
	if len(at(jsonOf(t, body), "value").([]any)) != 1 {
		t.Fatalf("vault list: %s", body)
	}

	policy := vault + "/backupPolicies/p1"
	policyBody := func(retention string) string {
		return `{"properties":{"datasourceTypes":["Microsoft.Compute/disks"],"objectType":"BackupPolicy","policyRules":[
		 {"backupParameters":{"backupType":"Incremental","objectType":"AzureBackupParams"},"name":"BackupHourly","objectType":"AzureBackupRule",
		  "dataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"},
		  "trigger":{"objectType":"ScheduleBasedTriggerContext","schedule":{"repeatingTimeIntervals":["R/2021-05-20T22:00:00+00:00/PT4H"]},
		   "taggingCriteria":[{"isDefault":true,"taggingPriority":99,"tagInfo":{"tagName":"Default"}}]}},
		 {"isDefault":true,"name":"Default","objectType":"AzureRetentionRule","lifecycles":[{"deleteAfter":{"duration":"` + retention + `","objectType":"AbsoluteDeleteOption"},
		   "sourceDataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"}}]}]}}`
	}
	s.mustDo("PUT", policy+v26, admin, policyBody("P7D"), 200)
	s.mustDo("PUT", policy+v26, admin, policyBody("P14D"), 200) // not in use: may change
	code, _, body = s.do("PUT", vault+"/backupPolicies/bad"+v26, admin, policyBody("P2Y"))
	if code != 400 || !strings.Contains(body, "deleteAfter.duration") {
		t.Fatalf("two-year policy: %d %s", code, body)
	}

	for role, scope := range map[string]string{diskBackupReaderRole: disk, diskSnapshotContrib: subPath + "/resourceGroups/snaps"} {
		s.mustDo("PUT", scope+"/providers/Microsoft.Authorization/roleAssignments/"+uuid.NewString()+"?api-version=2022-04-01", admin,
			`{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/`+role+`","principalId":"`+principal+`"}}`, 201)
	}
	bi := vault + "/backupInstances/d1-1"
	h, _ = s.mustDo("PUT", bi+v26, admin, `{"properties":{"objectType":"BackupInstance",
		"dataSourceInfo":{"objectType":"Datasource","resourceID":"`+disk+`","resourceType":"Microsoft.Compute/disks","datasourceType":"Microsoft.Compute/disks"},
		"policyInfo":{"policyId":"`+policy+`","policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters","dataStoreType":"OperationalStore","resourceGroupId":"`+subPath+`/resourceGroups/snaps"}]}}}}`, 201)
	if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
		t.Fatalf("configure: %v", st)
	}
	_, body = s.mustDo("GET", h.Get("Location"), admin, "", 200) // the BI operation result is the instance
	if at(jsonOf(t, body), "properties", "friendlyName") != "d1" {
		t.Fatalf("BI result: %s", body)
	}

	// In use: the policy may not change or go, nor may the vault.
	code, _, body = s.do("PUT", policy+v26, admin, policyBody("P30D"))
	if code != 409 || !strings.Contains(body, "UserErrorBackupPolicyInUse") {
		t.Fatalf("changing a policy in use: %d %s", code, body)
	}
	s.mustDo("PUT", policy+v26, admin, policyBody("P14D"), 200) // the same policy again is fine
	if code, _, body := s.do("DELETE", policy+v26, admin, ""); code != 409 {
		t.Fatalf("deleting a policy in use: %d %s", code, body)
	}
	if code, _, body := s.do("DELETE", vault+v26, admin, ""); code != 409 || !strings.Contains(body, "backup instances") {
		t.Fatalf("deleting a vault with instances: %d %s", code, body)
	}

	state := func() string {
		_, body := s.mustDo("GET", bi+v26, admin, "", 200)
		return at(jsonOf(t, body), "properties", "currentProtectionState").(string)
	}
	act := func(action string, want int) {
		t.Helper()
		h, body := s.mustDo("POST", bi+"/"+action+v26, admin, "", want)
		if want == 202 {
			if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
				t.Fatalf("%s: %v", action, st)
			}
		} else if !strings.Contains(body, "UserErrorInvalidProtectionStateForOperation") {
			t.Fatalf("%s: %s", action, body)
		}
	}
	act("resumeBackups", 400)
	act("suspendBackups", 202)
	if got := state(); got != "BackupSchedulesSuspended" {
		t.Fatalf("after suspend: %s", got)
	}
	act("resumeBackups", 202)
	act("stopProtection", 202)
	if got := state(); got != "ProtectionStopped" {
		t.Fatalf("after stop: %s", got)
	}
	act("suspendBackups", 400)
	act("resumeProtection", 202)
	if got := state(); got != "ProtectionConfigured" {
		t.Fatalf("after resume: %s", got)
	}

	// The instance's backups are snapshots in the snapshot resource group,
	// tagged with the instance; deleting the instance deletes them, and
	// nothing else there.
	snapOf := func(name string, tags string) string {
		id := subPath + "/resourceGroups/snaps/providers/Microsoft.Compute/snapshots/" + name
		h, _ := s.mustDo("PUT", id+"?api-version=2025-01-02", admin, `{"location":"westus","tags":`+tags+`,
			"properties":{"incremental":true,"creationData":{"createOption":"Copy","sourceResourceId":"`+disk+`"}}}`, 202)
		if st := s.waitOperation(admin, h.Get("Azure-AsyncOperation")); st["status"] != "Succeeded" {
			t.Fatalf("snapshot %s: %v", name, st)
		}
		return id
	}
	backupSnap := snapOf("bi-backup", `{"CofferBackupInstanceId":"`+bi+`"}`)
	otherSnap := snapOf("manual", `{}`)

	// With soft delete on, a deleted instance would keep them (see
	// TestSoftDeleteThroughSDK); turned off, the delete takes them at once.
	s.mustDo("PATCH", vault+v26, admin, `{"properties":{"securitySettings":{"softDeleteSettings":{"state":"Off"}}}}`, 200)
	// Operation status is reachable at vault and resource group scope too.
	h, _ = s.mustDo("DELETE", bi+v26, admin, "", 202)
	opID := operationURL.FindStringSubmatch(strings.Replace(h.Get("Azure-AsyncOperation"), "2026-06-01", "2021-01-01", 1))[3]
	s.poll(h.Get("Azure-AsyncOperation"), admin)
	for _, p := range []string{vault + "/operationStatus/" + opID, subPath + "/resourceGroups/vaults/providers/Microsoft.DataProtection/operationStatus/" + opID} {
		_, body := s.mustDo("GET", p+v26, admin, "", 200)
		if at(jsonOf(t, body), "status") != "Succeeded" {
			t.Fatalf("%s: %s", p, body)
		}
	}
	s.mustDo("GET", subPath+"/resourceGroups/disks/providers/Microsoft.DataProtection/operationStatus/"+opID+v26, admin, "", 404)
	s.mustDo("GET", backupSnap+"?api-version=2025-01-02", admin, "", 404)
	s.mustDo("GET", otherSnap+"?api-version=2025-01-02", admin, "", 200)
	s.mustDo("DELETE", policy+v26, admin, "", 200)
	h, _ = s.mustDo("DELETE", vault+v26, admin, "", 202)
	s.poll(h.Get("Azure-AsyncOperation"), admin)
	s.mustDo("GET", vault+v26, admin, "", 404)
	_, body = s.mustDo("GET", "/providers/Microsoft.DataProtection/operations"+v26, s.token("--principal", uuid.NewString()), "", 200)
	if !strings.Contains(body, "Microsoft.DataProtection/backupVaults/write") {
		t.Fatalf("operations list: %s", body)
	}
}

// TestProtectCLI: vault, default policy and protect through the CLI, which
// names the missing roles with the commands that grant them.
func TestProtectCLI(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	for _, g := range []string{"disks", "vaults", "snaps"} {
		s.mustDo("PUT", "/subscriptions/"+sub+"/resourceGroups/"+g+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
	}
	disk := "/subscriptions/" + sub + "/resourceGroups/disks/providers/Microsoft.Compute/disks/db1"
	s.createDisk(admin, disk, "westus", 1)
	out, err := s.run("vault", "create", "backups", "-g", "vaults", "--subscription", sub, "--location", "westus")
	if err != nil {
		t.Fatalf("vault create: %v\n%s", err, out)
	}
	principal, _ := at(jsonOf(t, out), "identity", "principalId").(string)
	if principal == "" {
		t.Fatalf("no principal: %s", out)
	}
	if out, err := s.run("vault", "list", "--subscription", sub); err != nil || !strings.Contains(out, principal) {
		t.Fatalf("vault list: %v\n%s", err, out)
	}
	out, err = s.run("policy", "create", "disk-default", "--vault", "backups", "-g", "vaults", "--subscription", sub, "--default-disk")
	if err != nil || !strings.Contains(out, "R/2021-01-01T00:00:00+00:00/PT4H") || !strings.Contains(out, `"P7D"`) {
		t.Fatalf("policy create: %v\n%s", err, out)
	}
	snaps := "/subscriptions/" + sub + "/resourceGroups/snaps"
	args := []string{"protect", disk, "--vault", "backups", "-g", "vaults", "--subscription", sub, "--policy", "disk-default", "--snapshot-rg", snaps}
	out, err = s.run(args...)
	if err == nil {
		t.Fatalf("protect without roles succeeded:\n%s", out)
	}
	// The grants are printed with the connection flags given, and run as
	// printed.
	grants := printedCommands(out)
	for i, want := range []string{
		`coffer role assign --role 'Disk Backup Reader' --assignee ` + principal + ` --scope ` + disk + ` --data-dir ` + s.dataDir,
		`coffer role assign --role 'Disk Snapshot Contributor' --assignee ` + principal + ` --scope ` + snaps + ` --data-dir ` + s.dataDir,
	} {
		if len(grants) != 2 || grants[i] != want {
			t.Fatalf("protect printed %q, want %q:\n%s", grants, want, out)
		}
		paste(t, grants[i])
	}
	out, err = s.run(args...)
	if err != nil || !strings.Contains(out, "ProtectionConfigured") {
		t.Fatalf("protect after the grants: %v\n%s", err, out)
	}
}
