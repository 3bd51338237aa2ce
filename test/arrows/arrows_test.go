// Package arrows holds the test that keeps coffer's package graph pointing
// one way, as docs/architecture.md draws it.
package arrows

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/coffer-backup/coffer/"

// pkg is one package of the tree: its import path (relative to the module)
// and the packages its non-test files import.
type pkg struct {
	path    string
	imports map[string]bool // relative to the module; only coffer's own
	files   []*ast.File
}

// load parses every non-test Go file under the module root.
func load(t *testing.T) map[string]*pkg {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	fset := token.NewFileSet()
	pkgs := map[string]*pkg{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name != "." && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		p := pkgs[rel]
		if p == nil {
			p = &pkg{path: rel, imports: map[string]bool{}}
			pkgs[rel] = p
		}
		for _, imp := range f.Imports {
			ip := strings.Trim(imp.Path.Value, `"`)
			if strings.HasPrefix(ip, module) {
				p.imports[strings.TrimPrefix(ip, module)] = true
			}
		}
		full, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		p.files = append(p.files, full)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

// rule is one arrow that must not exist.
type rule struct {
	name     string
	from     func(string) bool
	to       func(from, to string) bool
	examples []string // packages the rule must see, so a rename cannot silently void it
}

var storage = []string{"internal/chunk", "internal/volume", "internal/snapshot", "internal/nbd", "internal/blobapi"}

var controlPlane = []string{"internal/arm", "internal/auth", "internal/rbac", "internal/provider", "internal/backup",
	"internal/disk", "internal/ops", "internal/meta", "internal/server", "internal/groups"}

func anyUnder(path string, dirs []string) bool {
	for _, d := range dirs {
		if under(path, d) {
			return true
		}
	}
	return false
}

var rules = []rule{
	{
		name: "a provider imports another provider",
		from: func(p string) bool { return under(p, "internal/provider") },
		to: func(from, to string) bool {
			return under(to, "internal/provider") && !under(to, providerOf(from))
		},
		examples: []string{"internal/provider/compute", "internal/provider/dataprotection"},
	},
	{
		name: "an engine imports a provider or the server that wires it",
		from: func(p string) bool { return under(p, "internal/backup") || under(p, "internal/disk") },
		to: func(_, to string) bool {
			return under(to, "internal/provider") || under(to, "internal/server")
		},
		examples: []string{"internal/disk"},
	},
	{
		name:     "a storage package imports the control plane",
		from:     func(p string) bool { return anyUnder(p, storage) },
		to:       func(_, to string) bool { return anyUnder(to, controlPlane) },
		examples: storage,
	},
}

func providerOf(p string) string {
	parts := strings.Split(p, "/")
	if len(parts) >= 3 {
		return strings.Join(parts[:3], "/")
	}
	return p
}

// TestArrows fails on an import that points the wrong way.
func TestArrows(t *testing.T) {
	pkgs := load(t)
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			for _, ex := range r.examples {
				if pkgs[ex] == nil {
					t.Fatalf("package %s is gone; update the rule", ex)
				}
			}
			var bad []string
			for path, p := range pkgs {
				if !r.from(path) {
					continue
				}
				for imp := range p.imports {
					if r.to(path, imp) {
						bad = append(bad, path+" -> "+imp)
					}
				}
			}
			sort.Strings(bad)
			for _, b := range bad {
				t.Errorf("%s: %s", r.name, b)
			}
		})
	}
}

// TestCommandsOpenTheStoreOnly: cmd/coffer may open the metadata store,
// but reads what it needs through the engines' Go APIs, never rows.
func TestCommandsOpenTheStoreOnly(t *testing.T) {
	p := load(t)["cmd/coffer"]
	if p == nil {
		t.Fatal("cmd/coffer not found")
	}
	var bad []string
	for _, f := range p.files {
		name := ""
		for _, imp := range f.Imports {
			if strings.Trim(imp.Path.Value, `"`) != module+"internal/meta" {
				continue
			}
			name = "meta"
			if imp.Name != nil {
				name = imp.Name.Name
			}
		}
		if name == "" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == name && sel.Sel.Name != "Open" {
				bad = append(bad, "meta."+sel.Sel.Name)
			}
			return true
		})
	}
	if len(bad) > 0 {
		t.Errorf("cmd/coffer uses %v from internal/meta; only meta.Open is allowed", bad)
	}
}
