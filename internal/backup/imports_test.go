package backup

import (
	"go/build"
	"strings"
	"testing"
)

// TestNoProviderImports keeps the arrow one way: providers call backup,
// and backup reaches disks, groups and permissions only through the
// interfaces it declares.
func TestNoProviderImports(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.Contains(imp, "/internal/provider/") || strings.HasSuffix(imp, "/internal/server") {
			t.Errorf("backup imports %s", imp)
		}
	}
}
