package geo

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// BenchmarkGeoListsMemory reports the heap a Geo keeps for every shipped
// country's lists (all allowed, from lists_dir): the per-list state plus the
// index, which is what the daemon holds — BenchmarkIndexMemory measures the
// index alone.
func BenchmarkGeoListsMemory(b *testing.B) {
	cfg := testOptions()
	for _, cc := range shippedCountries {
		cfg.AllowCountries = append(cfg.AllowCountries, strings.ToUpper(cc))
	}
	cfg.ListsDir = testdata(b)
	var held uint64
	var g *Geo
	for i := 0; i < b.N; i++ {
		g = nil
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		var err error
		if g, err = Open(cfg.at(b.TempDir()), quiet()); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		held = m1.HeapAlloc - m0.HeapAlloc
	}
	if n := len(g.Lists()); n != 2*len(shippedCountries) {
		b.Fatalf("%d lists loaded, want %d", n, 2*len(shippedCountries))
	}
	v4, v6 := g.snap.Load().allowed.Ranges()
	b.ReportMetric(float64(held), "geo_lists_bytes")
	b.ReportMetric(float64(held)/float64(v4+v6), "bytes/range")
	runtime.KeepAlive(g)
}

// TestListsAreViewsOfTheIndex: once a snapshot is built, each list holds no
// ranges of its own but reads them from the index, so the ranges are kept
// once; its prefixes are still exactly the list's.
func TestListsAreViewsOfTheIndex(t *testing.T) {
	cfg := testOptions()
	cfg.AllowCountries = []string{"DE", "JP", "US"}
	cfg.ListsDir = testdata(t)
	g, err := Open(cfg.at(t.TempDir()), quiet())
	if err != nil {
		t.Fatal(err)
	}
	s := g.snap.Load()
	if len(s.lists) != 2*len(shippedCountries) {
		t.Fatalf("%d lists, want %d", len(s.lists), 2*len(shippedCountries))
	}
	for k, l := range s.lists {
		want := s.other
		if slices.Contains(cfg.AllowCountries, k.cc) {
			want = s.allowed
		}
		if l.ix != want || l.v4 != nil || l.v6 != nil {
			t.Errorf("%s: not a view of its index (ix %p want %p, %d+%d owned ranges)", k, l.ix, want, len(l.v4)/2, len(l.v6))
		}
		if got, ps := l.prefixes(), Normalize(readShipped(t, strings.ToLower(k.cc), k.v6)); !slices.Equal(got, ps) {
			t.Errorf("%s: %d prefixes from the index, want the list's %d", k, len(got), len(ps))
		}
	}
	// An update that finds the same content keeps the views.
	if _, err := g.Update(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	s2 := g.snap.Load()
	for k, l := range s2.lists {
		if l.ix == nil || (l.ix != s2.allowed && l.ix != s2.other) {
			t.Errorf("%s: after an unchanged update, not a view of the current index", k)
		}
	}
}

// TestOverlappingListKeepsItsOwnRanges: where another country's list wins
// part of a list's addresses in the index, the index cannot serve that list's
// ranges, so it keeps its own: its diff and prefixes stay exactly its list's,
// and once the overlap goes it becomes a view again.
func TestOverlappingListKeepsItsOwnRanges(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("de-ipv4.txt", "198.51.100.128/25\n203.0.113.0/24\n")
	write("jp-ipv4.txt", "198.51.100.0/24\n")
	write("de-ipv6.txt", "2001:db8:de::/48\n")
	write("jp-ipv6.txt", "2001:db8:1::/48\n")
	cfg := testOptions()
	cfg.AllowCountries = []string{"DE", "JP"}
	cfg.ListsDir = dir
	cfg.MinEntries, cfg.MaxShrink, cfg.MaxChurn = 0, 0, 0
	g, err := Open(cfg.at(t.TempDir()), quiet())
	if err != nil {
		t.Fatal(err)
	}
	de, jp := listKey{"DE", false}, listKey{"JP", false}
	s := g.snap.Load()
	if cc := g.ListCountry(mustAddr(t, "198.51.100.200")); cc != "DE" {
		t.Fatalf("overlap goes to %q, want DE (alphabetically first)", cc)
	}
	if s.lists[de].ix != s.allowed {
		t.Error("DE lost nothing in the index but is not a view of it")
	}
	if l := s.lists[jp]; l.ix != nil || len(l.v4) != 2 {
		t.Fatalf("JP lost addresses to DE but keeps no ranges of its own: ix %p, %d owned", l.ix, len(l.v4)/2)
	}
	if got := s.lists[jp].prefixes(); !slices.Equal(got, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}) {
		t.Fatalf("JP prefixes %v, want its list 198.51.100.0/24", got)
	}
	write("jp-ipv4.txt", "198.51.100.0/24\n198.18.0.0/24\n")
	res, err := g.Update(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.List == "jp-ipv4" && (r.Decision != DecisionUpdated || r.Added != 1 || r.Removed != 0) {
			t.Errorf("jp-ipv4: %s +%d -%d, want updated +1 -0 against its own list", r.Decision, r.Added, r.Removed)
		}
	}
	// DE drops the overlap: JP's ranges are whole in the new index again.
	write("de-ipv4.txt", "203.0.113.0/24\n")
	if _, err := g.Update(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	s = g.snap.Load()
	for _, k := range []listKey{de, jp} {
		if l := s.lists[k]; l.ix != s.allowed || l.v4 != nil {
			t.Errorf("%s: not a view of the new index once the overlap is gone", k)
		}
	}
	if cc := g.ListCountry(mustAddr(t, "198.51.100.200")); cc != "JP" {
		t.Errorf("198.51.100.200 in %q, want JP", cc)
	}
}
