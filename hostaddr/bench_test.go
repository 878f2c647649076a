package hostaddr

import (
	"net/netip"
	"testing"
)

// BenchmarkReason is the hot-path cost of asking about an address that is
// not the host's (the common case), against a plain map lookup of the same
// key as the baseline.
func BenchmarkReason(b *testing.B) {
	s := Fixed(netip.MustParsePrefix("203.0.113.7/24"), netip.MustParsePrefix("198.51.100.9/24"),
		netip.MustParsePrefix("2001:db8::7/64"))
	a := netip.MustParseAddr("192.0.2.200")
	b.Run("Reason", func(b *testing.B) {
		for b.Loop() {
			if s.Reason(a) != "" {
				b.Fatal("unexpected reason")
			}
		}
	})
	b.Run("baseline-map", func(b *testing.B) {
		m := map[netip.Addr]string{netip.MustParseAddr("203.0.113.7"): "x"}
		for b.Loop() {
			if m[a] != "" {
				b.Fatal("unexpected")
			}
		}
	})
}
