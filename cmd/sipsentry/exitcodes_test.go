package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/internal/config"
)

func execWithConfig(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "empty.toml")
	writeFile(t, cfg, "", 0o600)
	root := newRootCommand()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"--config", cfg}, args...))
	err := root.Execute()
	return out.String(), errb.String(), err
}

// Cobra's own usage errors exit 2 like every other usage error.
func TestExitCodeUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"no-such-command"},
		{"--no-such-flag"},
		{"sources", "--no-such-flag"},
		{"sources", "--from-log", "x", "--json", "--csv"},
		{"sources", "--limit", "many"},
		{"version", "extra"},
		{"config", "check", "extra"},
		{"status", "extra"},
	} {
		_, _, err := execWithConfig(t, args...)
		if err == nil {
			t.Errorf("%v: no error", args)
			continue
		}
		if got := exitCode(err); got != exitUsage {
			t.Errorf("%v: exit %d (%v), want %d", args, got, err, exitUsage)
		}
	}
}

// Every command that checks its argument count reports a wrong count as a
// usage error (exit 2): the validators are wrapped once at the root, so a
// command added later is covered too. The validators are called directly,
// so no command runs.
func TestExitCodeArgumentCountEveryCommand(t *testing.T) {
	root := newRootCommand()
	tooMany := strings.Fields("a b c d e f g h i j k l m n o p q r s t u v w x y z")
	checked := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Args == nil {
			return
		}
		for _, args := range [][]string{nil, tooMany} {
			if err := c.Args(c, args); err != nil {
				checked++
				if got := exitCode(err); got != exitUsage {
					t.Errorf("%s %v: exit %d (%v), want %d", c.CommandPath(), len(args), got, err, exitUsage)
				}
			}
		}
	}
	walk(root)
	if checked < 5 {
		t.Fatalf("only %d argument errors seen: the walk is broken", checked)
	}
}

func TestRootVersionFlag(t *testing.T) {
	out, _, err := execWithConfig(t, "--version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "sipsentry ") || strings.TrimSpace(out) == "sipsentry" {
		t.Errorf("--version printed %q, want \"sipsentry <version>\"", out)
	}
	vout, _, err := execWithConfig(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if vout != out {
		t.Errorf("--version %q and version %q differ", out, vout)
	}
}

// Shell completion offers the fixed values of --sort and --status.
func TestCompletionSortAndStatus(t *testing.T) {
	for _, c := range []struct {
		flag string
		want []string
	}{
		{"--sort", []string{"last", "failures", "ip", "country"}},
		{"--status", []string{"banned", "learned_push", "flagged", "none"}},
	} {
		out, _, err := execWithConfig(t, cobra.ShellCompRequestCmd, "sources", c.flag, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("completion of %s lacks %q:\n%s", c.flag, w, out)
			}
		}
	}
}

// One-shot commands never log JSON unless asked to.
func TestOneShotLoggerIsHuman(t *testing.T) {
	g := &globalOptions{command: "sipsentry lookup"}
	cfg := defaultTestConfig()
	var b bytes.Buffer
	h := g.loggerTo(&b, cfg)
	h.Warn("list did not parse", "list", "jp-ipv4")
	if strings.HasPrefix(b.String(), "{") || strings.Contains(b.String(), "time=") {
		t.Errorf("one-shot log line %q: want a plain text line without a timestamp", b.String())
	}
	b.Reset()
	g.logJSON = true
	g.loggerTo(&b, cfg).Warn("x")
	if !strings.HasPrefix(b.String(), "{") {
		t.Errorf("--log-json line %q: want JSON", b.String())
	}
	b.Reset()
	g = &globalOptions{command: "sipsentry run"}
	cfg.Log.Format = "json"
	g.loggerTo(&b, cfg).Warn("x")
	if !strings.HasPrefix(b.String(), "{") {
		t.Errorf("run with log.format json: line %q, want JSON", b.String())
	}
}

func defaultTestConfig() *config.Config { return config.Default() }

// An unknown subcommand of a group (`lists bogus`) is a usage error, not
// the group's help with exit 0.
func TestExitCodeUnknownSubcommand(t *testing.T) {
	for _, args := range [][]string{{"lists", "bogus"}, {"firewall", "nope"}, {"config", "chek"}} {
		_, _, err := execWithConfig(t, args...)
		if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), "unknown command") {
			t.Errorf("%v: %v (exit %d), want exit 2 naming the unknown command", args, err, exitCode(err))
		}
	}
	if _, _, err := execWithConfig(t, "lists"); err != nil {
		t.Errorf("lists alone: %v, want its help and exit 0", err)
	}
}
