package arm

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const shapeTestGroup = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/g"

// echoRouter serves pattern for method at versions, answering 200 with
// body; *seen is the body the last request reached the handler with.
func echoRouter(t testing.TB, provider string, versions []string, method, pattern, body string) (*Router, *string) {
	t.Helper()
	rt := NewRouter(anyToken{}, nil, discard(), nil)
	seen := new(string)
	rt.Handle(Route{Method: method, Pattern: pattern, Versions: APIVersions{Provider: provider, Versions: versions}, Action: "a/act",
		Handler: func(_ context.Context, r *Request) (*Response, error) {
			*seen = string(r.Body)
			return OK(json.RawMessage(body)), nil
		}})
	return rt, seen
}

func call(rt *Router, method, path, version, body string) (int, string) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, path+"?api-version="+version, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer good")
	req.Header.Set("Content-Type", "application/json")
	rt.ServeHTTP(rec, req)
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// TestRequestsAreReadInTheirVersionsShape: a property the version does not
// define is refused with a code naming it and the version; the same body
// passes at a version that defines it; nulls and read-only echoes pass;
// an old version's spelling reaches the handler in the current one.
func TestRequestsAreReadInTheirVersionsShape(t *testing.T) {
	disks, diskSeen := echoRouter(t, "Microsoft.Compute", []string{"2022-07-02", "2025-01-02", "2026-03-02"}, "PUT",
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/disks/{diskName}", "{}")
	vaults, vaultSeen := echoRouter(t, "Microsoft.DataProtection", []string{"2021-01-01", "2024-04-01", "2026-06-01"}, "PUT",
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/backupVaults/{vaultName}", "{}")
	restores, restoreSeen := echoRouter(t, "Microsoft.DataProtection", []string{"2026-06-01"}, "POST",
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/backupVaults/{vaultName}/backupInstances/{backupInstanceName}/restore", "{}")
	restore := shapeTestGroup + "/providers/Microsoft.DataProtection/backupVaults/v1/backupInstances/i1/restore"
	const lowerSubtype = `{"objectType":"AzureBackupRecoveryPointBasedRestoreRequest","recoveryPointId":"r","sourceDataStoreType":"OperationalStore","restoreTargetInfo":{"objectType":"restoreTargetInfo","recoveryOption":"FailIfExists","restoreLocation":"westus","datasourceInfo":{"objectType":"Datasource","resourceID":"x"}}}`
	const unknownSubtype = `{"objectType":"AzureBackupRecoveryPointBasedRestoreRequest","recoveryPointId":"r","restoreTargetInfo":{"objectType":"NoSuchTarget","anything":1}}`
	disk := shapeTestGroup + "/providers/Microsoft.Compute/disks/d1"
	vault := shapeTestGroup + "/providers/Microsoft.DataProtection/backupVaults/v1"
	const plus = `{"location":"westus","properties":{"creationData":{"createOption":"Empty","performancePlus":true},"diskSizeGB":1}}`
	const echoed = `{"id":"x","name":"d1","type":"Microsoft.Compute/disks","location":"westus","systemData":{"createdBy":"me"},"properties":{"timeCreated":"2026-01-01T00:00:00Z","LastOwnershipUpdateTime":"2026-01-01T00:00:00Z","creationData":{"createOption":"Empty","performancePlus":null},"diskSizeGB":1,"cofferNote":1}}`
	const snapshotStore = `{"location":"westus","properties":{"storageSettings":[{"datastoreType":"SnapshotStore","type":"LocallyRedundant"}]}}`
	const operationalStore = `{"location":"westus","properties":{"storageSettings":[{"datastoreType":"OperationalStore","type":"LocallyRedundant"}]}}`
	cases := []struct {
		name          string
		rt            *Router
		seen          *string
		path, version string
		body          string
		status        int
		want          string // the body the handler saw, or a part of the error
	}{
		{"a property 2022-07-02 lacks is refused", disks, diskSeen, disk, "2022-07-02", plus, 400,
			`"code":"InvalidRequestContent","message":"The request content has the property 'properties.creationData.performancePlus', which api-version '2022-07-02' of Microsoft.Compute does not define`},
		{"the same property at a version that has it", disks, diskSeen, disk, "2025-01-02", plus, 200, plus},
		{"a version without its own spec is read as its neighbour", disks, diskSeen, disk, "2026-03-02", plus, 200, plus},
		{"nulls, read-only echoes and coffer's own properties pass", disks, diskSeen, disk, "2022-07-02", echoed, 200, echoed},
		{"2021-01-01's SnapshotStore reaches the handler as OperationalStore", vaults, vaultSeen, vault, "2021-01-01", snapshotStore, 200, operationalStore},
		{"a version that spells it OperationalStore is read as it is", vaults, vaultSeen, vault, "2026-06-01", operationalStore, 200, operationalStore},
		{"a property unknown in every version", vaults, vaultSeen, vault, "2026-06-01", `{"location":"westus","properties":{"storageSetings":[]}}`, 400,
			`which api-version '2026-06-01' of Microsoft.DataProtection does not define`},
		{"a subtype named in another case is read as that subtype", restores, restoreSeen, restore, "2026-06-01", lowerSubtype, 200, lowerSubtype},
		{"a restore's unknown property is refused", restores, restoreSeen, restore, "2026-06-01", strings.Replace(lowerSubtype, `"recoveryPointId"`, `"recoveryPoint"`, 1), 400,
			`'recoveryPoint'`},
		{"a property named in another case is that property", restores, restoreSeen, restore, "2026-06-01", strings.Replace(lowerSubtype, `"recoveryPointId"`, `"RecoveryPointID"`, 1), 200,
			strings.Replace(lowerSubtype, `"recoveryPointId"`, `"RecoveryPointID"`, 1)},
		{"an unknown subtype is left to the provider", restores, restoreSeen, restore, "2026-06-01", unknownSubtype, 200, unknownSubtype},
		{"not JSON is left to the handler", disks, diskSeen, disk, "2022-07-02", `not json`, 200, `not json`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			*c.seen = ""
			method := "PUT"
			if strings.HasSuffix(c.path, "/restore") {
				method = "POST"
			}
			status, got := call(c.rt, method, c.path, c.version, c.body)
			if status == 200 {
				got = *c.seen
			}
			if status != c.status || (status == 200 && got != c.want) || (status != 200 && !strings.Contains(got, c.want)) {
				t.Errorf("status %d\n got %s\nwant %d %s", status, got, c.status, c.want)
			}
		})
	}
}

// TestJobStatusTakesItsVersionsText: versions before 2025-01-01 describe a
// finished job as Success, later ones as Completed; a job and a list of
// jobs are answered in the text of the version asked.
func TestJobStatusTakesItsVersionsText(t *testing.T) {
	versions := []string{"2021-01-01", "2022-12-01", "2024-04-01", "2025-01-01", "2026-06-01"}
	const vault = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/backupVaults/{vaultName}"
	job := func(status string) string {
		return `{"id":"x","name":"j","type":"Microsoft.DataProtection/backupVaults/backupJobs","properties":{"activityID":"a","operation":"Backup","status":"` + status + `","isUserTriggered":true}}`
	}
	one, _ := echoRouter(t, "Microsoft.DataProtection", versions, "GET", vault+"/backupJobs/{jobId}", job("Completed"))
	warn, _ := echoRouter(t, "Microsoft.DataProtection", versions, "GET", vault+"/backupJobs/{jobId}", job("CompletedWithWarnings"))
	failed, _ := echoRouter(t, "Microsoft.DataProtection", versions, "GET", vault+"/backupJobs/{jobId}", job("Failed"))
	list, _ := echoRouter(t, "Microsoft.DataProtection", versions, "GET", vault+"/backupJobs", `{"value":[`+job("Completed")+`,`+job("InProgress")+`]}`)
	base := shapeTestGroup + "/providers/Microsoft.DataProtection/backupVaults/v1/backupJobs"
	cases := []struct {
		rt            *Router
		path, version string
		want          string
	}{
		{one, base + "/j", "2021-01-01", job("Success")},
		{one, base + "/j", "2022-12-01", job("Success")},
		{one, base + "/j", "2024-04-01", job("Success")},
		{one, base + "/j", "2025-01-01", job("Completed")},
		{one, base + "/j", "2026-06-01", job("Completed")},
		{warn, base + "/j", "2024-04-01", job("SuccessWithWarning")},
		{warn, base + "/j", "2026-06-01", job("CompletedWithWarnings")},
		{failed, base + "/j", "2021-01-01", job("Failed")},
		{list, base, "2021-01-01", `{"value":[` + job("Success") + `,` + job("InProgress") + `]}`},
		{list, base, "2026-06-01", `{"value":[` + job("Completed") + `,` + job("InProgress") + `]}`},
	}
	for _, c := range cases {
		t.Run(c.version+" "+c.want[len(c.want)-40:], func(t *testing.T) {
			status, got := call(c.rt, "GET", c.path, c.version, "")
			if status != 200 || got != c.want {
				t.Errorf("status %d\n got %s\nwant %s", status, got, c.want)
			}
		})
	}
}

// TestVaultStorageSettingsTakeTheirVersionsText: a vault stored with
// OperationalStore reads as SnapshotStore in 2021-01-01, whose spec lists
// that instead.
func TestVaultStorageSettingsTakeTheirVersionsText(t *testing.T) {
	const vault = `{"id":"x","name":"v1","type":"Microsoft.DataProtection/backupVaults","location":"westus","properties":{"storageSettings":[{"datastoreType":"OperationalStore","type":"LocallyRedundant"},{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`
	rt, _ := echoRouter(t, "Microsoft.DataProtection", []string{"2021-01-01", "2026-06-01"}, "GET",
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/backupVaults/{vaultName}", vault)
	path := shapeTestGroup + "/providers/Microsoft.DataProtection/backupVaults/v1"
	if _, got := call(rt, "GET", path, "2026-06-01", ""); got != vault {
		t.Errorf("2026-06-01: %s", got)
	}
	want := strings.Replace(vault, "OperationalStore", "SnapshotStore", 1)
	if _, got := call(rt, "GET", path, "2021-01-01", ""); got != want {
		t.Errorf("2021-01-01:\n got %s\nwant %s", got, want)
	}
}

// TestRespellFollowsTheNewestCasing: a value spelled as the version
// spells it, which the newest spells in another case, is respelled; one
// the version does not list is left to the provider.
func TestRespellFollowsTheNewestCasing(t *testing.T) {
	old, newest := []string{"SystemAssigned", "None"}, []string{"systemAssigned", "None"}
	for in, want := range map[string]string{
		`"SystemAssigned"`:       `"systemAssigned"`,
		`["SystemAssigned"]`:     `["systemAssigned"]`,
		`"None"`:                 `"None"`,
		`"SYSTEMASSIGNED"`:       `"SYSTEMASSIGNED"`,
		`{"a":"SystemAssigned"}`: `{"a":"SystemAssigned"}`,
	} {
		got, _ := respell(json.RawMessage(in), old, newest)
		if string(got) != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
}

// TestValueTextsMatchTheSpecs checks valueChanges against every vendored
// spec: a version before a change's until describes the old texts and
// not the new ones, a later one the reverse; an enum change's texts are
// each listed by some vendored version.
func TestValueTextsMatchTheSpecs(t *testing.T) {
	root := filepath.Join("..", "..", "test", "e2e", "testdata", "specs")
	raw, err := os.ReadFile(filepath.Join(root, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index []struct{ Provider, Version, Path string }
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	for _, c := range valueChanges() {
		checked, listsOld, listsNew := 0, false, false
		for _, e := range index {
			if !strings.EqualFold(e.Provider, c.provider) {
				continue
			}
			raw, err := os.ReadFile(filepath.Join(root, e.Path))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Definitions map[string]struct {
					Properties map[string]struct {
						Description string `json:"description"`
					}
				}
			}
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			prop, ok := doc.Definitions[c.definition].Properties[c.property]
			if !ok {
				continue
			}
			checked++
			for current, old := range c.old {
				if c.until == "" {
					enum := enumIn(e.Path, c.definition, c.property)
					listsOld = listsOld || contains(enum, old)
					listsNew = listsNew || contains(enum, current)
					if contains(enum, old) && contains(enum, current) {
						t.Errorf("%s %s: %s.%s lists both %s and %s", c.provider, e.Version, c.definition, c.property, old, current)
					}
					continue
				}
				words := strings.FieldsFunc(prop.Description, func(r rune) bool { return r == '/' || r == ' ' || r == '.' })
				before := e.Version < c.until
				if contains(words, old) != before || contains(words, current) == before {
					t.Errorf("%s %s: %s.%s is described %q; valueChanges has %s before %s and %s after",
						c.provider, e.Version, c.definition, c.property, prop.Description, old, c.until, current)
				}
			}
		}
		if checked == 0 || (c.until == "" && !(listsOld && listsNew)) {
			t.Errorf("%s %s.%s: no vendored spec shows the change (%d specs define it)", c.provider, c.definition, c.property, checked)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// enumIn is the enum shapegen found for a definition's property in the
// spec file at path (references followed).
func enumIn(path, def, prop string) []string {
	parts := strings.Split(strings.TrimSuffix(path, ".json"), "/")
	name := strings.Join(parts[len(parts)-3:], "/") + "#" + def
	if sh := loadShapes().shapes[name]; sh != nil {
		return sh.Enums[prop]
	}
	return nil
}

// FuzzRequestBody: whatever body a client sends, the front door answers
// the handler's 200 or a 400 CloudError, never a panic or a 500, and what
// it hands the handler is valid JSON whenever the client's body was.
func FuzzRequestBody(f *testing.F) {
	f.Add(`{"location":"westus","properties":{"storageSettings":[{"datastoreType":"SnapshotStore","type":"LocallyRedundant"}]}}`)
	f.Add(`{"properties":{"creationData":{"createOption":"Empty","performancePlus":true}},"tags":{"a":null}}`)
	f.Add(`{"objectType":"restoreTargetInfo","properties":[1,{"x":"y"}],"identity":{"type":"SystemAssigned"}}`)
	f.Add(`[{"a":1}]`)
	vaults, vaultSeen := echoRouter(f, "Microsoft.DataProtection", []string{"2021-01-01"}, "PUT",
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DataProtection/backupVaults/{vaultName}", "{}")
	disks, diskSeen := echoRouter(f, "Microsoft.Compute", []string{"2022-07-02"}, "PUT",
		"/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/disks/{diskName}", "{}")
	f.Fuzz(func(t *testing.T, body string) {
		for _, c := range []struct {
			rt            *Router
			seen          *string
			path, version string
		}{
			{vaults, vaultSeen, shapeTestGroup + "/providers/Microsoft.DataProtection/backupVaults/v1", "2021-01-01"},
			{disks, diskSeen, shapeTestGroup + "/providers/Microsoft.Compute/disks/d1", "2022-07-02"},
		} {
			*c.seen = ""
			status, got := call(c.rt, "PUT", c.path, c.version, body)
			switch status {
			case 200:
				if json.Valid([]byte(body)) && !json.Valid([]byte(*c.seen)) {
					t.Fatalf("%q reached the handler as %q", body, *c.seen)
				}
			case 400:
				var ce struct{ Error struct{ Code string } }
				if json.Unmarshal([]byte(got), &ce) != nil || ce.Error.Code == "" {
					t.Fatalf("%q: 400 is no CloudError: %s", body, got)
				}
			default:
				t.Fatalf("%q: %d %s", body, status, got)
			}
		}
	})
}
