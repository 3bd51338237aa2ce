package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestResponsesPerVersion: the same resource read at an older and at a
// newer api-version differs exactly by properties the older version's spec
// does not define, and both bodies pass the schema check every response of
// the suite goes through. What each older spec lacks is written out here
// from the specs themselves (the DataProtection 2021-01-01 vs 2026-06-01
// comparison in the API reference; DiskRP 2022-07-02 vs 2025-01-02), not
// taken from the shape table the server uses.
func TestResponsesPerVersion(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	p := s.protectDisk(t, admin, 1, time.Now().Add(24*time.Hour))
	const newDP, oldDP = "?api-version=2026-06-01", "?api-version=2021-01-01"

	// Tags on the instance: 2021-01-01's BackupInstanceResource has none.
	_, body := s.mustDo("GET", p.instance+newDP, admin, "", 200)
	inst := jsonOf(t, body)
	inst["tags"] = map[string]any{"team": "storage"}
	delete(inst, "id")
	delete(inst, "name")
	delete(inst, "type")
	code, h, body := s.do("PUT", p.instance+newDP, admin, mustJSON(inst))
	if code != 200 && code != 201 {
		t.Fatalf("tagging the instance: %d %s", code, body)
	}
	if u := h.Get("Azure-AsyncOperation"); u != "" {
		if st := s.poll(u, admin); st["status"] != "Succeeded" {
			t.Fatalf("tagging the instance: %v", st)
		}
	}
	h, _ = s.mustDo("POST", p.instance+"/backup"+newDP, admin, `{"backupRuleOptions":{"ruleName":"BackupHourly","triggerOption":{"retentionTagOverride":"Default"}}}`, 202)
	if st := s.poll(h.Get("Azure-AsyncOperation"), admin); st["status"] != "Succeeded" {
		t.Fatalf("ad hoc backup: %v", st)
	}
	points := s.pointNames(t, admin, p.instance)
	if len(points) != 1 {
		t.Fatalf("recovery points: %v", points)
	}

	cases := []struct {
		name, url, newer, older string
		// notInOlder: properties (dotted paths; a prefix covers what is
		// under it) the older spec does not define.
		notInOlder []string
		// mustDiffer: of those, what coffer writes, so the older body must
		// lack it.
		mustDiffer []string
	}{
		{"vault", p.vault, newDP, oldDP,
			[]string{"properties.securitySettings", "properties.monitoringSettings", "properties.featureSettings", "properties.resourceMoveState",
				"properties.resourceMoveDetails", "properties.secureScore", "properties.isVaultProtectedByResourceGuard", "properties.replicatedRegions",
				"properties.bcdrSecurityLevel", "identity.userAssignedIdentities"},
			[]string{"properties.resourceMoveState", "properties.secureScore", "properties.isVaultProtectedByResourceGuard"}},
		{"backup instance", p.instance, newDP, oldDP,
			[]string{"tags", "properties.identityDetails", "properties.validationType", "properties.datasourceAuthCredentials",
				"properties.resourceGuardOperationRequests"},
			[]string{"tags"}},
		{"recovery point", p.instance + "/recoveryPoints/" + points[0], newDP, oldDP,
			[]string{"properties.expiryTime", "properties.recoveryPointState"},
			[]string{"properties.expiryTime", "properties.recoveryPointState"}},
		{"disk", p.disk, "?api-version=2025-01-02", "?api-version=2022-07-02",
			[]string{"systemData", "properties.LastOwnershipUpdateTime", "properties.creationData.elasticSanResourceId", "properties.creationData.performancePlus",
				"properties.creationData.provisionedBandwidthCopySpeed", "properties.supportedCapabilities.supportedSecurityOption"},
			nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, nb := s.mustDo("GET", c.url+c.newer, admin, "", 200)
			_, ob := s.mustDo("GET", c.url+c.older, admin, "", 200)
			newer, older := leaves(t, nb), leaves(t, ob)
			var dropped []string
			for path, v := range newer {
				ov, ok := older[path]
				switch {
				case !ok:
					dropped = append(dropped, path)
					if !underAny(path, c.notInOlder) {
						t.Errorf("%s: %s is missing at %s, which defines it", c.name, path, c.older)
					}
				case ov != v:
					t.Errorf("%s: %s is %s at %s, %s at %s", c.name, path, ov, c.older, v, c.newer)
				}
			}
			for path := range older {
				if _, ok := newer[path]; !ok {
					t.Errorf("%s: %s only at %s", c.name, path, c.older)
				}
			}
			for _, want := range c.mustDiffer {
				if !underAny(want, dropped) && !anyUnder(want, dropped) {
					t.Errorf("%s: %s is still written at %s (dropped: %v)", c.name, want, c.older, dropped)
				}
			}
			sort.Strings(dropped)
			t.Logf("%s at %s lacks %v", c.name, c.older, dropped)
		})
	}
}

// leaves flattens a JSON body to dotted paths of its scalars (array
// elements as [i]), each with its JSON text.
func leaves(t *testing.T, body string) map[string]string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				out[prefix] = "{}"
			}
			for k, e := range x {
				walk(strings.TrimPrefix(prefix+"."+k, "."), e)
			}
		case []any:
			if len(x) == 0 {
				out[prefix] = "[]"
			}
			for i, e := range x {
				walk(fmt.Sprintf("%s[%d]", prefix, i), e)
			}
		default:
			b, _ := json.Marshal(x)
			out[prefix] = string(b)
		}
	}
	walk("", v)
	return out
}

// covered reports whether path is one of prefixes or under one.
func underAny(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

func anyUnder(prefix string, paths []string) bool {
	for _, p := range paths {
		if underAny(p, []string{prefix}) {
			return true
		}
	}
	return false
}
