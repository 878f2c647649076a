package iptables

import (
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// TestNFLOGRules: with firewall.nflog_group set, enforce mode copies what
// the ban rule and the country rule drop to the NFLOG group, each copy just
// before its DROP and rate-limited; a second Up changes nothing; group 0
// and monitor mode add no NFLOG rule (issue 12).
func TestNFLOGRules(t *testing.T) {
	requireKernel(t)
	ns := netnstest.NewNS(t, "nflog")
	cfg := testConfig("enforce")
	cfg.NFLogGroup = 5061
	b := newInNS(t, ns, cfg)
	if err := b.Up(ctx); err != nil {
		t.Fatal(err)
	}
	up1 := snapshot(t, ns)
	if err := b.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if up2 := snapshot(t, ns); up2 != up1 {
		t.Fatalf("second up changed the ruleset:\n%s\n---\n%s", up1, up2)
	}
	for _, v := range []string{"v4", "v6"} {
		ban := "-A SIPSENTRY -m set --match-set sipsentry-ban-" + v + " src -m limit --limit 1000/sec --limit-burst 200 -j NFLOG --nflog-prefix sipsentry-ban --nflog-group 5061 --nflog-size 512\n" +
			"-A SIPSENTRY -m set --match-set sipsentry-ban-" + v + " src -j DROP\n"
		if !strings.Contains(up1, ban) {
			t.Errorf("no NFLOG copy right before the %s ban DROP:\n%s", v, up1)
		}
	}
	geo := "-A SIPSENTRY -m limit --limit 1000/sec --limit-burst 200 -j NFLOG --nflog-prefix sipsentry-geo --nflog-group 5061 --nflog-size 512\n" + finalDrop + "\n"
	if strings.Count(up1, geo) != 2 {
		t.Errorf("want the country NFLOG copy right before the final DROP in both families:\n%s", up1)
	}

	// Drift repair knows the NFLOG rules: none reported on the fresh
	// chain (the limit's moving state is not drift), a deleted copy rule
	// is found and put back.
	want := firewall.DesiredSets{}
	if d := mustVerify(t, b, want, false); len(d.Objects) != 0 {
		t.Fatalf("drift on a fresh chain with NFLOG rules: %+v", d)
	}
	ns.MustExec("iptables", "-D", "SIPSENTRY", "-m", "limit", "--limit", "1000/sec", "--limit-burst", "200", "-j", "NFLOG",
		"--nflog-prefix", "sipsentry-geo", "--nflog-group", "5061", "--nflog-size", "512")
	if d := mustVerify(t, b, want, true); len(d.Objects) == 0 {
		t.Fatal("a deleted NFLOG rule was not seen as drift")
	}
	if s := snapshot(t, ns); s != up1 {
		t.Fatalf("repair did not restore the NFLOG rule:\n%s\n---\n%s", up1, s)
	}

	off := testConfig("enforce")
	off.NFLogGroup = 0
	if err := newInNS(t, ns, off).Up(ctx); err != nil {
		t.Fatal(err)
	}
	if s := snapshot(t, ns); strings.Contains(s, "NFLOG") || !strings.Contains(s, finalDrop) {
		t.Fatalf("nflog_group 0: want no NFLOG rule and the DROP kept:\n%s", s)
	}
	mon := testConfig("monitor")
	mon.NFLogGroup = 5061
	if err := newInNS(t, ns, mon).Up(ctx); err != nil {
		t.Fatal(err)
	}
	if s := snapshot(t, ns); strings.Contains(s, "NFLOG") {
		t.Fatalf("monitor mode drops nothing, so it copies nothing:\n%s", s)
	}
}
