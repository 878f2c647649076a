package iptables

import (
	"context"
	"testing"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/fwtest"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// requireKernel skips (fails under CI) unless the test can make namespaces
// and use ipset and iptables.
func requireKernel(t testing.TB) {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables", "ip6tables", "iptables-save", "ip6tables-save")
}

// testConfig is the shipped [firewall] defaults (contrib/sipsentry.toml)
// with geo_mode "drop" and the given mode.
func testConfig(mode string) Options {
	return Options{
		Mode: firewall.Mode(mode), GeoDrop: true, Chain: "SIPSENTRY", InputPosition: 1,
		UDPPorts:   []firewall.PortRange{{From: 5060, To: 5060}},
		TCPPorts:   []firewall.PortRange{{From: 5060, To: 5061}},
		RTPPorts:   []firewall.PortRange{{From: 10000, To: 20000}},
		BanMaxElem: 1 << 20,
	}
}

// newInNS returns a backend working inside a fresh namespace.
func newInNS(t testing.TB, ns *netnstest.NS, cfg Options) *Backend {
	t.Helper()
	cfg.Netns = ns.Name
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("NewWithOptions: %v", err)
	}
	t.Cleanup(func() {
		_ = b.Down(context.Background())
		b.Close()
	})
	return b
}

func TestSuite(t *testing.T) {
	requireKernel(t)
	for _, mode := range []string{"enforce", "monitor"} {
		t.Run(mode, func(t *testing.T) {
			fwtest.Suite(t, func(t *testing.T) firewall.Backend {
				return newInNS(t, netnstest.NewNS(t, "fw"), testConfig(mode))
			})
		})
	}
}
