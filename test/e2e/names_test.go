package e2e

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// cloudErrorCode is the code of a CloudError body, "" when body is none.
func cloudErrorCode(body string) string {
	var ce struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal([]byte(body), &ce)
	return ce.Error.Code
}

// TestHostileNames sends names no resource may have, as raw path segments,
// for each resource kind on each store: every one is a 400 with a naming
// code, never a 500 (PostgreSQL refuses invalid UTF-8 and NUL) and never a
// resource. Ordinary names still work.
func TestHostileNames(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testHostileNames(t, startServer(t, b.db(t))) })
	}
}

func testHostileNames(t *testing.T, s *server) {
	admin := s.token()
	sub := "/subscriptions/" + newSubscription()
	group := sub + "/resourceGroups/names-rg"
	s.mustDo("PUT", group+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
	disk := group + "/providers/Microsoft.Compute/disks/data-1"
	s.createDisk(admin, disk, "westus", 1)
	snap := group + "/providers/Microsoft.Compute/snapshots/snap_1"
	s.mustSnapshot(admin, disk, snap)
	vault := group + "/providers/Microsoft.DataProtection/backupVaults/names-vault"
	h, _ := s.mustDo("PUT", vault+dp, admin, `{"location":"westus","identity":{"type":"systemAssigned"},
		"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`, 201)
	s.poll(h.Get("Azure-AsyncOperation"), admin)
	// A valid instance name passes the front door: the instance is absent.
	instanceName := "names-rg-data-1-" + uuid.NewString()
	if code, _, body := s.do("GET", vault+"/backupInstances/"+instanceName+dp, admin, ""); code != 404 {
		t.Fatalf("valid instance name: %d %s", code, body)
	}

	hostile := map[string]string{
		"escaped slash": "a%2Fb",
		"dot dot":       "..",
		"dot":           ".",
		"NUL":           "x%00y",
		"invalid UTF-8": "x%FFy",
		"5000 chars":    strings.Repeat("n", 5000),
		"emoji":         "%F0%9F%98%80",
	}
	kinds := []struct {
		kind, prefix, query, body string
	}{
		{"group", sub + "/resourceGroups/", "?api-version=2021-04-01", `{"location":"westus"}`},
		{"disk", group + "/providers/Microsoft.Compute/disks/", computeAPI,
			`{"location":"westus","sku":{"name":"Standard_LRS"},"properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`},
		{"snapshot", group + "/providers/Microsoft.Compute/snapshots/", computeAPI,
			`{"location":"westus","properties":{"incremental":true,"creationData":{"createOption":"Copy","sourceResourceId":"` + disk + `"}}}`},
		{"backup instance", vault + "/backupInstances/", dp, `{"properties":{"objectType":"BackupInstance"}}`},
	}
	for _, k := range kinds {
		for what, name := range hostile {
			for _, method := range []string{"GET", "PUT", "DELETE"} {
				body := ""
				if method == "PUT" {
					body = k.body
				}
				code, _, resp := s.do(method, k.prefix+name+k.query, admin, body)
				got := cloudErrorCode(resp)
				if code != 400 || (got != "InvalidResourceName" && got != "InvalidResourceId" && got != "InvalidResourceGroup") {
					t.Errorf("%s %s named %s: %d %.300s", method, k.kind, what, code, resp)
				}
			}
		}
	}
	// Nothing was made of them: the group holds only the disk and the
	// snapshot created above.
	for _, list := range []string{group + "/providers/Microsoft.Compute/disks" + computeAPI, group + "/providers/Microsoft.Compute/snapshots" + computeAPI} {
		_, body := s.mustDo("GET", list, admin, "", 200)
		if n := len(at(jsonOf(t, body), "value").([]any)); n != 1 {
			t.Fatalf("%s holds %d resources: %s", list, n, body)
		}
	}
}

// TestRepeatedQueryParameter: a parameter given twice, in any case, is one
// 400 naming it, every time (it used to depend on Go's map order).
func TestRepeatedQueryParameter(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	groups := "/subscriptions/" + newSubscription() + "/resourcegroups"
	for range 20 {
		code, _, body := s.do("GET", groups+"?api-version=garbage&API-VERSION=2021-04-01", admin, "")
		if code != 400 || cloudErrorCode(body) != "InvalidQueryParameter" || !strings.Contains(body, "api-version") {
			t.Fatalf("%d %s", code, body)
		}
	}
	s.mustDo("GET", groups+"?API-VERSION=2021-04-01", admin, "", 200)
}

// TestTextTheStoreCannotHold: invalid UTF-8 or NUL in a body, a query
// value or a decoded $skipToken is a 400 on both stores (PostgreSQL used to
// answer 500 for each).
func TestTextTheStoreCannotHold(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := startServer(t, b.db(t))
			admin := s.token()
			sub := "/subscriptions/" + newSubscription()
			group := sub + "/resourceGroups/text-rg"
			s.mustDo("PUT", group+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
			token := func(raw []byte) string { return base64.RawURLEncoding.EncodeToString(raw) }
			for _, tc := range []struct {
				name, method, path, body, code string
			}{
				{"body with invalid UTF-8", "PUT", group + "?api-version=2021-04-01", "{\"location\":\"westus\",\"tags\":{\"k\":\"v\xff\"}}", "InvalidRequestContent"},
				{"disk body with invalid UTF-8", "PUT", group + "/providers/Microsoft.Compute/disks/d1" + computeAPI,
					"{\"location\":\"west\xc3us\",\"properties\":{\"creationData\":{\"createOption\":\"Empty\"},\"diskSizeGB\":1}}", "InvalidRequestContent"},
				{"group skip token 00 FF", "GET", sub + "/resourcegroups?api-version=2021-04-01&$skipToken=" + token([]byte{0, 0xff}), "", "InvalidSkipToken"},
				{"disk skip token 00 FF", "GET", group + "/providers/Microsoft.Compute/disks" + computeAPI + "&$skipToken=" + token([]byte{0, 0xff}), "", "InvalidSkipToken"},
				{"vault skip token invalid UTF-8", "GET", sub + "/providers/Microsoft.DataProtection/backupVaults" + dp + "&$skipToken=" + token([]byte("a\xffb")), "", "InvalidSkipToken"},
				{"filter with invalid UTF-8", "GET", sub + "/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=%FF", "", "InvalidQueryParameterValue"},
				{"filter with NUL", "GET", sub + "/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=a%00", "", "InvalidQueryParameterValue"},
				{"group id with invalid UTF-8", "GET", sub + "/resourceGroups/r%C3?api-version=2021-04-01", "", "InvalidResourceId"},
			} {
				code, _, body := s.do(tc.method, tc.path, admin, tc.body)
				if code != 400 || cloudErrorCode(body) != tc.code {
					t.Errorf("%s: %d %.300s, want 400 %s", tc.name, code, body, tc.code)
				}
			}
			// The store still answers: a token this server issued pages on.
			s.mustDo("PUT", sub+"/resourceGroups/text-rg2?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
			_, body := s.mustDo("GET", sub+"/resourcegroups?api-version=2021-04-01&$top=1", admin, "", 200)
			next, _ := at(jsonOf(t, body), "nextLink").(string)
			if next == "" {
				t.Fatalf("no nextLink: %s", body)
			}
			s.mustDo("GET", next, admin, "", 200)
		})
	}
}

// TestNoExistenceLeak: a caller without read access gets the same 403 for
// a resource that exists and one that does not, so it learns nothing.
func TestNoExistenceLeak(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := startServer(t, b.db(t))
			admin := s.token()
			nobody := s.token("--principal", uuid.NewString())
			sub := "/subscriptions/" + newSubscription()
			group := sub + "/resourceGroups/present-rg"
			s.mustDo("PUT", group+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
			s.createDisk(admin, group+"/providers/Microsoft.Compute/disks/present", "westus", 1)
			vault := group + "/providers/Microsoft.DataProtection/backupVaults/present-vault"
			h, _ := s.mustDo("PUT", vault+dp, admin, `{"location":"westus","identity":{"type":"systemAssigned"},
				"properties":{"storageSettings":[{"datastoreType":"VaultStore","type":"LocallyRedundant"}]}}`, 201)
			s.poll(h.Get("Azure-AsyncOperation"), admin)
			absentGroup := sub + "/resourceGroups/absent-rg"
			for _, pair := range []struct{ kind, present, absent string }{
				{"group", group + "?api-version=2021-04-01", absentGroup + "?api-version=2021-04-01"},
				{"disk", group + "/providers/Microsoft.Compute/disks/present" + computeAPI, group + "/providers/Microsoft.Compute/disks/absent" + computeAPI},
				{"disk in an absent group", group + "/providers/Microsoft.Compute/disks/present" + computeAPI, absentGroup + "/providers/Microsoft.Compute/disks/present" + computeAPI},
				{"vault", vault + dp, group + "/providers/Microsoft.DataProtection/backupVaults/absent-vault" + dp},
				{"policy", vault + "/backupPolicies/absent" + dp, group + "/providers/Microsoft.DataProtection/backupVaults/absent-vault/backupPolicies/absent" + dp},
				{"disk list", group + "/providers/Microsoft.Compute/disks" + computeAPI, absentGroup + "/providers/Microsoft.Compute/disks" + computeAPI},
			} {
				for _, method := range []string{"GET", "HEAD", "DELETE"} {
					pc, _, pb := s.do(method, pair.present, nobody, "")
					ac, _, ab := s.do(method, pair.absent, nobody, "")
					if pc == 405 && ac == 405 {
						continue // no such operation on this kind
					}
					if pc != 403 || ac != 403 || (method != "HEAD" && (cloudErrorCode(pb) != "AuthorizationFailed" || cloudErrorCode(ab) != "AuthorizationFailed")) {
						t.Errorf("%s %s: present %d %.200s, absent %d %.200s", method, pair.kind, pc, pb, ac, ab)
					}
				}
			}
		})
	}
}
