package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// execRoot runs the real command tree with args and returns stdout.
func execRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestManWritesEveryCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man8")
	if _, err := execRoot(t, "man", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	// Walk the same tree (with cobra's completion command, which Execute adds).
	root := newRootCommand()
	root.InitDefaultCompletionCmd()
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root {
			return
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".8"
		page, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("no man page for %q: %v", c.CommandPath(), err)
		} else {
			n++
			if !bytes.HasPrefix(page, []byte(".nh\n.TH \"SIPSENTRY\" \"8\"")) {
				t.Errorf("%s: not a section 8 roff page: %.60q", name, page)
			}
			// The NAME section names the command (its description may carry
			// roff markup, so only its first word is compared).
			nameLine := strings.ReplaceAll(c.CommandPath(), " ", "-") + " - "
			if f := strings.Fields(c.Short); len(f) > 0 {
				nameLine += f[0]
			}
			if !bytes.Contains(page, []byte(".SH NAME\n"+nameLine)) {
				t.Errorf("%s: NAME section is not %q", name, nameLine)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, must := range []string{"sipsentry.8", "sipsentry-doctor.8", "sipsentry-config-check.8", "sipsentry-completion-bash.8"} {
		if _, err := os.Stat(filepath.Join(dir, must)); err != nil {
			t.Errorf("missing %s: %v", must, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != n {
		t.Errorf("%d files written, %d commands walked", len(entries), n)
	}
	doctor, _ := os.ReadFile(filepath.Join(dir, "sipsentry-doctor.8"))
	if !bytes.Contains(doctor, []byte(`\fB--json\fP`)) {
		t.Error("doctor's page does not document --json")
	}
}

func TestManNeedsDir(t *testing.T) {
	if _, err := execRoot(t, "man"); err == nil || !strings.Contains(err.Error(), "dir") {
		t.Fatalf("man without --dir: err = %v, want a message about --dir", err)
	}
}

func TestCompletionBash(t *testing.T) {
	out, err := execRoot(t, "completion", "bash")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# bash completion V2 for sipsentry", "__start_sipsentry", "complete -o default -F __start_sipsentry sipsentry"} {
		if !strings.Contains(out, want) {
			t.Errorf("bash completion lacks %q", want)
		}
	}
	// The V2 script asks the binary itself; check that it answers.
	out, err = execRoot(t, "__complete", "do")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "doctor\t") {
		t.Errorf("completing \"do\" does not offer doctor:\n%s", out)
	}
	out, err = execRoot(t, "__complete", "doctor", "--j")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "--json") {
		t.Errorf("completing doctor flags does not offer --json:\n%s", out)
	}
}
