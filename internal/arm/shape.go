package arm

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Responses are written in the shape of the api-version they were asked
// in: a property the version's schema does not define is dropped, so a
// client of an older version reads what that version defines. The table of
// shapes is generated from the official specs the e2e suite vendors (and
// validates every response against); a version whose spec is not vendored
// takes the shape of the oldest vendored version after it, else the newest
// (docs/api-coverage.md lists which is which).
//
//go:generate go run ./shapegen -specs ../../test/e2e/testdata/specs -out shapes.json
//go:embed shapes.json
var shapesJSON []byte

type shapeTable struct {
	// ops: provider (lower case) -> operation key -> its vendored
	// versions, oldest first.
	ops    map[string]map[string][]shapeOp
	shapes map[string]*shape
}

type shapeOp struct {
	Provider  string            `json:"provider"`
	Version   string            `json:"version"`
	Key       string            `json:"key"`
	Request   string            `json:"request"`
	Responses map[string]string `json:"responses"`
}

type shape struct {
	Props map[string]string `json:"props"`
	Items string            `json:"items"`
	Map   string            `json:"map"`
	Open  bool              `json:"open"`
	Disc  string            `json:"disc"`
	Subs  map[string]string `json:"subs"`
	// Enums and ReadOnly are read by readRequest.
	Enums    map[string][]string `json:"enums"`
	ReadOnly []string            `json:"readOnly"`
}

var loadShapes = sync.OnceValue(func() *shapeTable {
	var raw struct {
		Ops    []shapeOp         `json:"ops"`
		Shapes map[string]*shape `json:"shapes"`
	}
	if err := json.Unmarshal(shapesJSON, &raw); err != nil {
		panic("arm: shapes.json: " + err.Error()) // generated and embedded: a build defect
	}
	t := &shapeTable{ops: map[string]map[string][]shapeOp{}, shapes: raw.Shapes}
	for _, o := range raw.Ops {
		p := strings.ToLower(o.Provider)
		if t.ops[p] == nil {
			t.ops[p] = map[string][]shapeOp{}
		}
		t.ops[p][o.Key] = append(t.ops[p][o.Key], o)
	}
	for _, byKey := range t.ops {
		for _, vs := range byKey {
			sort.Slice(vs, func(i, j int) bool { return vs[i].Version < vs[j].Version })
		}
	}
	return t
})

// routeKey is a route's operation key as shapegen writes it: parameters
// {}, scopes dropped, lower case.
func routeKey(method, pattern string) string {
	var segs []string
	for _, s := range strings.Split(strings.Trim(pattern, "/"), "/") {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			if strings.HasSuffix(s, "...}") {
				continue
			}
			s = "{}"
		}
		segs = append(segs, strings.ToLower(s))
	}
	return method + " /" + strings.Join(segs, "/")
}

// shapeFor returns the operation whose schemas shape a route's responses
// at version, and whether that is the version's own spec.
func (t *shapeTable) shapeFor(route *Route, version string) (*shapeOp, bool) {
	if t == nil {
		return nil, false
	}
	vs := t.ops[strings.ToLower(route.Versions.Provider)][routeKey(route.Method, route.Pattern)]
	if len(vs) == 0 {
		return nil, false
	}
	v := strings.ToLower(version)
	for i := range vs {
		if vs[i].Version == v {
			return &vs[i], true
		}
	}
	for i := range vs {
		if vs[i].Version > v {
			return &vs[i], false
		}
	}
	return &vs[len(vs)-1], false
}

// shapingWriter drops, from a JSON body, what the operation's schema at
// the request's version does not define.
type shapingWriter struct {
	http.ResponseWriter
	table  *shapeTable
	op     *shapeOp
	values valueTexts
	status int
}

func (w *shapingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *shapingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	name, ok := w.op.Responses[strconv.Itoa(w.status)]
	if !ok && w.status >= 400 {
		name, ok = w.op.Responses["default"]
	}
	if !ok || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		return w.ResponseWriter.Write(b)
	}
	out, err := w.table.prune(bytes.TrimSpace(b), name, w.values)
	if err != nil {
		return w.ResponseWriter.Write(b) // not ours to judge: written as it was
	}
	if _, err := w.ResponseWriter.Write(append(out, '\n')); err != nil {
		return 0, err
	}
	return len(b), nil
}

// prune rewrites the JSON value raw keeping only what shape name defines,
// in the order it was written, and writing values in the texts of the
// version asked for.
func (t *shapeTable) prune(raw []byte, name string, values valueTexts) ([]byte, error) {
	sh := t.shapes[name]
	if name == "" || name == "*" || sh == nil || sh.Open || len(raw) == 0 {
		return raw, nil
	}
	switch raw[0] {
	case '[':
		if sh.Items == "" {
			return raw, nil
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, err
		}
		var b bytes.Buffer
		b.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				b.WriteByte(',')
			}
			out, err := t.prune(it, sh.Items, values)
			if err != nil {
				return nil, err
			}
			b.Write(out)
		}
		b.WriteByte(']')
		return b.Bytes(), nil
	case '{':
	default:
		return raw, nil
	}
	keys, vals, err := objectMembers(raw)
	if err != nil {
		return nil, err
	}
	if sh.Disc != "" {
		for i, k := range keys {
			var v string
			if k == sh.Disc && json.Unmarshal(vals[i], &v) == nil {
				if sub, ok := sh.Subs[v]; ok && t.shapes[sub] != nil {
					sh, name = t.shapes[sub], sub
				}
			}
		}
	}
	_, def, _ := strings.Cut(name, "#")
	var b bytes.Buffer
	b.WriteByte('{')
	n := 0
	for i, k := range keys {
		child, ok := sh.Props[k]
		if !ok && sh.Map != "" {
			child, ok = sh.Map, true
		}
		if !ok && isExtension(k) {
			child, ok = "", true
		}
		if !ok {
			continue
		}
		out, err := t.prune(vals[i], child, values)
		if err != nil {
			return nil, err
		}
		out = values.toVersion(def, k, sh.Enums[k], out)
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(out)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// objectMembers splits a JSON object into its keys and raw values, in order.
func objectMembers(raw []byte) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	var keys []string
	var vals []json.RawMessage
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		keys = append(keys, tok.(string))
		vals = append(vals, v)
	}
	return keys, vals, nil
}

// isExtension reports whether a property is one of coffer's own, named
// coffer…, which it writes on purpose in every version
// (docs/api-coverage.md lists them and why).
func isExtension(name string) bool {
	return len(name) > len("coffer") && strings.HasPrefix(name, "coffer") && name[6] >= 'A' && name[6] <= 'Z'
}
