package arm

import (
	"slices"
	"strings"
	"testing"
)

// walkBeside calls visit for every place of every operation's request
// (and, with responses, response) shapes at each vendored version that is
// not the newest, beside the same place in the newest version (nil where
// the newest has no such place).
func walkBeside(t *shapeTable, responses bool, visit func(op shapeOp, path string, sh, newest *shape)) {
	for _, byKey := range t.ops {
		for _, vs := range byKey {
			newest := vs[len(vs)-1]
			for _, op := range vs[:len(vs)-1] {
				seen := map[string]bool{}
				var walk func(name, nname, path string)
				walk = func(name, nname, path string) {
					sh := t.shapes[name]
					if sh == nil || seen[name+" "+nname] {
						return // each pair once: the first path it is reached by names it
					}
					seen[name+" "+nname] = true
					nsh := t.shapes[nname]
					visit(op, path, sh, nsh)
					if nsh == nil {
						nsh = &shape{}
					}
					for prop, child := range sh.Props {
						walk(child, nsh.Props[prop], path+"."+prop)
					}
					walk(sh.Items, nsh.Items, path+"[]")
					walk(sh.Map, nsh.Map, path+"{}")
					for v, sub := range sh.Subs {
						walk(sub, nsh.Subs[v], path+"("+v+")")
					}
				}
				walk(op.Request, newest.Request, "request")
				if responses {
					for code, name := range op.Responses {
						walk(name, newest.Responses[code], "response "+code)
					}
				}
			}
		}
	}
}

// TestOlderEnumValuesAreHandled: every enum value an older vendored
// version lists that the newest does not, at the same place of a request
// or response, is either the newest's value in another case (respelled on
// the way in) or in valueChanges (translated both ways). A newly vendored
// version with a renamed value fails here until it is handled.
func TestOlderEnumValuesAreHandled(t *testing.T) {
	walkBeside(loadShapes(), true, func(op shapeOp, path string, sh, newest *shape) {
		if newest == nil {
			return
		}
		for prop, values := range sh.Enums {
			for _, v := range values {
				if slices.Contains(newest.Enums[prop], v) || len(newest.Enums[prop]) == 0 && newest.Props[prop] == "" && hasProp(newest, prop) {
					continue // the same value, or a free string in the newest
				}
				if slices.ContainsFunc(newest.Enums[prop], func(n string) bool { return strings.EqualFold(n, v) }) {
					continue
				}
				if !changedValue(op.Provider, prop, v) {
					t.Errorf("%s %s %s: %s.%s value %q is not in the newest version's %v and valueChanges does not map it",
						op.Provider, op.Version, op.Key, path, prop, v, newest.Enums[prop])
				}
			}
		}
	})
}

// TestOlderRequestPropertiesStillMeanSomething: a request property an
// older vendored version defines is defined by the newest too (where it
// would otherwise be accepted at the old version and ignored by a provider
// that reads the newest shape). A property that moved fails here until the
// front door translates it.
func TestOlderRequestPropertiesStillMeanSomething(t *testing.T) {
	walkBeside(loadShapes(), false, func(op shapeOp, path string, sh, newest *shape) {
		if newest == nil || newest.Open || newest.Map != "" {
			return
		}
		for prop := range sh.Props {
			if !hasProp(newest, prop) && !slices.Contains(sh.ReadOnly, prop) {
				t.Errorf("%s %s %s: %s.%s is not in the newest version", op.Provider, op.Version, op.Key, path, prop)
			}
		}
	})
}

func hasProp(sh *shape, prop string) bool { _, ok := sh.Props[prop]; return ok }

func changedValue(provider, prop, old string) bool {
	for _, c := range valueChanges() {
		if strings.EqualFold(c.provider, provider) && c.property == prop {
			for _, o := range c.old {
				if o == old {
					return true
				}
			}
		}
	}
	return false
}
