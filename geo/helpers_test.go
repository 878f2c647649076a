package geo

import (
	"bufio"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/internal/testpath"
)

// testdata returns ../shared/testdata/geo relative to the module root (the
// directory holding go.mod), where CI places the shared fixtures.
func testdata(t testing.TB) string {
	t.Helper()
	return testpath.SharedSet(t, "geo")
}

// shippedCountries are the countries with lists in the shared test data.
var shippedCountries = []string{"br", "ca", "cn", "de", "jp", "ru", "sg", "us"}

func readShipped(t testing.TB, cc string, v6 bool) []netip.Prefix {
	t.Helper()
	fam := "ipv4"
	if v6 {
		fam = "ipv6"
	}
	f, err := os.Open(filepath.Join(testdata(t), cc+"-"+fam+"-aggregated.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ps, err := ParseList(f, v6)
	if err != nil {
		t.Fatalf("%s-%s: %v", cc, fam, err)
	}
	return ps
}

// shippedCount counts the non-comment lines of a shipped list, independently
// of ParseList.
func shippedCount(t testing.TB, cc, fam string) int {
	t.Helper()
	f, err := os.Open(filepath.Join(testdata(t), cc+"-"+fam+"-aggregated.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testOptions are the shipped defaults (internal/config's), written out:
// geo's tests cannot import the daemon's translation without a cycle.
func testOptions() Options {
	return Options{
		ListURLv4:        "https://raw.githubusercontent.com/ipverse/rir-ip/master/country/{cc}/ipv4-aggregated.txt",
		ListURLv6:        "https://raw.githubusercontent.com/ipverse/rir-ip/master/country/{cc}/ipv6-aggregated.txt",
		Refresh:          24 * time.Hour,
		MinEntries:       50,
		MaxShrink:        0.2,
		MaxChurn:         0.25,
		DownloadTimeout:  60 * time.Second,
		MaxDownloadBytes: 16 << 20,
		StoreLastGood:    true, // as the daemon runs
	}
}

// at is o with its state dir set.
func (o Options) at(stateDir string) Options {
	o.StateDir = stateDir
	return o
}

// handMade turns the floor, shrink and churn guards off, as an admin with a
// tiny hand-made lists_dir must (tests of lookups, not of the guards).
func handMade(o Options) Options {
	o.MinEntries, o.MaxShrink, o.MaxChurn = 0, 0, 0
	return o
}
