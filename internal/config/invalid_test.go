package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateInvalid = flag.Bool("update", false, "rewrite testdata/invalid/*.err from the current messages")

// TestInvalidConfigFiles reads every testdata/invalid/*.toml with the check
// `run` and `config check` share and compares the whole message with the
// .err file beside it: every problem, with file:line, key and fix.
func TestInvalidConfigFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no invalid configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if err := os.Chmod(f, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadForRun(f, false)
			if err == nil {
				t.Fatal("accepted, want errors")
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".toml") + ".err"
			if *updateInvalid {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("messages differ\n--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}
