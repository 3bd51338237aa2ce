package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// vendoredSpec is one entry of testdata/specs/index.json, the list of
// vendored spec files by provider and api-version (internal/arm's shape
// table is generated from the same list).
type vendoredSpec struct {
	Provider string `json:"provider"`
	Version  string `json:"version"`
	Path     string `json:"path"`
}

// specOperation is one method and path of one vendored spec file.
type specOperation struct {
	spec      vendoredSpec
	method    string
	template  string
	match     *regexp.Regexp
	literals  int                // literal characters: the most specific template wins
	responses map[string]*opBody // status code or "default"
}

type opBody struct {
	schema *jsonschema.Schema // nil: the spec declares no body
}

// The official REST API specs (Swagger 2.0) of the versions the suite's
// clients send most, vendored under testdata/specs in the upstream layout
// (testdata/specs/README.md). Every ARM JSON response the suite receives is
// validated against the schema its operation declares at the api-version it
// was asked in, or, where that version's spec is not vendored, at the
// nearest vendored neighbour (docs/api-coverage.md lists which is which).
//
// Swagger 2.0 is not JSON Schema; each spec file is converted:
//   - a definition D becomes three schemas: D@open (its own keywords, allOf
//     parents as D@open too), D@plain (D@open closed with
//     unevaluatedProperties: false, so a property no allOf branch defines
//     fails) and D (D@plain, or, when D is a discriminator base, a choice by
//     the discriminator's value among D's descendants, found by walking
//     allOf, named by x-ms-discriminator-value or the definition name);
//   - a property that is not required and not x-nullable: false may be null
//     (autorest's and Azure's validator's reading of Swagger);
//   - format, pattern and length limits are not asserted: they describe
//     values, and this check is about shape;
//   - a property named coffer… is coffer's own, allowed wherever an object
//     has properties (docs/api-coverage.md lists them).
//
// specCatalog is every vendored operation, compiled once for the package.
type specCatalog struct {
	ops []*specOperation
	// checked counts validated responses by how their schema was chosen
	// ("own" version or "neighbour"); unchecked counts ARM JSON responses no
	// vendored spec describes, by provider.
	mu        sync.Mutex
	checked   map[string]int
	unchecked map[string]int
	failures  atomic.Int64
}

var (
	catalogOnce sync.Once
	catalog     *specCatalog
	catalogErr  error
)

func loadCatalog() (*specCatalog, error) {
	catalogOnce.Do(func() { catalog, catalogErr = buildCatalog(filepath.Join("testdata", "specs")) })
	return catalog, catalogErr
}

func buildCatalog(root string) (*specCatalog, error) {
	conv := &swaggerConverter{root: root, docs: map[string]map[string]any{}, out: map[string]map[string]any{}}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	cat := &specCatalog{checked: map[string]int{}, unchecked: map[string]int{}}
	type pending struct {
		op   *specOperation
		code string
		url  string
	}
	var todo []pending
	raw, err := os.ReadFile(filepath.Join(root, "index.json"))
	if err != nil {
		return nil, err
	}
	var index []vendoredSpec
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	for _, vs := range index {
		doc, err := conv.load(vs.Path)
		if err != nil {
			return nil, err
		}
		paths := map[string]any{}
		for _, key := range []string{"paths", "x-ms-paths"} {
			if m, ok := doc[key].(map[string]any); ok {
				for k, v := range m {
					paths[k] = v
				}
			}
		}
		for tmpl, item := range paths {
			item := item.(map[string]any)
			pathParams, _ := item["parameters"].([]any)
			for method, o := range item {
				if method == "parameters" {
					continue
				}
				op := o.(map[string]any)
				params := append(append([]any{}, pathParams...), asSlice(op["parameters"])...)
				re, lits := templateRegexp(conv, vs.Path, tmpl, params)
				so := &specOperation{spec: vs, method: strings.ToUpper(method), template: tmpl, match: re, literals: lits, responses: map[string]*opBody{}}
				for code, r := range op["responses"].(map[string]any) {
					r := conv.deref(vs.Path, r.(map[string]any))
					so.responses[code] = &opBody{}
					if s, ok := r["schema"].(map[string]any); ok {
						key := conv.addResponse(vs.Path, s)
						todo = append(todo, pending{so, code, conv.url(vs.Path) + "#/$defs/" + key})
					}
				}
				cat.ops = append(cat.ops, so)
			}
		}
	}
	if err := conv.finish(); err != nil {
		return nil, err
	}
	for file, doc := range conv.out {
		if err := c.AddResource(conv.url(file), doc); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	for _, p := range todo {
		s, err := c.Compile(p.url)
		if err != nil {
			return nil, fmt.Errorf("%s %s %s: %w", p.op.spec.Path, p.op.method, p.op.template, err)
		}
		p.op.responses[p.code].schema = s
	}
	return cat, nil
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

// templateRegexp turns a Swagger path template into a case-insensitive
// pattern. A parameter marked x-ms-skip-url-encoding (a scope, a full
// resource id) spans segments.
func templateRegexp(conv *swaggerConverter, file, tmpl string, params []any) (*regexp.Regexp, int) {
	multi := map[string]bool{}
	for _, p := range params {
		p := conv.deref(file, p.(map[string]any))
		if p["in"] == "path" && p["x-ms-skip-url-encoding"] == true {
			multi[p["name"].(string)] = true
		}
	}
	tmpl, _, _ = strings.Cut(tmpl, "?") // x-ms-paths disambiguation
	var b strings.Builder
	b.WriteString("(?i)^")
	lits := 0
	for _, seg := range strings.Split(strings.TrimPrefix(tmpl, "/"), "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			if multi[seg[1:len(seg)-1]] {
				// A scope may be empty: the tenant's role definitions
				// live at /providers/Microsoft.Authorization/....
				b.WriteString("(?:/.+)?")
			} else {
				b.WriteString("/[^/]+")
			}
			continue
		}
		b.WriteString("/" + regexp.QuoteMeta(seg))
		lits += len(seg)
	}
	b.WriteString("/?$")
	return regexp.MustCompile(b.String()), lits
}

// lastProvider is the namespace after the last /providers/ of a path.
func lastProvider(p string) string {
	segs := strings.Split(p, "/")
	for i := len(segs) - 2; i >= 0; i-- {
		if strings.EqualFold(segs[i], "providers") {
			return segs[i+1]
		}
	}
	return ""
}

// providerOf is the namespace whose spec describes a path: the one after
// its last /providers/, or Microsoft.Resources for a path without one
// (resource groups and their operation results).
func providerOf(p string) string {
	if ns := lastProvider(p); ns != "" {
		return ns
	}
	return "Microsoft.Resources"
}

// operationFor returns the operation of method and path at version: the
// spec of that version when vendored, else the oldest vendored version
// newer than it (a neighbour that defines at least what the version
// defines, as Azure's versions mostly add), else the newest.
func (cat *specCatalog) operationFor(method, path, version string) (*specOperation, bool) {
	provider := providerOf(path)
	var cands []*specOperation
	best := -1
	for _, o := range cat.ops {
		if o.method != method || !strings.EqualFold(o.spec.Provider, provider) || !o.match.MatchString(path) {
			continue
		}
		switch {
		case o.literals > best:
			best, cands = o.literals, []*specOperation{o}
		case o.literals == best:
			cands = append(cands, o)
		}
	}
	if len(cands) == 0 {
		return nil, false
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].spec.Version < cands[j].spec.Version })
	for _, o := range cands {
		if strings.EqualFold(o.spec.Version, version) {
			return o, true
		}
	}
	for _, o := range cands {
		if o.spec.Version > strings.ToLower(version) {
			return o, false
		}
	}
	return cands[len(cands)-1], false
}

// check validates one response; it returns "" when the body matches (or
// nothing describes it) and the problem otherwise.
func (cat *specCatalog) check(method string, u *url.URL, status int, contentType string, body []byte) string {
	version := ""
	for k, v := range u.Query() {
		if strings.EqualFold(k, "api-version") && len(v) > 0 {
			version = v[0]
		}
	}
	if version == "" {
		return "" // not an ARM call (health, SAS data plane)
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt != "application/json" && len(bytes.TrimSpace(body)) > 0 {
		return ""
	}
	path := u.EscapedPath()
	if p, err := url.PathUnescape(path); err == nil {
		path = p
	}
	op, own := cat.operationFor(method, path, version)
	if op == nil {
		cat.mu.Lock()
		cat.unchecked[providerOf(path)]++
		cat.mu.Unlock()
		return ""
	}
	against := op.spec.Version
	cat.mu.Lock()
	if own {
		cat.checked["own"]++
	} else {
		cat.checked["neighbour"]++
	}
	cat.mu.Unlock()
	resp, ok := op.responses[strconv.Itoa(status)]
	if !ok && status == http.StatusNoContent && len(bytes.TrimSpace(body)) == 0 && strings.Contains(strings.ToLower(op.template), "/operationresults/") {
		// ARM's async contract: a finished operation with no result (a
		// delete) answers its Location with 204 (docs/api-coverage.md).
		return ""
	}
	if !ok {
		if status < 400 {
			return fmt.Sprintf("status %d is not declared by %s %s (spec %s)", status, method, op.template, against)
		}
		resp, ok = op.responses["default"]
		if !ok {
			// Older Compute specs declare no error response at all;
			// nothing describes the CloudError there.
			return ""
		}
	}
	empty := len(bytes.TrimSpace(body)) == 0
	switch {
	case resp.schema == nil && empty:
		return ""
	case resp.schema == nil:
		return fmt.Sprintf("status %d of %s %s declares no body, got %s (spec %s)", status, method, op.template, clip(body), against)
	case empty && method == http.MethodHead:
		return "" // a HEAD answer never has a body, whatever its status declares
	case empty:
		return fmt.Sprintf("status %d of %s %s declares a body, got none (spec %s)", status, method, op.template, against)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Sprintf("body is not JSON: %v", err)
	}
	if err := resp.schema.Validate(inst); err != nil {
		return fmt.Sprintf("body does not match %s %s at %s (spec %s): %v\nbody: %s", method, op.template, version, against, err, clip(body))
	}
	return ""
}

func clip(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// schemaCheckingTransport validates every ARM JSON response against its
// operation's schema and fails t on a mismatch.
type schemaCheckingTransport struct {
	base http.RoundTripper
	t    testing.TB
}

func (s schemaCheckingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	cat, cerr := loadCatalog()
	if cerr != nil {
		s.t.Errorf("schema catalog: %v", cerr)
		return resp, nil
	}
	raw, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	if rerr != nil {
		return resp, nil // the caller sees the short body
	}
	if problem := cat.check(req.Method, req.URL, resp.StatusCode, resp.Header.Get("Content-Type"), raw); problem != "" {
		cat.failures.Add(1)
		s.t.Errorf("schema: %s %s (api-version %s): %s", req.Method, req.URL.Path, req.URL.Query().Get("api-version"), problem)
	}
	return resp, nil
}

// report prints how many responses were validated and how.
func (cat *specCatalog) report(w io.Writer) {
	cat.mu.Lock()
	defer cat.mu.Unlock()
	var un []string
	for p, n := range cat.unchecked {
		un = append(un, fmt.Sprintf("%s=%d", p, n))
	}
	sort.Strings(un)
	fmt.Fprintf(w, "schema check: %d responses against their own version's spec, %d against a neighbour; not described by a vendored spec: %s; mismatches: %d\n",
		cat.checked["own"], cat.checked["neighbour"], strings.Join(un, " "), cat.failures.Load())
}

// swaggerConverter turns Swagger 2.0 files into JSON Schema 2020-12
// documents whose $defs are the converted definitions.
type swaggerConverter struct {
	root string
	docs map[string]map[string]any // spec path -> parsed Swagger
	out  map[string]map[string]any // spec path -> converted document
	resp int
}

func (c *swaggerConverter) url(file string) string { return "file:///specs/" + file }

func (c *swaggerConverter) load(file string) (map[string]any, error) {
	file = filepath.ToSlash(filepath.Clean(file))
	if d, ok := c.docs[file]; ok {
		return d, nil
	}
	raw, err := os.ReadFile(filepath.Join(c.root, file))
	if err != nil {
		return nil, err
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	c.docs[file] = d
	c.out[file] = map[string]any{"$defs": map[string]any{}}
	return d, nil
}

// split resolves a $ref against file into the target file and pointer.
func (c *swaggerConverter) split(file, ref string) (string, string) {
	target, ptr, _ := strings.Cut(ref, "#")
	if target == "" {
		return file, ptr
	}
	return filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(file), target))), ptr
}

// deref follows a $ref to a parameter or response object.
func (c *swaggerConverter) deref(file string, m map[string]any) map[string]any {
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	f, ptr := c.split(file, ref)
	d, err := c.load(f)
	if err != nil {
		panic(err)
	}
	var cur any = d
	for _, p := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		cur = cur.(map[string]any)[p]
	}
	return c.deref(f, cur.(map[string]any))
}

func (c *swaggerConverter) addResponse(file string, s map[string]any) string {
	c.resp++
	key := fmt.Sprintf("response-%d", c.resp)
	c.out[file]["$defs"].(map[string]any)[key] = c.schema(file, s, false)
	return key
}

// defRef is the converted reference to definition name in file, in one of
// its forms ("" for D, "@open", "@plain").
func (c *swaggerConverter) defRef(file, ref, form string) map[string]any {
	f, ptr := c.split(file, ref)
	if _, err := c.load(f); err != nil {
		panic(err)
	}
	name := strings.TrimPrefix(ptr, "/definitions/")
	return map[string]any{"$ref": c.url(f) + "#/$defs/" + jsonPointerEscape(name+form)}
}

func jsonPointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// schema converts one Swagger schema; open leaves an object open for the
// allOf of a subtype.
func (c *swaggerConverter) schema(file string, s map[string]any, open bool) map[string]any {
	if ref, ok := s["$ref"].(string); ok {
		if open {
			return c.defRef(file, ref, "@open")
		}
		return c.defRef(file, ref, "")
	}
	out := map[string]any{}
	nullable := s["x-nullable"] == true
	if t, ok := s["type"].(string); ok {
		if nullable {
			out["type"] = []any{t, "null"}
		} else {
			out["type"] = t
		}
	}
	if e, ok := s["enum"].([]any); ok {
		if nullable {
			e = append(append([]any{}, e...), nil)
		}
		out["enum"] = e
	}
	required := map[string]bool{}
	if r, ok := s["required"].([]any); ok {
		out["required"] = r
		for _, n := range r {
			required[n.(string)] = true
		}
	}
	objectLike := false
	if props, ok := s["properties"].(map[string]any); ok {
		objectLike = true
		conv := map[string]any{}
		for name, p := range props {
			p := p.(map[string]any)
			ps := c.schema(file, p, false)
			if !required[name] && p["x-nullable"] != false {
				ps = map[string]any{"anyOf": []any{map[string]any{"type": "null"}, ps}}
			}
			conv[name] = ps
		}
		out["properties"] = conv
	}
	if items, ok := s["items"].(map[string]any); ok {
		out["items"] = c.schema(file, items, false)
	}
	switch ap := s["additionalProperties"].(type) {
	case bool:
		out["additionalProperties"] = ap
	case map[string]any:
		out["additionalProperties"] = c.schema(file, ap, false)
	}
	if all, ok := s["allOf"].([]any); ok {
		objectLike = true
		var conv []any
		for _, a := range all {
			conv = append(conv, c.schema(file, a.(map[string]any), true))
		}
		out["allOf"] = conv
	}
	if objectLike {
		// coffer's own properties (coffer…), written on purpose in every
		// version; docs/api-coverage.md says which and why.
		out["patternProperties"] = map[string]any{"^coffer[A-Z]": true}
	}
	if objectLike && !open {
		if _, ok := s["additionalProperties"]; !ok {
			out["unevaluatedProperties"] = false
		}
	}
	return out
}

// finish converts every definition of every loaded file, including files
// loaded while converting.
func (c *swaggerConverter) finish() error {
	done := map[string]bool{}
	for {
		var next string
		for f := range c.docs {
			if !done[f] {
				next = f
				break
			}
		}
		if next == "" {
			return nil
		}
		done[next] = true
		c.convertDefinitions(next)
	}
}

func (c *swaggerConverter) convertDefinitions(file string) {
	defs, _ := c.docs[file]["definitions"].(map[string]any)
	out := c.out[file]["$defs"].(map[string]any)
	// parents: definition -> the definitions of this file its allOf names.
	parents := map[string][]string{}
	for name, d := range defs {
		for _, a := range asSlice(d.(map[string]any)["allOf"]) {
			if ref, ok := a.(map[string]any)["$ref"].(string); ok {
				if f, ptr := c.split(file, ref); f == file {
					parents[name] = append(parents[name], strings.TrimPrefix(ptr, "/definitions/"))
				}
			}
		}
	}
	var ancestors func(n string, seen map[string]bool) map[string]bool
	ancestors = func(n string, seen map[string]bool) map[string]bool {
		for _, p := range parents[n] {
			if !seen[p] {
				seen[p] = true
				ancestors(p, seen)
			}
		}
		return seen
	}
	descendants := map[string][]string{}
	for name := range defs {
		for a := range ancestors(name, map[string]bool{}) {
			descendants[a] = append(descendants[a], name)
		}
	}
	discriminatorOf := func(n string) string {
		if d, ok := defs[n].(map[string]any)["discriminator"].(string); ok {
			return d
		}
		for a := range ancestors(n, map[string]bool{}) {
			if d, ok := defs[a].(map[string]any)["discriminator"].(string); ok {
				return d
			}
		}
		return ""
	}
	valueOf := func(n string) string {
		if v, ok := defs[n].(map[string]any)["x-ms-discriminator-value"].(string); ok {
			return v
		}
		return n
	}
	self := func(n, form string) map[string]any {
		return map[string]any{"$ref": "#/$defs/" + jsonPointerEscape(n+form)}
	}
	for name, d := range defs {
		d := d.(map[string]any)
		out[name+"@open"] = c.schema(file, d, true)
		conv := out[name+"@open"].(map[string]any)
		plain := self(name, "@open")
		if _, ok := conv["properties"]; ok || conv["allOf"] != nil {
			if _, ok := d["additionalProperties"]; !ok {
				plain["unevaluatedProperties"] = false
			}
		}
		out[name+"@plain"] = plain
		disc := discriminatorOf(name)
		subs := descendants[name]
		if disc == "" || len(subs) == 0 {
			out[name] = self(name, "@plain")
			continue
		}
		sort.Strings(subs)
		// A chain of if/then/else by the discriminator's value; a value no
		// subtype has must be the base's own.
		var chain map[string]any = map[string]any{"allOf": []any{
			self(name, "@plain"),
			map[string]any{"properties": map[string]any{disc: map[string]any{"const": valueOf(name)}}},
		}}
		for i := len(subs) - 1; i >= 0; i-- {
			chain = map[string]any{
				"if":   map[string]any{"required": []any{disc}, "properties": map[string]any{disc: map[string]any{"const": valueOf(subs[i])}}},
				"then": self(subs[i], "@plain"),
				"else": chain,
			}
		}
		out[name] = chain
	}
}
