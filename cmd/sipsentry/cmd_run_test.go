package main

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// The daemon is tested in internal/daemon and, end to end, in e2e; this
// checks the command's wiring: the daemon's configuration errors exit 2.
func TestRunConfigErrorsAreUsageErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sipsentry.toml")
	writeFile(t, cfg, fmt.Sprintf("state_dir = %q\n[firewall]\nbackend = \"dry-run\"\n[metrics]\nlisten = \"\"\n", filepath.Join(dir, "state")), 0o600)
	missing := filepath.Join(dir, "missing.cap")

	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", cfg, "--log-level", "error", "run", "--replay", missing})
	err := root.ExecuteContext(t.Context())
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("run --replay <missing> = %v (%T), want a usageError (exit 2)", err, err)
	}
	if !strings.Contains(err.Error(), "run: --replay: ") || !strings.Contains(err.Error(), "missing.cap") {
		t.Errorf("message %q does not name the flag and the file", err)
	}
}
