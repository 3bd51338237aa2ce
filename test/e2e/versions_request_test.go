package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestRequestsAndValuesPerVersion drives the per-version reading of
// requests and texts of values through real HTTP: a finished job reads
// "Success" to DataProtection clients before 2025-01-01 (as those specs
// describe it) and "Completed" after; a Compute 2022-07-02 client that
// sets a property 2022-07-02 does not define is refused, not ignored; a
// 2021-01-01 vault's SnapshotStore is stored as today's OperationalStore
// and read back as each version spells it.
func TestRequestsAndValuesPerVersion(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	p := s.protectDisk(t, admin, 1, time.Now().Add(24*time.Hour))

	h, _ := s.mustDo("POST", p.instance+"/backup?api-version=2026-06-01", admin,
		`{"backupRuleOptions":{"ruleName":"BackupHourly","triggerOption":{"retentionTagOverride":"Default"}}}`, 202)
	if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
		t.Fatalf("ad hoc backup: %v", st)
	}
	jobs := s.jobs(t, admin, p.vault)
	if len(jobs) != 1 {
		t.Fatalf("jobs: %+v", jobs)
	}
	job := p.vault + "/backupJobs/" + jobs[0].Name
	for version, want := range map[string]string{
		"2021-01-01": "Success", "2022-12-01": "Success", "2024-04-01": "Success",
		"2025-01-01": "Completed", "2026-06-01": "Completed",
	} {
		_, body := s.mustDo("GET", job+"?api-version="+version, admin, "", 200)
		if got := jsonOf(t, body)["properties"].(map[string]any)["status"]; got != want {
			t.Errorf("job at %s: status %v, want %s", version, got, want)
		}
		_, body = s.mustDo("GET", p.vault+"/backupJobs?api-version="+version, admin, "", 200)
		list := jsonOf(t, body)["value"].([]any)
		if got := list[0].(map[string]any)["properties"].(map[string]any)["status"]; len(list) != 1 || got != want {
			t.Errorf("job list at %s: status %v, want %s", version, got, want)
		}
	}

	disk := "/subscriptions/" + p.sub + "/resourceGroups/disks/providers/Microsoft.Compute/disks/plus"
	const plus = `{"location":"westus","sku":{"name":"Standard_LRS"},"properties":{"creationData":{"createOption":"Empty","performancePlus":true},"diskSizeGB":1}}`
	code, _, body := s.do("PUT", disk+"?api-version=2022-07-02", admin, plus)
	if code != 400 || !strings.Contains(body, `"code":"InvalidRequestContent"`) ||
		!strings.Contains(body, "'properties.creationData.performancePlus'") || !strings.Contains(body, "'2022-07-02'") {
		t.Fatalf("a 2022-07-02 disk with performancePlus: %d %s", code, body)
	}
	s.mustDo("GET", disk+"?api-version=2022-07-02", admin, "", 404)
	// What a 2022-07-02 client reads back it may send again.
	_, body = s.mustDo("GET", p.disk+"?api-version=2022-07-02", admin, "", 200)
	s.mustDo("PUT", p.disk+"?api-version=2022-07-02", admin, body, 200)

	vault := "/subscriptions/" + p.sub + "/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/old"
	h, _ = s.mustDo("PUT", vault+"?api-version=2021-01-01", admin,
		`{"location":"westus","identity":{"type":"SystemAssigned"},"properties":{"storageSettings":[{"datastoreType":"SnapshotStore","type":"LocallyRedundant"}]}}`, 201)
	if u := h.Get("Azure-AsyncOperation"); u != "" {
		if st := s.poll(u, admin); st["status"] != "Succeeded" {
			t.Fatalf("2021-01-01 vault: %v", st)
		}
	}
	for version, want := range map[string]string{"2021-01-01": "SnapshotStore", "2026-06-01": "OperationalStore"} {
		_, body := s.mustDo("GET", vault+"?api-version="+version, admin, "", 200)
		settings := jsonOf(t, body)["properties"].(map[string]any)["storageSettings"].([]any)
		if got := settings[0].(map[string]any)["datastoreType"]; len(settings) != 1 || got != want {
			t.Errorf("vault at %s: storageSettings %v, want datastoreType %s", version, settings, want)
		}
	}
	// A 2021-01-01 PATCH has identity and tags only: soft delete cannot be
	// switched off through it, and nothing of the vault changes.
	code, _, body = s.do("PATCH", vault+"?api-version=2021-01-01", admin,
		`{"properties":{"securitySettings":{"softDeleteSettings":{"state":"Off"}}}}`)
	if code != 400 || !strings.Contains(body, `"code":"InvalidRequestContent"`) || !strings.Contains(body, "'properties'") {
		t.Fatalf("a 2021-01-01 vault PATCH with properties: %d %s", code, body)
	}
	_, body = s.mustDo("GET", vault+"?api-version=2026-06-01", admin, "", 200)
	if strings.Contains(body, `"state":"Off"`) {
		t.Errorf("the vault after a refused PATCH: %s", body)
	}
}
