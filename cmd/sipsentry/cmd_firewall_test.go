package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/geo/geotest"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

func fwConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "sipsentry.toml")
	// No daemon listens on this control socket: ban, unban, allow and
	// disallow take the offline path, whatever runs on the machine.
	writeFile(t, p, "state_dir = \""+filepath.Join(dir, "state")+"\"\n"+body+
		"\n[control]\nsocket = \""+filepath.Join(dir, "control.sock")+"\"\n", 0o600)
	return p
}

func TestFirewallCommandsDryRun(t *testing.T) {
	cfg := fwConfig(t, "[firewall]\nbackend = \"dry-run\"\nmode = \"enforce\"\nallow = [\"198.51.100.0/24\"]\n")
	out, err := execRoot(t, "-c", cfg, "firewall", "up")
	if err != nil || !strings.Contains(out, "dry-run: up") || !strings.Contains(out, "firewall up: backend dry-run") {
		t.Fatalf("firewall up: %v\n%s", err, out)
	}
	out, err = execRoot(t, "-c", cfg, "ban", "203.0.113.5", "--for", "2h", "--reason", "scanner")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dry-run: add ban 203.0.113.5/32 timeout 2h0m0s comment \"sipsentry: manual", ": scanner\"", "dry-run: dropflows 203.0.113.5/32", "banned 203.0.113.5 until ", "(2h0m0s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("ban output lacks %q:\n%s", want, out)
		}
	}
	// Inside the static allow list: the engine refuses, with the reason.
	out, err = execRoot(t, "-c", cfg, "ban", "198.51.100.9")
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "static allow 198.51.100.0/24") || strings.Contains(out, "dry-run: add ban") {
		t.Errorf("ban inside the static allow list: %v\n%s", err, out)
	}
	out, err = execRoot(t, "-c", cfg, "ban", "203.0.113.6")
	if err != nil || !strings.Contains(out, "timeout 1h0m0s") {
		t.Errorf("ban without --for (default engine.ban_time): %v\n%s", err, out)
	}
	if out, err := execRoot(t, "-c", cfg, "unban", "203.0.113.5"); err != nil || !strings.Contains(out, "dry-run: delete ban 203.0.113.5/32") {
		t.Errorf("unban: %v\n%s", err, out)
	}
	out, err = execRoot(t, "-c", cfg, "allow", "203.0.113.0/24", "--for", "7d", "--comment", "push")
	if err != nil || !strings.Contains(out, `dry-run: add allow 203.0.113.0/24 timeout 168h0m0s comment "sipsentry: manual allow: push"`) {
		t.Errorf("allow: %v\n%s", err, out)
	}
	if out, err := execRoot(t, "-c", cfg, "disallow", "203.0.113.0/24"); err != nil || !strings.Contains(out, "dry-run: delete allow 203.0.113.0/24") {
		t.Errorf("disallow: %v\n%s", err, out)
	}
	out, err = execRoot(t, "-c", cfg, "firewall", "show", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st firewall.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Backend != "dry-run" || st.Mode != "enforce" || len(st.Sets) != 10 { // allow, ban, ban-net, probation, allow-cc; v4 and v6
		t.Errorf("show --json: %v: %+v\n%s", err, st, out)
	}
	// Bad input is a usage error (exit 2) and reaches no backend.
	for _, args := range [][]string{
		{"ban", "203.0.113.0/24"},
		{"ban", "not-an-ip"},
		{"ban", "203.0.113.5", "--for", "soon"},
		{"allow", "203.0.113.0/33"},
		{"allow", "0.0.0.0/0"},
		{"disallow", "nonsense"},
		{"unban", "2001:db8::/64"},
	} {
		out, err := execRoot(t, append([]string{"-c", cfg}, args...)...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: err = %v, want a usage error", args, err)
		}
		if strings.Contains(out, "dry-run: add") || strings.Contains(out, "dry-run: delete") {
			t.Errorf("%v reached the backend:\n%s", args, out)
		}
	}
}

// TestFirewallCommandsKernel runs the real binary as root inside a network
// namespace (ip netns exec), as an admin would on the host.
func TestFirewallCommandsKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "go", "ip", "ipset", "iptables", "ip6tables", "iptables-save", "setpriv")
	bin := filepath.Join(t.TempDir(), "sipsentry")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := fwConfig(t, "[firewall]\nmode = \"enforce\"\nallow = [\"198.51.100.0/24\"]\n[engine]\ngeo_mode = \"off\"\n")
	ns := netnstest.NewNS(t, "cli")
	// A host has a filter table already (iptables-nft creates it at first
	// use, and down cannot know whether to remove it).
	ns.MustExec("iptables", "-N", "admin-chain")
	ns.MustExec("ip6tables", "-N", "admin-chain")
	state := func() string {
		return stripSaveComments(ns.MustExec("iptables-save") + ns.MustExec("ip6tables-save") + ns.MustExec("ipset", "list", "-n"))
	}
	before := state()
	run := func(args ...string) string {
		t.Helper()
		return ns.MustExec(bin, append([]string{"-c", cfg, "--log-level", "error"}, args...)...)
	}
	run("firewall", "up")
	out := run("ban", "203.0.113.5", "--for", "2h", "--reason", "scanner")
	if !strings.Contains(out, "banned 203.0.113.5 until ") || !strings.Contains(out, "(2h0m0s)") {
		t.Errorf("ban: %s", out)
	}
	run("allow", "2001:db8:7::/48", "--comment", "push")
	save := ns.MustExec("ipset", "save")
	for _, want := range []string{
		`add sipsentry-allow-v4 198.51.100.0/24 timeout 0 comment "static (config)"`,
		`add sipsentry-allow-v6 2001:db8:7::/48 timeout 0 comment "sipsentry: manual allow: push"`,
		`: scanner"`,
	} {
		if !strings.Contains(save, want) {
			t.Errorf("ipset save lacks %q:\n%s", want, save)
		}
	}
	var st firewall.Status
	if err := json.Unmarshal([]byte(run("firewall", "show", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Up || st.Mode != "enforce" || len(st.Rules) < 10 {
		t.Errorf("show --json: %+v", st)
	}
	for _, s := range st.Sets {
		if s.Set == firewall.SetBan && s.Family == "inet" && (s.Entries != 1 || s.Memory == 0) {
			t.Errorf("ban inet: %+v, want 1 entry and a memory size", s)
		}
	}
	if txt := run("firewall", "show"); !strings.Contains(txt, "-A SIPSENTRY -m set --match-set sipsentry-ban-v4 src -j DROP") {
		t.Errorf("show:\n%s", txt)
	}
	run("unban", "203.0.113.5")
	run("disallow", "2001:db8:7::/48")
	if save := ns.MustExec("ipset", "save"); strings.Contains(save, "203.0.113.5") || strings.Contains(save, "2001:db8:7::") {
		t.Errorf("unban/disallow left entries:\n%s", save)
	}

	// Without CAP_NET_ADMIN: one message saying what to grant, exit 1.
	outCap, err := ns.Exec("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", bin, "-c", cfg, "firewall", "show")
	if err == nil || !strings.Contains(outCap, "CAP_NET_ADMIN") || !strings.Contains(outCap, "firewall: unavailable") {
		t.Errorf("without CAP_NET_ADMIN: %v\n%s", err, outCap)
	}

	run("firewall", "down")
	if after := state(); after != before {
		t.Errorf("firewall down left traces:\n%s\n---\n%s", before, after)
	}
	_ = os.Remove(bin)
}

func stripSaveComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestFirewallUpRefusesLockOut: enforce + geo_mode drop without any list of
// the allowed countries would drop every phone; up refuses and changes
// nothing. With the list present, its prefixes are loaded before the rules.
func TestFirewallUpRefusesLockOut(t *testing.T) {
	dir := t.TempDir()
	lists := filepath.Join(dir, "lists")
	body := "[geo]\nallow_countries = [\"JP\"]\nlists_dir = \"" + lists + "\"\nmin_entries = 1\n" +
		"[firewall]\nbackend = \"dry-run\"\nmode = \"enforce\"\n[engine]\ngeo_mode = \"drop\"\n"
	cfg := fwConfig(t, body)
	out, err := execRoot(t, "-c", cfg, "--log-level", "error", "firewall", "up")
	if err == nil || !strings.Contains(err.Error(), "locked out") || strings.Contains(out, "dry-run: up") {
		t.Fatalf("up without lists: err %v, out:\n%s", err, out)
	}
	geotest.WriteLists(t, lists, map[string][]string{"JP": {"198.51.100.0/24", "2001:db8:1::/48"}})
	out, err = execRoot(t, "-c", cfg, "--log-level", "error", "firewall", "up")
	if err != nil {
		t.Fatalf("up with lists: %v\n%s", err, out)
	}
	rep, up := strings.Index(out, "dry-run: replace allow-cc"), strings.Index(out, "dry-run: up")
	if rep < 0 || up < rep || !strings.Contains(out, "198.51.100.0/24") || !strings.Contains(out, "2 prefixes loaded") {
		t.Fatalf("up with lists:\n%s", out)
	}
}
