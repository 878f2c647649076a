package geo

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"go4.org/netipx"
)

func TestIndexSmall(t *testing.T) {
	ix := NewIndex(map[string][]netip.Prefix{
		"JP": pfx("198.51.100.0/25", "198.51.100.128/25", "2001:db8:1::/48"),
		"DE": pfx("203.0.113.0/24", "2001:db8:2::/48"),
	})
	for _, tc := range []struct{ ip, cc string }{
		{"198.51.100.0", "JP"}, {"198.51.100.255", "JP"}, {"198.51.99.255", ""}, {"198.51.101.0", ""},
		{"203.0.113.9", "DE"}, {"2001:db8:1::5", "JP"}, {"2001:db8:2:ffff::1", "DE"}, {"2001:db8:3::", ""},
		{"::ffff:203.0.113.9", "DE"}, {"0.0.0.0", ""}, {"255.255.255.255", ""}, {"::", ""},
	} {
		got, ok := ix.Country(mustAddr(t, tc.ip))
		if got != tc.cc || ok != (tc.cc != "") {
			t.Errorf("Country(%s) = %q,%v want %q", tc.ip, got, ok, tc.cc)
		}
	}
	if v4, v6 := ix.Ranges(); v4 != 2 || v6 != 2 {
		t.Errorf("ranges = %d,%d want 2,2 (JP halves merged)", v4, v6)
	}
	var nilIx *Index
	if _, ok := nilIx.Country(mustAddr(t, "198.51.100.1")); ok {
		t.Error("nil index holds an address")
	}
	if _, ok := NewIndex(nil).Country(mustAddr(t, "198.51.100.1")); ok {
		t.Error("empty index holds an address")
	}
}

func TestIndexOverlapFirstCodeWins(t *testing.T) {
	ix := NewIndex(map[string][]netip.Prefix{
		"US": pfx("198.51.100.0/24", "0.0.0.0/0"),
		"DE": pfx("198.51.100.64/26"),
		"JP": pfx("198.51.100.0/25", "255.255.255.255/32"),
	})
	for _, tc := range []struct{ ip, cc string }{
		{"198.51.100.1", "JP"}, {"198.51.100.70", "DE"}, {"198.51.100.200", "US"},
		{"8.8.8.8", "US"}, {"255.255.255.255", "JP"}, {"0.0.0.0", "US"},
	} {
		if got, _ := ix.Country(mustAddr(t, tc.ip)); got != tc.cc {
			t.Errorf("Country(%s) = %q, want %q", tc.ip, got, tc.cc)
		}
	}
}

// TestIndexShippedAgainstNetipx checks every shipped country list in one
// index against netipx sets, at random addresses and at every prefix edge.
func TestIndexShippedAgainstNetipx(t *testing.T) {
	by := map[string][]netip.Prefix{}
	sets := map[string]*netipx.IPSet{}
	for _, cc := range shippedCountries {
		CC := strings.ToUpper(cc)
		var b netipx.IPSetBuilder
		for _, v6 := range []bool{false, true} {
			ps := readShipped(t, cc, v6)
			by[CC] = append(by[CC], ps...)
			for _, p := range ps {
				b.AddPrefix(p)
			}
		}
		s, err := b.IPSet()
		if err != nil {
			t.Fatal(err)
		}
		sets[CC] = s
	}
	ix := NewIndex(by)
	want := func(a netip.Addr) string {
		for _, cc := range ix.Countries() { // sorted: the first code wins overlaps
			if sets[cc].Contains(a) {
				return cc
			}
		}
		return ""
	}
	check := func(a netip.Addr) {
		t.Helper()
		if got, _ := ix.Country(a); got != want(a) {
			t.Fatalf("Country(%s) = %q, want %q", a, got, want(a))
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 50000; i++ {
		check(netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())}))
	}
	for cc, ps := range by {
		for i, p := range ps {
			if i%5 != 0 { // a fifth of the edges keeps the test quick under -race
				continue
			}
			r := netipx.RangeOfPrefix(p)
			check(r.From())
			check(r.To())
			if prev := r.From().Prev(); prev.IsValid() {
				check(prev)
			}
			if next := r.To().Next(); next.IsValid() {
				check(next)
			}
			if got, _ := ix.Country(r.From()); got != cc {
				t.Fatalf("%s from %s's list maps to %q", p, cc, got)
			}
		}
	}
}
