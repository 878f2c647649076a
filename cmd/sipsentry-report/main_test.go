package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/cmd/internal/cliexit"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	t.Chdir(testpath.RepoRoot(t))
	cfg := filepath.Join(t.TempDir(), "empty.toml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	root := newRootCommand()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"--config", cfg}, args...))
	err := root.Execute()
	return out.String(), errb.String(), err
}

// The light binary prints exactly the full binary's sample report (the
// golden file of cmd/sipsentry), so the README's first command shows what
// `sipsentry sources` shows.
func TestReportMatchesSourcesGolden(t *testing.T) {
	out, errOut, err := run(t, "--from-log", "contrib/sample/security.log", "--lists-dir", "contrib/sample/lists")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	want, err := os.ReadFile(filepath.Join("cmd", "sipsentry", "testdata", "sources-sample.table.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("sipsentry-report differs from sipsentry sources' golden table\n--- got\n%s\n--- want\n%s", out, want)
	}
}

// A shell glob after --from-log gives one flag and several files: each is
// read (the footer names every file) instead of "unknown command".
func TestReportSeveralLogsAfterOneFlag(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(testpath.RepoRoot(t))
	src, err := os.ReadFile("contrib/sample/security.log")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(src), "\n")
	half := len(lines) / 2
	a, b := filepath.Join(dir, "security"), filepath.Join(dir, "security.1")
	if err := os.WriteFile(a, []byte(strings.Join(lines[:half], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte(strings.Join(lines[half:], "")), 0o600); err != nil {
		t.Fatal(err)
	}
	split, errOut, err := run(t, "--from-log", a, b, "--lists-dir", "contrib/sample/lists", "--json")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, f := range []string{a, b} {
		if !strings.Contains(errOut, f+": ") {
			t.Errorf("footer does not name %s:\n%s", f, errOut)
		}
	}
	whole, _, err := run(t, "--from-log", "contrib/sample/security.log", "--lists-dir", "contrib/sample/lists", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if split != whole {
		t.Errorf("the log split in two files reports differently from the whole log")
	}
}

func TestReportExitCodes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"--from-log", "contrib/sample/security.log", "--lists-dir", "contrib/sample/lists"}, cliexit.OK},
		{[]string{"--from-log", "/nonexistent/security"}, cliexit.Usage},
		{[]string{"--bogus-flag"}, cliexit.Usage},
		{[]string{"--from-log", "contrib/sample/security.log", "--sort", "bogus"}, cliexit.Usage},
		{[]string{"--from-log", "contrib/sample/security.log", "--json", "--csv"}, cliexit.Usage},
		{[]string{"stray-argument"}, cliexit.Usage},
		// No DB in this build: a clear usage error, not a crash.
		{nil, cliexit.Usage},
	} {
		_, _, err := run(t, c.args...)
		if got := cliexit.Code(err); got != c.want {
			t.Errorf("%v: exit %d (%v), want %d", c.args, got, err, c.want)
		}
	}
}

// The light binary must not link the state store: that is its reason to exist.
func TestReportDoesNotLinkSQLite(t *testing.T) {
	t.Chdir(testpath.RepoRoot(t))
	out, err := exec.Command("go", "list", "-deps", "./cmd/sipsentry-report").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "modernc.org/") || p == "github.com/sipsentry/sipsentry/state" {
			t.Errorf("sipsentry-report depends on %s: the README's first command would compile SQLite again", p)
		}
	}
}
