package arm

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
		{"case-insensitive literals, canonical casing", "GET", "/SUBSCRIPTIONS/s1/resourcegroups/RG/PROVIDERS/microsoft.compute/DISKS/d1?api-version=2021-01-01", 200, "",
			"/subscriptions/s1/resourceGroups/RG/providers/Microsoft.Compute/disks/d1", "/subscriptions/s1/resourceGroups/RG/providers/Microsoft.Compute/disks/d1"},
		{"action's resource is the disk", "POST", "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1/beginGetAccess?api-version=2026-06-01", 200, "",
			"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1/beginGetAccess", "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1"},
		{"multi-segment scope", "GET", "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1/providers/Microsoft.Authorization/roleAssignments/a1?api-version=2021-01-01", 200, "", "", ""},
		{"base64 ids with '='", "GET", "/subscriptions/s1/locations/westus/operationStatus/YWJj==?api-version=2021-01-01", 200, "", "", ""},
		{"api-version value is case-insensitive", "GET", "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1?API-VERSION=2021-01-01", 200, "", "", ""},
		{"missing api-version", "GET", "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1", 400, "MissingApiVersionParameter", "", ""},
		{"unknown api-version", "GET", "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1?api-version=2020-01-01", 400, "InvalidApiVersionParameter", "", ""},
		{"no route", "GET", "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/galleries/g?api-version=2021-01-01", 404, "InvalidResourceType", "", ""},
		{"wrong method", "DELETE", "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/disks/d1?api-version=2021-01-01", 405, "MethodNotAllowed", "", ""},
		{"empty segment is no name", "GET", "/subscriptions/s1/resourceGroups//providers/Microsoft.Compute/disks/d1?api-version=2021-01-01", 404, "InvalidResourceType", "", ""},
		{"forbidden", "PUT", "/subscriptions/s1/providers/Microsoft.Authorization/roleAssignments/a1?api-version=2021-01-01", 403, "AuthorizationFailed", "", ""},
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
	if len(seen) == 0 || seen[0] != "Microsoft.Compute/disks/read@/subscriptions/s1/resourceGroups/RG/providers/Microsoft.Compute/disks/d1" {
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
