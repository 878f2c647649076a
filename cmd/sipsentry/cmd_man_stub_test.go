//go:build !mangen

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/cmd/internal/cliexit"
)

// The daemon's build answers `sipsentry man` with where the pages come
// from (exit 2, nothing written) and neither lists nor completes it.
func TestManNotInDaemonBuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man8")
	_, err := execRoot(t, "man", "--dir", dir)
	if cliexit.Code(err) != cliexit.Usage || err == nil || !strings.Contains(err.Error(), "go run -tags mangen ./cmd/sipsentry man --dir") {
		t.Fatalf("man in the daemon's build: err = %v (exit %d), want a usage error naming the mangen build", err, cliexit.Code(err))
	}
	if _, statErr := os.Stat(dir); statErr == nil {
		t.Fatal("the daemon's man stub created the directory")
	}
	help, err := execRoot(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	out, err := execRoot(t, "__complete", "m")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(help+out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "man") {
			t.Errorf("help or completion offers the man command: %q", l)
		}
	}
}
