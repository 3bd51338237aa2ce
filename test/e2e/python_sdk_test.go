package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coffer-backup/coffer/internal/testenv"
)

// debianPython is the interpreter Debian's python3-azure installs into; a
// python3 earlier on PATH (a virtualenv, pyenv) would not see it.
const debianPython = "/usr/bin/python3"

// TestPythonSDKFlow runs the disk-backup flow with the Azure SDK for Python
// at the api-versions it sends by default: resource groups, a disk, a vault,
// a policy, role assignments, validate, protect, ad hoc backups, jobs,
// recovery points, restore and every delete.
func TestPythonSDKFlow(t *testing.T) {
	if err := exec.Command(debianPython, "-c", "import azure.mgmt.dataprotection, azure.mgmt.compute, azure.mgmt.authorization, azure.mgmt.resource").Run(); err != nil {
		testenv.Missing(t, fmt.Sprintf("python3-azure is not installed (scripts/install-deps installs it): %v", err))
	}
	s := startServer(t, "")
	// The SDK runs in its own process: it talks to coffer through a proxy
	// whose transport checks every response against its schema.
	proxy := s.checkingProxy()
	cmd := exec.Command(debianPython, "python/disk_backup_flow.py")
	cmd.Env = append(os.Environ(),
		"COFFER_ENDPOINT="+proxy.URL,
		"COFFER_TOKEN="+s.token(),
		"COFFER_CA="+filepath.Join(s.dataDir, "tls", "cert.pem"),
		"COFFER_SUBSCRIPTION="+newSubscription(),
	)
	out, err := cmd.CombinedOutput()
	t.Logf("python flow:\n%s", out)
	if err != nil {
		t.Fatalf("python flow failed: %v", err)
	}
	var sent map[string][]string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var line struct {
			APIVersions map[string][]string `json:"apiVersions"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.APIVersions != nil {
			sent = line.APIVersions
		}
	}
	// The SDK's defaults, as python3-azure ships them: if a new packaging
	// moves one, this says so and the coverage doc should follow.
	want := map[string]string{
		"Microsoft.Resources":      "2022-09-01",
		"Microsoft.Compute":        "2022-07-02",
		"Microsoft.Authorization":  "2022-04-01",
		"Microsoft.DataProtection": "2022-12-01",
	}
	checked := proxy.counts()
	for provider, v := range want {
		if len(sent[provider]) != 1 || sent[provider][0] != v {
			t.Errorf("%s: the SDK sent %v, want its default %s", provider, sent[provider], v)
		}
		if checked[provider] == 0 {
			t.Errorf("%s: no response of the flow went through the schema check", provider)
		}
	}
	t.Logf("responses the schema check saw, by provider: %v", checked)
}
