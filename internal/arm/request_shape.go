package arm

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/coffer-backup/coffer/internal/errs"
)

// A request body is read in the shape of its api-version, as the response
// is written in it:
//
//   - A property the version's request schema does not define is refused
//     with 400 InvalidRequestContent naming it. Azure ignores such a
//     property, but coffer's rule is that a setting it is sent either takes
//     effect or is refused: a client of an older version that sets a newer
//     property would otherwise believe it set. Nulls are accepted (a client
//     clearing what it never set), and so is a property the newest version
//     marks read-only (never a setting: a resource read in one version and
//     sent back in another).
//   - An enum value spelled as the version spells it, where the newest
//     version spells the same value differently (only in case), is
//     rewritten to the newest spelling, which is the one the providers read.
//
// A version without its own vendored spec is read as its neighbour (see
// shapeFor), as its responses are shaped.

// readRequest checks body against the request schema of the route's
// operation at version and returns it in the newest spelling.
func (t *shapeTable) readRequest(route *Route, version string, body []byte) ([]byte, error) {
	op, _ := t.shapeFor(route, version)
	if op == nil || op.Request == "" {
		return body, nil
	}
	raw := bytes.TrimSpace(body)
	if len(raw) == 0 || (raw[0] != '{' && raw[0] != '[') || !json.Valid(raw) {
		return body, nil // empty or not JSON: the handler's decode says what is wrong
	}
	newest := t.newestOp(route)
	r := requestReader{t: t, asked: version, provider: route.Versions.Provider, values: textsAt(route.Versions.Provider, version)}
	out, changed, err := r.read(raw, op.Request, newest.Request, "")
	if err != nil {
		return nil, err
	}
	if !changed {
		return body, nil
	}
	return out, nil
}

// newestOp is the newest vendored version of a route's operation.
func (t *shapeTable) newestOp(route *Route) *shapeOp {
	vs := t.ops[strings.ToLower(route.Versions.Provider)][routeKey(route.Method, route.Pattern)]
	if len(vs) == 0 {
		return nil
	}
	return &vs[len(vs)-1]
}

type requestReader struct {
	t               *shapeTable
	asked, provider string
	values          valueTexts
}

// read walks raw along shape name (the request's version) and newest (the
// same place in the newest version), refusing what name does not define
// and respelling enum values; changed reports a rewrite.
func (r requestReader) read(raw []byte, name, newest, path string) ([]byte, bool, error) {
	sh := r.t.shapes[name]
	_, def, _ := strings.Cut(name, "#")
	if sh == nil || sh.Open || len(raw) == 0 {
		return raw, false, nil
	}
	nsh := r.t.shapes[newest]
	if nsh == nil {
		nsh = &shape{}
	}
	switch raw[0] {
	case '[':
		if sh.Items == "" {
			return raw, false, nil
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, false, err
		}
		changed := false
		for i := range items {
			out, c, err := r.read(items[i], sh.Items, nsh.Items, path+"["+strconv.Itoa(i)+"]")
			if err != nil {
				return nil, false, err
			}
			items[i], changed = out, changed || c
		}
		if !changed {
			return raw, false, nil
		}
		out, err := json.Marshal(items)
		return out, true, err
	case '{':
	default:
		return raw, false, nil
	}
	keys, vals, err := objectMembers(raw)
	if err != nil {
		return nil, false, err
	}
	sub, known := r.t.subtypeName(sh, keys, vals)
	if !known {
		return raw, false, nil
	}
	if sub != "" {
		sh, def = r.t.shapes[sub], strings.SplitN(sub, "#", 2)[1]
	}
	if sub, _ := r.t.subtypeName(nsh, keys, vals); sub != "" {
		nsh = r.t.shapes[sub]
	}
	changed := false
	for i, k := range keys {
		where := k
		if path != "" {
			where = path + "." + k
		}
		if string(bytes.TrimSpace(vals[i])) == "null" || isExtension(k) {
			continue
		}
		// Property names match in any case, as the providers' decoder (and
		// Azure's) reads them.
		k = propName(sh, k)
		child, ok := sh.Props[k]
		nchild := nsh.Props[propName(nsh, k)]
		if !ok && sh.Map != "" {
			child, nchild, ok = sh.Map, nsh.Map, true
		}
		if !ok {
			if slices.Contains(nsh.ReadOnly, k) {
				continue
			}
			return nil, false, errs.E(errs.Invalid, "InvalidRequestContent",
				"The request content has the property '%s', which api-version '%s' of %s does not define; a setting is taken only in a version that defines it.",
				where, r.asked, r.provider).WithTarget(where)
		}
		if current, ok := r.values.fromVersion(def, k, sh.Enums[k], vals[i]); ok {
			vals[i], changed = current, true
			continue
		}
		if spelled, ok := respell(vals[i], sh.Enums[k], nsh.Enums[k]); ok {
			vals[i], changed = spelled, true
			continue
		}
		if child == "" || child == "*" {
			continue
		}
		out, c, err := r.read(vals[i], child, nchild, where)
		if err != nil {
			return nil, false, err
		}
		vals[i], changed = out, changed || c
	}
	if !changed {
		return raw, false, nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vals[i])
	}
	b.WriteByte('}')
	return b.Bytes(), true, nil
}

// propName is the name sh spells k with, or k.
func propName(sh *shape, k string) string {
	if _, ok := sh.Props[k]; ok {
		return k
	}
	for p := range sh.Props {
		if strings.EqualFold(p, k) {
			return p
		}
	}
	return k
}

// subtypeName is the shape a discriminated object is read as: "" for sh
// itself, and known false when the object names a subtype the version
// does not list (the provider refuses that with its own code). The value
// is matched as the providers match it, in any case.
func (t *shapeTable) subtypeName(sh *shape, keys []string, vals []json.RawMessage) (name string, known bool) {
	if sh.Disc == "" {
		return "", true
	}
	for i, k := range keys {
		var v string
		if k != sh.Disc || json.Unmarshal(vals[i], &v) != nil {
			continue
		}
		for value, sub := range sh.Subs {
			if strings.EqualFold(value, v) && t.shapes[sub] != nil && strings.Contains(sub, "#") {
				return sub, true
			}
		}
		return "", len(sh.Subs) == 0
	}
	return "", true
}

// respell rewrites a string (or each string of an array) that is one of
// the version's enum values to the newest version's spelling of it, when
// that differs only in case.
func respell(raw json.RawMessage, values, newest []string) (json.RawMessage, bool) {
	if len(values) == 0 || len(newest) == 0 {
		return raw, false
	}
	one := func(s string) (string, bool) {
		if !slices.Contains(values, s) || slices.Contains(newest, s) {
			return s, false
		}
		for _, n := range newest {
			if strings.EqualFold(n, s) {
				return n, true
			}
		}
		return s, false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if n, ok := one(s); ok {
			out, _ := json.Marshal(n)
			return out, true
		}
		return raw, false
	}
	var list []string
	if json.Unmarshal(raw, &list) != nil {
		return raw, false
	}
	changed := false
	for i := range list {
		if n, ok := one(list[i]); ok {
			list[i], changed = n, true
		}
	}
	if !changed {
		return raw, false
	}
	out, _ := json.Marshal(list)
	return out, true
}
