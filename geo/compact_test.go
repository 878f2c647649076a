package geo

import (
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sipsentry/sipsentry/geo/geotest"
)

// TestCompactListsMatchPrefixes checks the range-only representation
// against the prefixes it replaced, on every shipped list: the derived
// AllowedPrefixes is Normalize of all allowed lists, each list's entry count
// is its normalised prefix count, and each list's prefixes round-trip.
func TestCompactListsMatchPrefixes(t *testing.T) {
	td := testdata(t)
	allow := []string{"DE", "JP", "US"}
	cfg := testOptions()
	cfg.AllowCountries = allow
	cfg.ListsDir = td
	g, err := Open(cfg.at(t.TempDir()), quiet())
	if err != nil {
		t.Fatal(err)
	}
	var all [][]netip.Prefix
	for _, l := range g.Lists() {
		ps := Normalize(readShipped(t, strings.ToLower(l.Country), l.Family == "ipv6"))
		if l.Entries != len(ps) {
			t.Errorf("%s: Entries %d, want %d", l.Name, l.Entries, len(ps))
		}
		k := listKey{l.Country, l.Family == "ipv6"}
		if got := g.snap.Load().lists[k].prefixes(); !slices.Equal(got, ps) {
			t.Errorf("%s: prefixes derived from the ranges differ from the list (%d vs %d)", l.Name, len(got), len(ps))
		}
		if slices.Contains(allow, l.Country) {
			all = append(all, ps)
		}
	}
	if len(all) != 2*len(allow) {
		t.Fatalf("%d allowed lists loaded, want %d", len(all), 2*len(allow))
	}
	want := Normalize(slices.Concat(all...))
	if got := g.AllowedPrefixes(); !slices.Equal(got, want) {
		t.Fatalf("AllowedPrefixes: %d prefixes, want Normalize of the allowed lists: %d", len(got), len(want))
	}
}

// TestMMDBMappedCopySurvivesInPlaceRewrite: the database is mapped from a
// private copy, so an admin rewriting the configured file in place (cp
// truncates it first) cannot pull pages from under a lookup; the copy is
// unlinked at once, leaving nothing in the state dir.
func TestMMDBMappedCopySurvivesInPlaceRewrite(t *testing.T) {
	dir, stateDir := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "country.mmdb")
	geotest.WriteMMDB(t, path, map[string]string{"198.51.100.0/24": "JP", "2001:db8::/32": "JP"}, true)
	cfg := testOptions()
	cfg.MMDB = path
	g, err := Open(cfg.at(stateDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	a := mustAddr(t, "198.51.100.7")
	if got := g.MMDBCountry(a); got != "JP" {
		t.Fatalf("MMDBCountry = %q, want JP", got)
	}
	if maps, err := os.ReadFile("/proc/self/maps"); err == nil && !strings.Contains(string(maps), filepath.Join(stateDir, ".sipsentry-mmdb-")) {
		t.Fatal("the database is not mapped from a private copy in the state dir")
	}
	// In place: same inode, truncated to nothing, then half a file.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if got := g.MMDBCountry(mustAddr(t, "2001:db8::1")); got != "JP" {
		t.Fatalf("after truncating the file in place: %q, want JP (from the private copy)", got)
	}
	g.Reload() // an empty file is rejected; the mapped copy stays
	if got := g.MMDBCountry(a); got != "JP" {
		t.Fatalf("after a reload of the truncated file: %q, want JP", got)
	}
	ents, err := os.ReadDir(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".sipsentry-mmdb-") {
			t.Errorf("private copy %s left in the state dir", e.Name())
		}
	}
	if h := g.country.handle(); h == nil || h.r == nil {
		t.Fatal("no database handle")
	}
}

// TestMMDBReplaceDuringLookups swaps mapped databases under concurrent
// lookups while forcing collections, so the old mappings are unmapped as
// soon as the GC may: every lookup must still answer one of the countries
// written (a lookup reading an unmapped page would crash the test binary).
func TestMMDBReplaceDuringLookups(t *testing.T) {
	dir, stateDir := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "country.mmdb")
	ccs := []string{"JP", "DE"}
	write := func(i int) {
		tmp := filepath.Join(dir, "new.tmp")
		geotest.WriteMMDB(t, tmp, map[string]string{"198.51.100.0/24": ccs[i%2]}, i%2 == 0)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	cfg := testOptions()
	cfg.MMDB = path
	g, err := Open(cfg.at(stateDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	a := mustAddr(t, "198.51.100.9")
	done := make(chan struct{})
	bad := make(chan string, 1)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if cc := g.MMDBCountry(a); !slices.Contains(ccs, cc) {
					select {
					case bad <- cc:
					default:
					}
				}
			}
		}()
	}
	for i := 1; i <= 40; i++ {
		write(i)
		g.Reload()
		runtime.GC()
	}
	close(done)
	wg.Wait()
	select {
	case cc := <-bad:
		t.Fatalf("a lookup during replacements answered %q", cc)
	default:
	}
	if got := g.MMDBCountry(a); got != ccs[0] {
		t.Errorf("after the last replacement: %q, want %s", got, ccs[0])
	}
}
