package main

import (
	"os"
	"testing"

	"github.com/sipsentry/sipsentry/internal/testpath"
)

// adminRepoRoot walks up from the package directory to the one holding go.mod.
func adminRepoRoot(t testing.TB) string {
	t.Helper()
	return testpath.RepoRoot(t)
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
