package arm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/errs"
)

type anyToken struct{}

func (anyToken) Verify(_ context.Context, raw string) (auth.Principal, error) {
	if raw != "good" {
		return auth.Principal{}, errs.E(errs.Unauthenticated, "InvalidAuthenticationToken", "bad token")
	}
	return auth.Principal{ObjectID: "p1"}, nil
}

type denyWrites struct{ scopes *[]string }

func (d denyWrites) Authorize(_ context.Context, p auth.Principal, action, scope string) error {
	*d.scopes = append(*d.scopes, action+"@"+scope)
	if strings.HasSuffix(action, "/write") {
		return errs.E(errs.Forbidden, "AuthorizationFailed", "no writes for %s", p.ObjectID)
	}
	return nil
}

func TestRouting(t *testing.T) {
	var seen []string
	rt := NewRouter(anyToken{}, denyWrites{&seen}, discard(), nil)
	v := APIVersions{Provider: "Test", Versions: []string{"2021-01-01", "2026-06-01"}}
	echo := func(_ context.Context, r *Request) (*Response, error) {
		return OK(map[string]any{"canonical": r.Canonical, "resource": r.ResourceID(), "params": r.Params}), nil
	}
	rt.Handle(Route{Method: "GET", Pattern: "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{disk}", Versions: v, Action: "Microsoft.Compute/disks/read", Handler: echo})
	rt.Handle(Route{Method: "POST", Pattern: "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/disks/{disk}/beginGetAccess", Versions: v, Action: "Microsoft.Compute/disks/beginGetAccess/action", Handler: echo})
	rt.Handle(Route{Method: "GET", Pattern: "/{scope...}/providers/Microsoft.Authorization/roleAssignments/{name}", Versions: v, Action: "Microsoft.Authorization/roleAssignments/read", Handler: echo})
	rt.Handle(Route{Method: "PUT", Pattern: "/{scope...}/providers/Microsoft.Authorization/roleAssignments/{name}", Versions: v, Action: "Microsoft.Authorization/roleAssignments/write", Handler: echo})
	rt.Handle(Route{Method: "GET", Pattern: "/subscriptions/{sub}/locations/{loc}/operationStatus/{op}", Versions: v, Action: "x/read", Handler: echo})

	cases := []struct {
		name, method, path  string
		status              int
		code                string
		canonical, resource string
	}{
		{"case-insensitive literals, canonical casing", "GET", "/SUBSCRIPTIONS/11111111-2222-3333-4444-555555555555/resourcegroups/RG/PROVIDERS/microsoft.compute/DISKS/d1?api-version=2021-01-01", 200, "",
			"/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/RG/providers/Microsoft.Compute/disks/d1", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/RG/providers/Microsoft.Compute/disks/d1"},
		{"action's resource is the disk", "POST", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/disks/d1/beginGetAccess?api-version=2026-06-01", 200, "",
			"/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/disks/d1/beginGetAccess", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"},
		{"multi-segment scope", "GET", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/disks/d1/providers/Microsoft.Authorization/roleAssignments/aaaaaaaa-0000-0000-0000-000000000001?api-version=2021-01-01", 200, "", "", ""},
		{"base64 ids with '='", "GET", "/subscriptions/11111111-2222-3333-4444-555555555555/locations/westus/operationStatus/YWJj==?api-version=2021-01-01", 200, "", "", ""},
		{"api-version value is case-insensitive", "GET", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/disks/d1?API-VERSION=2021-01-01", 200, "", "", ""},
		{"missing api-version", "GET", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/disks/d1", 400, "MissingApiVersionParameter", "", ""},
		{"unknown api-version", "GET", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/disks/d1?api-version=2020-01-01", 400, "InvalidApiVersionParameter", "", ""},
		{"no route", "GET", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/galleries/g?api-version=2021-01-01", 404, "InvalidResourceType", "", ""},
		{"wrong method", "DELETE", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/disks/d1?api-version=2021-01-01", 405, "MethodNotAllowed", "", ""},
		{"empty segment is no name", "GET", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups//providers/Microsoft.Compute/disks/d1?api-version=2021-01-01", 404, "InvalidResourceType", "", ""},
		{"forbidden", "PUT", "/subscriptions/11111111-2222-3333-4444-555555555555/providers/Microsoft.Authorization/roleAssignments/aaaaaaaa-0000-0000-0000-000000000001?api-version=2021-01-01", 403, "AuthorizationFailed", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			req.Header.Set("Authorization", "Bearer good")
			w := httptest.NewRecorder()
			rt.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			var body map[string]any
			json.Unmarshal(w.Body.Bytes(), &body)
			if tc.code != "" {
				e, _ := body["error"].(map[string]any)
				if e["code"] != tc.code {
					t.Fatalf("code %v, want %s", e["code"], tc.code)
				}
			}
			if tc.canonical != "" && (body["canonical"] != tc.canonical || body["resource"] != tc.resource) {
				t.Fatalf("canonical %v resource %v", body["canonical"], body["resource"])
			}
			if w.Header().Get("x-ms-request-id") == "" {
				t.Fatal("no x-ms-request-id")
			}
		})
	}
	if len(seen) == 0 || seen[0] != "Microsoft.Compute/disks/read@/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/RG/providers/Microsoft.Compute/disks/d1" {
		t.Fatalf("authorizer saw %v", seen)
	}
}

func TestUnauthenticatedBeforeRouting(t *testing.T) {
	rt := NewRouter(anyToken{}, nil, discard(), nil)
	for _, h := range []string{"", "Basic abc", "Bearer ", "Bearer bad"} {
		req := httptest.NewRequest("GET", "/nothing/here", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized || !strings.HasPrefix(w.Header().Get("WWW-Authenticate"), "Bearer ") {
			t.Fatalf("%q: %d %q", h, w.Code, w.Header().Get("WWW-Authenticate"))
		}
	}
}

func TestStatusTable(t *testing.T) {
	for kind, want := range map[errs.Kind]int{errs.Invalid: 400, errs.NotFound: 404, errs.Conflict: 409, errs.Forbidden: 403,
		errs.Unauthenticated: 401, errs.Transient: 503, errs.Internal: 500, errs.Kind(99): 500} {
		if got := Status(kind); got != want {
			t.Errorf("Status(%d) = %d, want %d", kind, got, want)
		}
	}
	status, ce := ToCloudError(errs.E(errs.Internal, "Secret", "db password is hunter2"))
	if status != 500 || strings.Contains(ce.Error.Message, "hunter2") {
		t.Fatalf("internal detail leaked: %+v", ce)
	}
}

// hostileNames are names no resource may have; each must be refused by the
// front door before a handler runs.
var hostileNames = map[string]string{
	"escaped slash":     "a%2Fb",
	"dot dot":           "..",
	"dot":               ".",
	"NUL":               "x%00y",
	"invalid UTF-8":     "x%FFy",
	"too long":          strings.Repeat("a", 5000),
	"emoji":             "%F0%9F%98%80",
	"control":           "x%0Ay",
	"percent":           "x%25y",
	"trailing space":    "x%20",
	"backslash":         "x%5Cy",
	"unescaped percent": "x%ZZ",
}

func TestRouterRefusesHostileNames(t *testing.T) {
	reached := 0
	var gotID ResourceID
	rt := NewRouter(anyToken{}, denyWrites{new([]string)}, discard(), nil)
	v := APIVersions{Provider: "Test", Versions: []string{"2021-01-01"}}
	h := func(_ context.Context, r *Request) (*Response, error) {
		reached++
		gotID = r.ID
		return OK(map[string]string{}), nil
	}
	const rg = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
	for _, p := range []string{
		rg,
		rg + "/providers/Microsoft.Compute/disks/{diskName}",
		rg + "/providers/Microsoft.Compute/snapshots/{snapshotName}",
		rg + "/providers/Microsoft.DataProtection/backupVaults/{vaultName}",
		rg + "/providers/Microsoft.DataProtection/backupVaults/{vaultName}/backupPolicies/{backupPolicyName}",
		rg + "/providers/Microsoft.DataProtection/backupVaults/{vaultName}/backupInstances/{backupInstanceName}",
		"/{scope...}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}",
	} {
		rt.Handle(Route{Method: "GET", Pattern: p, Versions: v, Action: "x/read", Handler: h})
	}
	base := "/subscriptions/" + testSub + "/resourceGroups/rg"
	paths := map[string]string{
		"group":           "/subscriptions/" + testSub + "/resourceGroups/%s",
		"disk":            base + "/providers/Microsoft.Compute/disks/%s",
		"snapshot":        base + "/providers/Microsoft.Compute/snapshots/%s",
		"vault":           base + "/providers/Microsoft.DataProtection/backupVaults/%s",
		"policy":          base + "/providers/Microsoft.DataProtection/backupVaults/v1/backupPolicies/%s",
		"instance":        base + "/providers/Microsoft.DataProtection/backupVaults/v1/backupInstances/%s",
		"disk in a scope": base + "/providers/Microsoft.Compute/disks/%s/providers/Microsoft.Authorization/roleAssignments/aaaaaaaa-0000-0000-0000-000000000001",
		"assignment":      base + "/providers/Microsoft.Authorization/roleAssignments/%s",
	}
	get := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.RawPath, req.URL.Path = path, mustUnescape(t, path)
		req.URL.RawQuery = "api-version=2021-01-01"
		req.Header.Set("Authorization", "Bearer good")
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, req)
		return w
	}
	for kind, pattern := range paths {
		for what, name := range hostileNames {
			t.Run(kind+"/"+what, func(t *testing.T) {
				w := get(strings.Replace(pattern, "%s", name, 1))
				code := errorCode(t, w)
				if w.Code != 400 || !strings.HasPrefix(code, "Invalid") {
					t.Fatalf("status %d code %q: %s", w.Code, code, w.Body)
				}
			})
		}
	}
	if reached != 0 {
		t.Fatalf("a hostile name reached a handler %d times", reached)
	}
	for _, ok := range [][2]string{{"group", "My_RG.(1)"}, {"disk", "Data-1_"}, {"snapshot", "s.1"}, {"vault", "vault-1"},
		{"policy", "Policy_1.a"}, {"instance", "my_rg-Disk.1-3df6ac08-9496-4839-8fb5-8b78e594f166"}, {"assignment", "aaaaaaaa-0000-0000-0000-000000000001"}} {
		kind, name := ok[0], ok[1]
		w := get(strings.Replace(paths[kind], "%s", name, 1))
		if w.Code != 200 || gotID.Name() != name {
			t.Fatalf("%s %q: %d %s, id %q", kind, name, w.Code, w.Body, gotID)
		}
	}
	if gotID.Type() != "Microsoft.Authorization/roleAssignments" || gotID.Parent().String() != base {
		t.Fatalf("request id %q type %q", gotID, gotID.Type())
	}
}

func mustUnescape(t *testing.T, p string) string {
	t.Helper()
	u, err := url.PathUnescape(p)
	if err != nil {
		return p
	}
	return u
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var ce CloudError
	if err := json.Unmarshal(w.Body.Bytes(), &ce); err != nil {
		t.Fatalf("not a CloudError: %s", w.Body)
	}
	return ce.Error.Code
}

func TestValidateNameRules(t *testing.T) {
	for _, tc := range []struct {
		typ, name string
		ok        bool
	}{
		{"Microsoft.Resources/resourceGroups", strings.Repeat("g", 90), true},
		{"Microsoft.Resources/resourceGroups", strings.Repeat("g", 91), false},
		{"Microsoft.Resources/resourceGroups", "rg.", false},
		{"Microsoft.Resources/resourceGroups", "(rg)-1_x.y", true},
		{"microsoft.compute/DISKS", strings.Repeat("d", 80), true},
		{"Microsoft.Compute/disks", strings.Repeat("d", 81), false},
		{"Microsoft.Compute/disks", "-d", false},
		{"Microsoft.Compute/disks", "d-", false},
		{"Microsoft.Compute/disks", "d_", true},
		{"Microsoft.Compute/snapshots", "s.1", true},
		{"Microsoft.Compute/snapshots", "s.", false},
		{"Microsoft.DataProtection/backupVaults", "v", false},
		{"Microsoft.DataProtection/backupVaults", "1v", false},
		{"Microsoft.DataProtection/backupVaults", "v-", false},
		{"Microsoft.DataProtection/backupVaults", "v" + strings.Repeat("a", 49), true},
		{"Microsoft.DataProtection/backupVaults", "v" + strings.Repeat("a", 50), false},
		{"Microsoft.DataProtection/backupVaults/backupPolicies", strings.Repeat("p", 150), true},
		{"Microsoft.DataProtection/backupVaults/backupPolicies", strings.Repeat("p", 151), false},
		{"Microsoft.DataProtection/backupVaults/backupInstances", "rg(1)-disk_a.b-3df6ac08-9496-4839-8fb5-8b78e594f166", true},
		{"Microsoft.DataProtection/backupVaults/backupInstances", strings.Repeat("b", 209), false},
		{"Microsoft.DataProtection/backupVaults/backupInstances", "b.", false},
		{"Microsoft.Authorization/roleAssignments", "not-a-guid", false},
		{"Microsoft.Authorization/roleDefinitions", "B24988AC-6180-42A0-AB88-20F7382DD24C", true},
		{"Microsoft.Resources/subscriptions", "s1", false},
		{"Contoso.Widgets/gizmos", "anything at all", true},
	} {
		err := ValidateName(tc.typ, tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%s, %.20q) = %v, want ok=%v", tc.typ, tc.name, err, tc.ok)
		}
		if err != nil && (errs.KindOf(err) != errs.Invalid || !strings.Contains(err.Error(), "'")) {
			t.Errorf("ValidateName(%s): %v", tc.typ, err)
		}
	}
	if codeOf(ValidateName("Microsoft.Compute/disks", "-")) != "InvalidResourceName" {
		t.Fatal("disk name refusal is not InvalidResourceName")
	}
}

func TestQueryParameters(t *testing.T) {
	rt := NewRouter(anyToken{}, denyWrites{new([]string)}, discard(), nil)
	v := APIVersions{Provider: "Test", Versions: []string{"2021-04-01"}}
	rt.Handle(Route{Method: "GET", Pattern: "/subscriptions/{subscriptionId}/resourceGroups", Versions: v, Action: "x/read",
		Handler: func(_ context.Context, r *Request) (*Response, error) {
			if _, _, err := r.PageArgs(); err != nil {
				return nil, err
			}
			return OK(map[string]string{}), nil
		}})
	path := "/subscriptions/" + testSub + "/resourceGroups?"
	token := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	for _, tc := range []struct {
		name, query string
		status      int
		code        string
	}{
		{"one api-version", "api-version=2021-04-01", 200, ""},
		{"api-version twice, bad first", "api-version=garbage&API-VERSION=2021-04-01", 400, "InvalidQueryParameter"},
		{"api-version twice, bad last", "API-VERSION=2021-04-01&api-version=garbage", 400, "InvalidQueryParameter"},
		{"same spelling twice", "api-version=2021-04-01&api-version=2021-04-01", 400, "InvalidQueryParameter"},
		{"$top twice", "api-version=2021-04-01&$top=1&$TOP=2", 400, "InvalidQueryParameter"},
		{"invalid UTF-8 value", "api-version=2021-04-01&$filter=%FF", 400, "InvalidQueryParameterValue"},
		{"NUL in value", "api-version=2021-04-01&$filter=a%00b", 400, "InvalidQueryParameterValue"},
		{"bad escape", "api-version=2021-04-01&$filter=%ZZ", 400, "InvalidQueryParameterValue"},
		{"invalid UTF-8 name", "api-version=2021-04-01&%FF=1", 400, "InvalidQueryParameter"},
		{"issued skip token", "api-version=2021-04-01&$skipToken=" + token([]byte("/subscriptions/x/resourcegroups/a")), 200, ""},
		{"skip token of 00 FF", "api-version=2021-04-01&$skipToken=" + token([]byte{0x00, 0xff}), 400, "InvalidSkipToken"},
		{"skip token with NUL", "api-version=2021-04-01&$skipToken=" + token([]byte("a\x00b")), 400, "InvalidSkipToken"},
		{"skip token of invalid UTF-8", "api-version=2021-04-01&$skipToken=" + token([]byte("a\xc3")), 400, "InvalidSkipToken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Many runs: with Go's map order a duplicate used to answer 200
			// or 400 at random.
			for range 20 {
				req := httptest.NewRequest("GET", path+tc.query, nil)
				req.Header.Set("Authorization", "Bearer good")
				w := httptest.NewRecorder()
				rt.ServeHTTP(w, req)
				if w.Code != tc.status {
					t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
				}
				if tc.code != "" && errorCode(t, w) != tc.code {
					t.Fatalf("code %q, want %q", errorCode(t, w), tc.code)
				}
			}
		})
	}
}

func TestBodyMustBeUTF8(t *testing.T) {
	reached := false
	rt := NewRouter(anyToken{}, nil, discard(), nil)
	v := APIVersions{Provider: "Test", Versions: []string{"2021-04-01"}}
	rt.Handle(Route{Method: "PUT", Pattern: "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}", Versions: v, Action: "x/write",
		Handler: func(context.Context, *Request) (*Response, error) {
			reached = true
			return OK(map[string]string{}), nil
		}})
	req := httptest.NewRequest("PUT", "/subscriptions/"+testSub+"/resourceGroups/rg?api-version=2021-04-01",
		strings.NewReader("{\"location\":\"west\xffus\"}"))
	req.Header.Set("Authorization", "Bearer good")
	w := httptest.NewRecorder()
	rt.ServeHTTP(w, req)
	if w.Code != 400 || errorCode(t, w) != "InvalidRequestContent" || reached {
		t.Fatalf("status %d reached %v: %s", w.Code, reached, w.Body)
	}
}

// TestAuxiliaryTokens: x-ms-authorization-auxiliary tokens reach the
// handler as verified principals; one that does not verify, or a header in
// another form, fails the request as a bad main token does.
func TestAuxiliaryTokens(t *testing.T) {
	rt := NewRouter(anyToken{}, nil, discard(), nil)
	v := APIVersions{Provider: "Test", Versions: []string{"2026-06-01"}}
	rt.Handle(Route{Method: "GET", Pattern: "/subscriptions/{sub}/resourceGroups/{rg}", Versions: v, Action: "x/read",
		Handler: func(_ context.Context, r *Request) (*Response, error) {
			return OK(map[string]any{"aux": len(r.Auxiliary)}), nil
		}})
	cases := []struct {
		header string
		status int
		aux    float64
	}{
		{"", 200, 0},
		{"Bearer good", 200, 1},
		{"Bearer good, bearer good", 200, 2},
		{"Bearer good, Bearer bad", 401, 0},
		{"good", 401, 0},
		{"Bearer ", 401, 0},
		{"Bearer good,Bearer good,Bearer good,Bearer good", 401, 0},
	}
	for _, c := range cases {
		req := httptest.NewRequest("GET", "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg?api-version=2026-06-01", nil)
		req.Header.Set("Authorization", "Bearer good")
		if c.header != "" {
			req.Header.Set("x-ms-authorization-auxiliary", c.header)
		}
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, req)
		var body map[string]any
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != c.status || (c.status == 200 && body["aux"] != c.aux) {
			t.Errorf("%q: %d %s, want %d with %v auxiliary", c.header, w.Code, w.Body, c.status, c.aux)
		}
	}
}
