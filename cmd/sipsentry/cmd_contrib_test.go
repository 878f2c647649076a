package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// unitDirectives reads a systemd unit as "Key" -> values (in order).
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("%s: not a directive: %q", path, l)
		}
		out[k] = append(out[k], v)
	}
	return out
}

// TestServiceUnit checks the hardening the issue asks for and that every
// sipsentry command line in the unit exists in the command tree with its flags.
func TestServiceUnit(t *testing.T) {
	path := filepath.Join(adminRepoRoot(t), "contrib", "sipsentry.service")
	d := unitDirectives(t, path)
	for k, want := range map[string]string{
		"CapabilityBoundingSet": "CAP_NET_ADMIN",
		"AmbientCapabilities":   "CAP_NET_ADMIN",
		"ProtectSystem":         "strict",
		"StateDirectory":        "sipsentry",
		"Restart":               "on-failure",
		"KillMode":              "mixed",
		"NoNewPrivileges":       "yes",
	} {
		if got := d[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want exactly %s", k, got, want)
		}
	}
	raw, _ := os.ReadFile(path)
	if !strings.Contains(string(raw), "# KillMode=mixed:") {
		t.Error("KillMode is not explained in a comment")
	}
	cmds := append(append([]string{}, d["ExecStartPre"]...), d["ExecStart"]...)
	if len(cmds) != 2 {
		t.Fatalf("want one ExecStartPre and one ExecStart, got %v", cmds)
	}
	for _, line := range cmds {
		args := strings.Fields(line)
		if args[0] != "/usr/local/bin/sipsentry" {
			t.Errorf("%q does not run /usr/local/bin/sipsentry", line)
			continue
		}
		root := newRootCommand()
		cmd, rest, err := root.Find(args[1:])
		if err != nil || cmd == root {
			t.Errorf("%q: no such command: %v", line, err)
			continue
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Errorf("%q: %v", line, err)
		}
	}
	if d["ExecStartPre"][0] != "/usr/local/bin/sipsentry config check --config /etc/sipsentry/sipsentry.toml" {
		t.Errorf("ExecStartPre = %q", d["ExecStartPre"][0])
	}

	// systemd's own parser, when this machine has it (not a kernel or root
	// test: skipping without systemd-analyze is fine in CI too).
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: unit syntax not verified by systemd")
		return
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sipsentry")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(raw), "/usr/local/bin/sipsentry", bin)
	// Documentation=man: would make verify look the pages up.
	unit = strings.Replace(unit, "Documentation=man:sipsentry(8) man:sipsentry-run(8) ", "Documentation=", 1)
	up := filepath.Join(dir, "sipsentry.service")
	if err := os.WriteFile(up, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", up).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestAsteriskSnippets keeps the snippets in line with what doctor demands.
func TestAsteriskSnippets(t *testing.T) {
	dir := filepath.Join(adminRepoRoot(t), "contrib", "asterisk")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	settings := func(text, section string) map[string]string {
		out := map[string]string{}
		cur := ""
		for _, line := range strings.Split(text, "\n") {
			l := strings.TrimSpace(line)
			if i := strings.IndexByte(l, ';'); i >= 0 {
				l = strings.TrimSpace(l[:i])
			}
			if strings.HasPrefix(l, "[") {
				cur = strings.Trim(l, "[]")
				continue
			}
			if k, v, ok := strings.Cut(l, "="); ok && cur == section {
				out[strings.TrimSpace(k)] = strings.TrimSpace(strings.TrimPrefix(v, ">"))
			}
		}
		return out
	}
	m := settings(read("manager.conf"), "sipsentry")
	for k, want := range map[string]string{"read": "security,system", "write": "system", "deny": "0.0.0.0/0.0.0.0", "permit": "127.0.0.1/255.255.255.255"} {
		if m[k] != want {
			t.Errorf("manager.conf [sipsentry] %s = %q, want %q", k, m[k], want)
		}
	}
	if g := settings(read("manager.conf"), "general"); g["bindaddr"] != "127.0.0.1" {
		t.Errorf("manager.conf binds AMI to %q, want 127.0.0.1", g["bindaddr"])
	}
	if l := settings(read("logger.conf"), "logfiles"); l["security"] != "security" {
		t.Errorf("logger.conf: security => %q", l["security"])
	}
	p := settings(read("pjsip.conf"), "1001")
	if n, err := strconv.Atoi(p["max_contacts"]); err != nil || n < 2 || p["type"] != "aor" {
		t.Errorf("pjsip.conf AOR: %v", p)
	}
}
