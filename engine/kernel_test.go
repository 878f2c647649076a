package engine

import (
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/iptables"
	"github.com/sipsentry/sipsentry/internal/netnstest"
	"github.com/sipsentry/sipsentry/state"
)

// TestKernelDesiredState, on the real ipset/iptables backend in a network
// namespace: a static allow removed from the config while the engine was
// stopped is gone after the next Start whatever its comment; a manual ban
// made before the stop is restored with its remaining time; Unban takes it
// out of the kernel; a second Unban is ErrNotBanned.
func TestKernelDesiredState(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables", "ip6tables")
	ns := netnstest.NewNS(t, "eng")
	be, err := iptables.New(iptables.Options{Mode: firewall.ModeEnforce, Chain: "SIPSENTRY", InputPosition: 1,
		UDPPorts: []firewall.PortRange{{From: 5060, To: 5060}}, Netns: ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = be.Down(bg)
		be.Close()
	})
	if err := be.Up(bg); err != nil {
		t.Fatal(err)
	}
	clock := newClock()
	clock.t = time.Now().Truncate(time.Second) // the kernel counts timeouts in real seconds
	dbPath := filepath.Join(t.TempDir(), state.FileName)
	useKernel := func(d *Deps) { d.Firewall = be }
	r1 := newRig(t, rigOpt{clock: clock, dbPath: dbPath, deps: useKernel, cfg: func(o *Options) {
		o.StaticAllows = []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25"), netip.MustParsePrefix("198.51.100.0/25")}
	}})
	if _, err := r1.eng.BanManual(bg, netip.MustParseAddr("203.0.113.40"), time.Hour, "kernel test", 0); err != nil {
		t.Fatal(err)
	}
	r1.stop()
	// What an older backend left: the same static range under its own
	// comment, and a range nobody wants any more.
	if err := be.Add(bg, firewall.SetAllow,
		firewall.Entry{Prefix: netip.MustParsePrefix("203.0.113.128/25"), Comment: "sipsentry static (backend)"},
		firewall.Entry{Prefix: netip.MustParsePrefix("2001:db8:1::/48"), Comment: "sipsentry: static allow"}); err != nil {
		t.Fatal(err)
	}

	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath, deps: useKernel, cfg: func(o *Options) {
		o.StaticAllows = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}
	}})
	allows, err := be.List(bg, firewall.SetAllow)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range allows {
		got = append(got, e.Prefix.String())
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"198.51.100.0/25"}) {
		t.Errorf("kernel allow set after start = %v, want only 198.51.100.0/25", got)
	}
	bans, err := be.List(bg, firewall.SetBan)
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != 1 || bans[0].Prefix != netip.MustParsePrefix("203.0.113.40/32") || bans[0].Timeout < 50*time.Minute {
		t.Errorf("kernel ban set after start = %+v", bans)
	}
	if err := r2.eng.Unban(bg, netip.MustParseAddr("203.0.113.40"), 0); err != nil {
		t.Fatal(err)
	}
	if ok, _ := be.Contains(bg, firewall.SetBan, netip.MustParseAddr("203.0.113.40")); ok {
		t.Error("unbanned address still in the kernel")
	}
	if err := r2.eng.Unban(bg, netip.MustParseAddr("203.0.113.40"), 0); err == nil {
		t.Error("second unban accepted")
	}
}
