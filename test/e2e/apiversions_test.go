package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/provider/authorization"
	"github.com/coffer-backup/coffer/internal/provider/compute"
	"github.com/coffer-backup/coffer/internal/provider/dataprotection"
	"github.com/coffer-backup/coffer/internal/provider/resources"
)

// published is testdata/published-api-versions.json: the api-versions Azure
// publishes for each operation group coffer serves, each with its spec file.
type published struct {
	Providers map[string]map[string][]struct {
		Version, Spec, ListedIn string
	}
}

func loadPublished(t *testing.T) published {
	t.Helper()
	raw, err := os.ReadFile("testdata/published-api-versions.json")
	if err != nil {
		t.Fatal(err)
	}
	var p published
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// servedVersions maps each operation group of the index to the list the
// routes of that group accept.
var servedVersions = map[string]arm.APIVersions{
	"Microsoft.Resources/resourceGroups":      resources.Versions,
	"Microsoft.Compute/disks, snapshots":      compute.Versions,
	"Microsoft.Authorization/roleAssignments": authorization.AssignmentVersions,
	"Microsoft.Authorization/roleDefinitions": authorization.DefinitionVersions,
	"Microsoft.DataProtection/backupVaults, backupPolicies, backupInstances, jobs, recoveryPoints, operations": dataprotection.Versions,
}

// TestPublishedVersionsAccepted fails when a version Azure publishes is
// refused, or when coffer accepts one the specs do not define.
func TestPublishedVersionsAccepted(t *testing.T) {
	p := loadPublished(t)
	groups := 0
	for provider, ops := range p.Providers {
		for group, versions := range ops {
			groups++
			served, ok := servedVersions[provider+"/"+group]
			if !ok {
				t.Errorf("no served list for %s/%s", provider, group)
				continue
			}
			listed := map[string]bool{}
			for _, v := range versions {
				listed[v.Version] = true
				if v.Spec == "" || v.ListedIn == "" {
					t.Errorf("%s %s: no source recorded", provider, v.Version)
				}
				if !served.Has(v.Version) {
					t.Errorf("%s/%s: published %s (%s) is refused", provider, group, v.Version, v.Spec)
				}
			}
			for _, v := range served.Versions {
				if !listed[v] {
					t.Errorf("%s/%s: %s is accepted but not published", provider, group, v)
				}
			}
		}
	}
	if groups != len(servedVersions) {
		t.Errorf("%d groups in the index, %d served", groups, len(servedVersions))
	}
}

// TestEveryVersionLists sends a list of each kind in every published
// version: each answers 200, and a vault with no jobs and an instance with
// no recovery points answer an empty "value" array, never a 404.
func TestEveryVersionLists(t *testing.T) {
	p := loadPublished(t)
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	for _, g := range []string{"disks", "vaults", "snaps"} {
		s.mustDo("PUT", "/subscriptions/"+sub+"/resourceGroups/"+g+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
	}
	disk := "/subscriptions/" + sub + "/resourceGroups/disks/providers/Microsoft.Compute/disks/d1"
	s.createDisk(admin, disk, "westus", 1)
	for _, v := range []string{"backups", "empty"} {
		if out, err := s.run("vault", "create", v, "-g", "vaults", "--subscription", sub, "--location", "westus"); err != nil {
			t.Fatalf("vault create: %v\n%s", err, out)
		}
	}
	if out, err := s.run("policy", "create", "disk-default", "--vault", "backups", "-g", "vaults", "--subscription", sub, "--default-disk"); err != nil {
		t.Fatalf("policy create: %v\n%s", err, out)
	}
	if out, err := s.run("protect", disk, "--vault", "backups", "-g", "vaults", "--subscription", sub, "--policy", "disk-default",
		"--snapshot-rg", "/subscriptions/"+sub+"/resourceGroups/snaps", "--assign-roles"); err != nil {
		t.Fatalf("protect: %v\n%s", err, out)
	}
	vaults := "/subscriptions/" + sub + "/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/"
	_, body := s.mustDo("GET", vaults+"backups/backupInstances?api-version=2025-09-01", admin, "", 200)
	instance, _ := at(jsonOf(t, body), "value", 0, "name").(string)
	if instance == "" {
		t.Fatalf("no instance: %s", body)
	}

	lists := map[string][]string{
		"Microsoft.Resources/resourceGroups": {"/subscriptions/" + sub + "/resourceGroups"},
		"Microsoft.Compute/disks, snapshots": {
			"/subscriptions/" + sub + "/resourceGroups/disks/providers/Microsoft.Compute/disks",
			"/subscriptions/" + sub + "/resourceGroups/snaps/providers/Microsoft.Compute/snapshots",
		},
		"Microsoft.Authorization/roleAssignments": {"/subscriptions/" + sub + "/resourceGroups/snaps/providers/Microsoft.Authorization/roleAssignments"},
		"Microsoft.Authorization/roleDefinitions": {"/subscriptions/" + sub + "/providers/Microsoft.Authorization/roleDefinitions"},
		"Microsoft.DataProtection/backupVaults, backupPolicies, backupInstances, jobs, recoveryPoints, operations": {
			vaults + "backups/backupInstances",
			vaults + "empty/backupJobs",
			vaults + "backups/backupInstances/" + instance + "/recoveryPoints",
		},
	}
	for provider, ops := range p.Providers {
		for group, versions := range ops {
			for _, v := range versions {
				for _, path := range lists[provider+"/"+group] {
					code, _, body := s.do("GET", path+"?api-version="+v.Version, admin, "")
					if code != 200 {
						t.Errorf("GET %s at %s: %d %s", path, v.Version, code, body)
						continue
					}
					if strings.HasSuffix(path, "/backupJobs") || strings.HasSuffix(path, "/recoveryPoints") {
						if !strings.Contains(body, `"value":[]`) {
							t.Errorf("empty list %s at %s: %s", path, v.Version, body)
						}
					}
				}
			}
		}
	}
}
