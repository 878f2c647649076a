// Package testpath locates the repository root and the shared test fixtures
// in ../shared/testdata beside it (CI clones the repository with shared/
// next to it, so no absolute path is ever hard-coded).
//
// It is for tests only: production code must never import it.
package testpath

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the directory holding go.mod, walking up from the
// working directory of the test (its package directory).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("testdata: working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testdata: no go.mod above the test directory; run the tests inside the repository")
		}
		dir = parent
	}
}

// Shared returns <root>/../shared/testdata/<elem...>. It checks only that the
// shared testdata directory exists, not the named file: when it is missing
// the test fails under CI=true (CI must never silently skip) and is skipped
// otherwise.
func Shared(t testing.TB, elem ...string) string {
	t.Helper()
	base := filepath.Join(filepath.Dir(RepoRoot(t)), "shared", "testdata")
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		if err == nil {
			err = os.ErrNotExist
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("testdata: shared test data missing at %s (%v); CI must place shared/ beside the repository", base, err)
		}
		t.Skipf("testdata: shared test data missing at %s (%v); put shared/ beside the repository to run this test", base, err)
	}
	return filepath.Join(append([]string{base}, elem...)...)
}

// SharedSet returns <root>/../shared/testdata/<set> once that set's
// README.md is there (a set copied in part fails as a whole): under
// CI=true a missing set fails the test, elsewhere it skips it.
func SharedSet(t testing.TB, set string) string {
	t.Helper()
	d := Shared(t, set)
	if _, err := os.Stat(filepath.Join(d, "README.md")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("shared %s test data missing at %s: %v", set, d, err)
		}
		t.Skipf("shared %s test data missing at %s", set, d)
	}
	return d
}
