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
	"unicode/utf8"
)

// fuzzRouter has the shapes of route the providers register: fixed
// resource ids, an action after the id, a multi-segment scope, and
// tenant-wide lists.
func fuzzRouter(reached *Request) *Router {
	rt := NewRouter(anyToken{}, denyWrites{new([]string)}, discard(), nil)
	v := APIVersions{Provider: "Test", Versions: []string{"2021-04-01", "2025-01-02"}}
	h := func(_ context.Context, r *Request) (*Response, error) {
		*reached = *r
		if _, _, err := r.PageArgs(); err != nil {
			return nil, err
		}
		return OK(map[string]string{"id": r.ResourceID()}), nil
	}
	const rg = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
	for _, p := range []struct{ method, pattern string }{
		{"GET", "/subscriptions/{subscriptionId}/resourceGroups"},
		{"GET", rg}, {"PUT", rg}, {"DELETE", rg},
		{"GET", rg + "/providers/Microsoft.Compute/disks/{diskName}"},
		{"POST", rg + "/providers/Microsoft.Compute/disks/{diskName}/beginGetAccess"},
		{"GET", rg + "/providers/Microsoft.Compute/snapshots/{snapshotName}"},
		{"GET", rg + "/providers/Microsoft.DataProtection/backupVaults/{vaultName}/backupInstances/{backupInstanceName}"},
		{"GET", "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/locations/{location}/operations/{operationId}"},
		{"GET", "/{scope...}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}"},
		{"GET", "/{scope...}/providers/Microsoft.Authorization/roleAssignments"},
		{"GET", "/providers/Microsoft.Authorization/roleDefinitions/{roleDefinitionId}"},
	} {
		rt.Handle(Route{Method: p.method, Pattern: p.pattern, Versions: v, Action: "x/read", Handler: h})
	}
	return rt
}

// FuzzRouterPath sends fuzzed request targets (path and query) through the
// front door. It never answers 5xx, every refusal is a CloudError, and a
// request that reaches a handler carries a canonical path that names the
// same segments as the request and, when it has one, a valid resource id.
func FuzzRouterPath(f *testing.F) {
	sub := "/subscriptions/" + testSub
	for _, s := range []string{
		sub + "/resourceGroups?api-version=2021-04-01",
		sub + "/RESOURCEGROUPS/rg?API-VERSION=2021-04-01",
		sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d1?api-version=2025-01-02",
		sub + "/resourceGroups/rg/providers/microsoft.compute/disks/d1/beginGetAccess?api-version=2025-01-02",
		sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d1/providers/Microsoft.Authorization/roleAssignments?api-version=2021-04-01&$filter=atScope()",
		sub + "/providers/Microsoft.Authorization/roleAssignments/aaaaaaaa-0000-0000-0000-000000000001?api-version=2021-04-01",
		"/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c?api-version=2021-04-01",
		sub + "/providers/Microsoft.Compute/locations/westus/operations/YWJj==?api-version=2021-04-01",
		sub + "/resourceGroups?api-version=2021-04-01&$top=5&$skipToken=L3N1YnNjcmlwdGlvbnMveA",
		sub + "/resourceGroups/a%2Fb?api-version=2021-04-01",
		sub + "/resourceGroups/%ZZ?api-version=2021-04-01&api-version=2021-04-01",
		"//providers/Microsoft.Authorization/roleAssignments?api-version=2021-04-01",
		sub + "/resourceGroups/rg/providers/Microsoft.DataProtection/backupVaults/v1/backupInstances/b-1?api-version=2025-01-02",
		"/?%FF=%00",
	} {
		f.Add(uint8(0), s)
	}
	f.Add(uint8(1), sub+"/resourceGroups/rg?api-version=2021-04-01")
	f.Add(uint8(2), sub+"/resourceGroups/rg?api-version=2021-04-01")
	f.Add(uint8(3), sub+"/resourceGroups/rg/providers/Microsoft.Compute/disks/d1/beginGetAccess?api-version=2021-04-01")

	var reached Request
	rt := fuzzRouter(&reached)
	methods := []string{"GET", "PUT", "DELETE", "POST", "PATCH", "HEAD"}
	f.Fuzz(func(t *testing.T, method uint8, target string) {
		// net/http refuses what it cannot parse before any handler runs.
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" || u.Scheme != "" {
			return
		}
		req := &http.Request{Method: methods[int(method)%len(methods)], URL: u, RequestURI: target, Host: "coffer.test",
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Authorization": {"Bearer good"}}}
		req = req.WithContext(context.Background())
		reached = Request{}
		w := httptest.NewRecorder()
		rt.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %q: %d %s", req.Method, target, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var ce CloudError
			if err := json.Unmarshal(w.Body.Bytes(), &ce); err != nil || ce.Error.Code == "" {
				t.Fatalf("%s %q: %d is no CloudError: %s", req.Method, target, w.Code, w.Body)
			}
			return
		}
		if reached.Route == nil {
			t.Fatalf("%s %q: %d without a handler", req.Method, target, w.Code)
		}
		if want := "/" + strings.Join(splitPath(u.EscapedPath()), "/"); !strings.EqualFold(reached.Canonical, want) {
			t.Fatalf("%q: canonical path %q is not the request's %q", target, reached.Canonical, want)
		}
		if !reached.ID.IsZero() {
			if err := validateNames(reached.ID); err != nil {
				t.Fatalf("%q: a handler got id %q with an invalid name: %v", target, reached.ID, err)
			}
			if !strings.EqualFold(reached.ID.String(), reached.ResourceID()) {
				t.Fatalf("%q: id %q is not the resource path %q", target, reached.ID, reached.ResourceID())
			}
		}
	})
}

// FuzzSkipToken decodes fuzzed $skipToken and $top values. A token is
// refused with InvalidSkipToken or decodes to a key the store can hold
// (UTF-8, no NUL); $top is refused or within 1..1000. And every key a list
// can hand out (a nextLink's $skipToken) comes back as the same key.
func FuzzSkipToken(f *testing.F) {
	for _, s := range []struct{ token, top, key string }{
		{"L3N1YnNjcmlwdGlvbnMveA", "", "/subscriptions/x/resourcegroups/a"},
		{"", "100", "/subscriptions/8f1d7c1e-3b7a-4c55-9d43-2f0e6a0b9c11/resourcegroups/rg/providers/microsoft.compute/disks/d1"},
		{"AP8", "0", "a b"},
		{"YQBi", "1001", "ü"},
		{"YcM", "-1", "key=with&query?chars#"},
		{"====", "1e3", "x"},
		{"L3N1YnNjcmlwdGlvbnMveA==", "00010", "/"},
	} {
		f.Add(s.token, s.top, s.key)
	}
	f.Fuzz(func(t *testing.T, token, top, key string) {
		q := url.Values{"api-version": {"2021-04-01"}}
		if token != "" {
			q.Set("$skipToken", token)
		}
		if top != "" {
			q.Set("$top", top)
		}
		r := &Request{HTTP: httptest.NewRequest("GET", "https://coffer.test/subscriptions/s/resourceGroups?"+q.Encode(), nil),
			BaseURL: "https://coffer.test", APIVersion: "2021-04-01"}
		after, limit, err := r.PageArgs()
		if err != nil {
			if _, ce := ToCloudError(err); ce.Error.Code != "InvalidSkipToken" && ce.Error.Code != "InvalidQueryParameterValue" {
				t.Fatalf("token %q top %q: refused with %q", token, top, ce.Error.Code)
			}
		} else {
			if !utf8.ValidString(after) || strings.ContainsRune(after, 0) {
				t.Fatalf("token %q decoded to %q, which the store cannot hold", token, after)
			}
			if limit < 1 || limit > 1000 {
				t.Fatalf("$top %q gave limit %d", top, limit)
			}
		}

		if key == "" || !utf8.ValidString(key) || strings.ContainsRune(key, 0) {
			return // not a key the store hands out
		}
		resp := List(r, []int{1}, key)
		next, err := url.Parse(resp.Body.(ListBody[int]).NextLink)
		if err != nil {
			t.Fatalf("nextLink for %q: %v", key, err)
		}
		follow := &Request{HTTP: httptest.NewRequest("GET", next.String(), nil), BaseURL: r.BaseURL}
		got, _, err := follow.PageArgs()
		if _, ce := ToCloudError(err); err != nil && ce.Error.Code == "InvalidSkipToken" {
			t.Fatalf("nextLink %q for key %q refused: %v", next, key, err)
		}
		if err == nil && got != key {
			t.Fatalf("key %q came back as %q", key, got)
		}
		if enc := next.Query().Get("$skipToken"); enc != base64.RawURLEncoding.EncodeToString([]byte(key)) {
			t.Fatalf("nextLink token %q", enc)
		}
	})
}
