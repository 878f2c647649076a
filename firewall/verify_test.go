package firewall

import (
	"errors"
	"iter"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRepairCounter(t *testing.T) {
	c := NewRepairCounter()
	c.Record(Drift{Objects: []ObjectDrift{
		{Object: "ban-v4", Missing: 3, Repaired: true},
		{Object: "chain-v4", Missing: 5, Refused: ErrNotOurs},
		{Object: "jump-v6", Extra: 1}, // seen, repair not asked
	}})
	c.Record(Drift{Objects: []ObjectDrift{{Object: "ban-v4", Extra: 1, Repaired: true}}})
	if c.Count("ban-v4") != 2 || c.Count("chain-v4") != 0 || c.Count("jump-v6") != 0 {
		t.Fatalf("counts: ban-v4 %d chain-v4 %d jump-v6 %d; want 2 0 0", c.Count("ban-v4"), c.Count("chain-v4"), c.Count("jump-v6"))
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	want := `# HELP sipsentry_firewall_repairs_total Kernel objects (a set's members, the chain's rules, the INPUT jumps) found to differ from the desired state and repaired.
# TYPE sipsentry_firewall_repairs_total counter
sipsentry_firewall_repairs_total{object="ban-v4"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sipsentry_firewall_repairs_total"); err != nil {
		t.Fatal(err)
	}
}

func TestDriftString(t *testing.T) {
	if s := (Drift{}).String(); s != "no drift" || !(Drift{}).Clean() {
		t.Fatalf("empty drift: %q", s)
	}
	d := Drift{Objects: []ObjectDrift{
		{Object: "ban-v4", Missing: 2, Extra: 1, Detail: "missing 198.51.100.1/32", Repaired: true},
		{Object: "chain-v4", Missing: 7, Refused: errors.New("not ours")},
	}}
	want := "ban-v4: 2 missing 1 extra (missing 198.51.100.1/32), repaired; chain-v4: 7 missing, not repaired: not ours"
	if d.String() != want || d.Clean() {
		t.Fatalf("String = %q\nwant     %q", d.String(), want)
	}
}

func TestWithAndDesiredSets(t *testing.T) {
	base := DesiredSets{SetBan: {{Prefix: netip.MustParsePrefix("198.51.100.1/32")}}, SetAllowCountry: {{Prefix: netip.MustParsePrefix("203.0.113.0/24")}}}
	cc := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	w := With(base, SetAllowCountry, func() iter.Seq[Entry] { return PrefixEntries(cc) })
	prefixes := func(set Set) []netip.Prefix {
		var out []netip.Prefix
		for e := range w.Entries(set) {
			out = append(out, e.Prefix)
		}
		return out
	}
	if got := prefixes(SetAllowCountry); !slices.Equal(got, cc) {
		t.Fatalf("allow-cc = %v, want the override %v", got, cc)
	}
	if got := prefixes(SetBan); len(got) != 1 || got[0] != netip.MustParsePrefix("198.51.100.1/32") {
		t.Fatalf("ban = %v, want the base's", got)
	}
	if got := prefixes(SetAllow); len(got) != 0 {
		t.Fatalf("allow = %v, want empty", got)
	}
	if got := With(nil, SetBan, func() iter.Seq[Entry] { return PrefixEntries(nil) }); len(slices.Collect(got.Entries(SetAllow))) != 0 {
		t.Fatal("With(nil) yields for another set")
	}
}
