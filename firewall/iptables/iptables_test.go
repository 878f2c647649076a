package iptables

import (
	"context"
	"testing"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/fwtest"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// requireKernel skips (fails under CI) unless the test can make namespaces
// and use ipset and iptables.
func requireKernel(t testing.TB) {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables", "ip6tables", "iptables-save", "ip6tables-save")
}

func testConfig(mode string) config.Firewall {
	c := config.Default().Firewall
	c.Mode = mode
	c.GeoDrop = true // engine.geo_mode = "drop"
	return c
}

// newInNS returns a backend working inside a fresh namespace.
func newInNS(t testing.TB, ns *netnstest.NS, cfg config.Firewall) *Backend {
	t.Helper()
	b, err := NewWithOptions(Options{Config: cfg, Netns: ns.Name})
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
