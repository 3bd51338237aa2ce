// Package testenv is how tests reach what the test script provides:
// PostgreSQL (COFFER_TEST_POSTGRES), S3 on MinIO (COFFER_TEST_S3) and Debian
// tools. Where one is missing a test skips, except when COFFER_REQUIRE_TOOLS
// is set (scripts/test sets it), where it fails: in CI nothing the suite
// needs may be left out silently. Only tests import it.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// RequireEnv is the variable that turns a skip for something missing into
// a failure.
const RequireEnv = "COFFER_REQUIRE_TOOLS"

// Required reports whether a missing service or tool fails the test.
func Required() bool { return os.Getenv(RequireEnv) != "" }

// Missing ends the test for something it needs and does not have: a
// failure when Required, a skip otherwise. why says what and how to get it.
func Missing(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (and %s is set)", why, RequireEnv)
	}
	t.Skip(why)
}

// Env returns the environment variable name, or ends the test through
// Missing when it is unset; how says what sets it.
func Env(t testing.TB, name, how string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Missing(t, fmt.Sprintf("%s is unset; %s", name, how))
	}
	return v
}

// S3 is the MinIO bucket URL scripts/minio started.
func S3(t testing.TB) string {
	t.Helper()
	return Env(t, "COFFER_TEST_S3", `eval "$(scripts/minio start DIR)" starts one`)
}

// Postgres is the PostgreSQL server scripts/postgres started.
func Postgres(t testing.TB) string {
	t.Helper()
	return Env(t, "COFFER_TEST_POSTGRES", "scripts/postgres start DIR starts one")
}

// Tool ends the test through Missing unless every named command is on
// PATH; scripts/install-deps installs them by Debian package.
func Tool(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			Missing(t, fmt.Sprintf("%s is not installed (scripts/install-deps installs it)", name))
		}
	}
}
