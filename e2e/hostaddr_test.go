package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// invalidAccount is one recorded-shape InvalidAccountID event from src.
func invalidAccount(src string, n int) []byte {
	return []byte(fmt.Sprintf("Event: InvalidAccountID\r\nPrivilege: security,all\r\nEventTV: 2026-11-25T13:44:0%d.000+0000\r\n"+
		"Severity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: scan%d\r\nSessionID: %d-scan@%s\r\n"+
		"LocalAddress: IPV4/UDP/198.51.100.1/5060\r\nRemoteAddress: IPV4/UDP/%s/5099\r\n\r\n", n%10, n, n, src, src))
}

// TestOwnAddressAddedAfterStartNeverBanned (#11 item 6, on the real kernel):
// an address the host gets after the daemon started, and the broadcast
// address of its subnet, are never banned however many failures name them,
// while an attacker with the same failures is.
func TestOwnAddressAddedAfterStartNeverBanned(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables", "ip6tables")
	bin := buildBinary(t)
	ns := netnstest.NewNS(t, "own")
	var srv *amitest.Server
	if err := ns.Do(func() error {
		var err error
		srv, err = amitest.Start(amitest.Options{Listen: "127.0.0.1:0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sipsentry.toml")
	writeConfig(t, cfg, fmt.Sprintf(`state_dir = %q
[ami]
address = %q
username = "sentry"
secret = "sentry-secret"
[firewall]
mode = "enforce"
backend = "iptables"
[engine]
max_failures = 3
[push]
hosts = []
resolver = "127.0.0.1:1"
[metrics]
listen = ""
[control]
socket = %q
`, filepath.Join(dir, "state"), srv.Addr(), filepath.Join(dir, "control.sock")))
	d := startDaemon(t, ns, bin, cfg)
	logHas := func(what string) bool {
		b, _ := os.ReadFile(d.log)
		return strings.Contains(string(b), what)
	}
	if !srv.WaitLogins(1) {
		t.Fatal("the daemon never logged in to the fake AMI server")
	}
	eventually(t, "the firewall up and the address watch", func() (bool, string) {
		return logHas("firewall up") && logHas("following the host's addresses"), "not yet in the daemon log"
	})

	ns.MustExec("ip", "addr", "add", "198.51.100.33/24", "dev", "lo")
	eventually(t, "the daemon sees the new address", func() (bool, string) {
		return logHas("198.51.100.33/24"), "no address change logged"
	})
	n := 0
	for _, src := range []string{"198.51.100.33", "198.51.100.255", "203.0.113.77"} {
		for i := 0; i < 5; i++ {
			n++
			srv.Send(invalidAccount(src, n))
		}
	}
	// The attacker's events came last: once it is banned, the others were
	// decided too.
	eventually(t, "the attacker in the ban set", func() (bool, string) {
		got := setMembers(t, ns, "sipsentry-ban-v4")
		return slices.Contains(got, "203.0.113.77"), fmt.Sprintf("ban set %v", got)
	})
	got := setMembers(t, ns, "sipsentry-ban-v4")
	for _, a := range []string{"198.51.100.33", "198.51.100.255"} {
		if slices.Contains(got, a) {
			t.Errorf("%s (the host's, added after the start) is in the ban set %v", a, got)
		}
	}
	for _, why := range []string{"host's own address", "broadcast of 198.51.100.0/24"} {
		if !logHas(why) {
			t.Errorf("no refusal naming %q in the daemon log", why)
		}
	}
}
