package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/testpath"
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

// buildManGen builds the man page generator the way packaging/build.sh
// does (-tags mangen) and returns its path.
func buildManGen(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sipsentry-mangen")
	if out, err := exec.Command("go", "build", "-tags", "mangen", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags mangen: %v\n%s", err, out)
	}
	return bin
}

func TestManWritesEveryCommand(t *testing.T) {
	gen := buildManGen(t)
	dir := filepath.Join(t.TempDir(), "man8")
	if out, err := exec.Command(gen, "man", "--dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("sipsentry man: %v\n%s", err, out)
	}
	// Walk the same tree (with cobra's completion command, which Execute
	// adds). The daemon's tree is the generator's but for the hidden man
	// command, which neither documents.
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
	// No page names the generator, which the installed binary lacks.
	if _, err := os.Stat(filepath.Join(dir, "sipsentry-man.8")); err == nil {
		t.Error("sipsentry-man.8 was written: the installed binary has no man command")
	}
	top, _ := os.ReadFile(filepath.Join(dir, "sipsentry.8"))
	if bytes.Contains(top, []byte("sipsentry-man")) {
		t.Error("sipsentry.8 refers to sipsentry-man(8)")
	}

	// Without --dir the generator says what is missing (exit 2).
	cmd := exec.Command(gen, "man")
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "dir") {
		t.Fatalf("man without --dir: %v, exit %d, output %q; want exit 2 and a message about --dir", err, cmd.ProcessState.ExitCode(), out)
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

// The daemon must not link the man page generator (cobra/doc, go-md2man,
// blackfriday: ~1 MB of heap from blackfriday's init maps, issue 11); the
// mangen build must (else the first check proves nothing).
func TestDaemonDoesNotLinkManGenerator(t *testing.T) {
	t.Chdir(testpath.RepoRoot(t))
	generator := []string{"github.com/spf13/cobra/doc", "github.com/cpuguy83/go-md2man/v2/md2man", "github.com/russross/blackfriday/v2"}
	for _, tags := range []string{"", "mangen"} {
		out, err := exec.Command("go", "list", "-deps", "-tags", tags, "./cmd/sipsentry").Output()
		if err != nil {
			t.Fatalf("go list -tags %q: %v", tags, err)
		}
		deps := strings.Fields(string(out))
		for _, p := range generator {
			linked := slices.Contains(deps, p)
			if tags == "" && linked {
				t.Errorf("the daemon's build links %s: keep cmd_man.go behind //go:build mangen", p)
			}
			if tags == "mangen" && !linked {
				t.Errorf("the mangen build does not link %s: the man pages cannot come from it", p)
			}
		}
	}
}
