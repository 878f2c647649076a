// Package geotest writes tiny MaxMind DBs and country list files for tests
// in every package (engine, report, commands, end-to-end runs).
//
// Networks are given as CIDR strings; tests should use TEST-NET ranges
// (198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) — never 192.0.2.0/24,
// which is the host network of the build machine. It must never be imported
// by non-test code.
package geotest

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// WriteMMDB writes a country database mapping each CIDR to an ISO code.
// flat false writes the GeoIP2 schema (country.iso_code and
// registered_country.iso_code, database_type "GeoIP2-Country"); flat true
// writes the ip-location-db schema ({country_code}, database_type "country").
func WriteMMDB(t testing.TB, path string, m map[string]string, flat bool) {
	t.Helper()
	dbType := "GeoIP2-Country"
	if flat {
		dbType = "country"
	}
	records := map[string]mmdbtype.DataType{}
	for cidr, cc := range m {
		if flat {
			records[cidr] = mmdbtype.Map{"country_code": mmdbtype.String(cc)}
		} else {
			iso := mmdbtype.Map{"iso_code": mmdbtype.String(cc)}
			records[cidr] = mmdbtype.Map{"country": iso, "registered_country": iso}
		}
	}
	write(t, path, dbType, records)
}

// ASN is one record of an ASN database.
type ASN struct {
	Number uint32
	Org    string
}

// WriteASNMMDB writes a GeoLite2-ASN style database (autonomous_system_number,
// autonomous_system_organization).
func WriteASNMMDB(t testing.TB, path string, m map[string]ASN) {
	t.Helper()
	records := map[string]mmdbtype.DataType{}
	for cidr, a := range m {
		records[cidr] = mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(a.Number),
			"autonomous_system_organization": mmdbtype.String(a.Org),
		}
	}
	write(t, path, "GeoLite2-ASN", records)
}

func write(t testing.TB, path, dbType string, records map[string]mmdbtype.DataType) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: dbType,
		RecordSize:   24,
		// TEST-NET ranges are reserved; the writer refuses them by default.
		IncludeReservedNetworks: true,
		// Aliasing would map ::ffff:0:0/96 etc. onto IPv4, which is reserved
		// space too and collides with IncludeReservedNetworks.
		DisableIPv4Aliasing: true,
		Description:         map[string]string{"en": "sipsentry geotest fixture"},
	})
	if err != nil {
		t.Fatalf("geotest: %v", err)
	}
	// Insert shorter prefixes first so longer ones override them.
	cidrs := make([]string, 0, len(records))
	for c := range records {
		cidrs = append(cidrs, c)
	}
	sort.Slice(cidrs, func(i, j int) bool {
		pi, pj := mustPrefix(t, cidrs[i]), mustPrefix(t, cidrs[j])
		if pi.Bits() != pj.Bits() {
			return pi.Bits() < pj.Bits()
		}
		return cidrs[i] < cidrs[j]
	})
	for _, c := range cidrs {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			t.Fatalf("geotest: bad CIDR %q: %v", c, err)
		}
		if err := tree.Insert(n, records[c]); err != nil {
			t.Fatalf("geotest: inserting %s: %v", c, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("geotest: %v", err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("geotest: %v", err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		t.Fatalf("geotest: writing %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("geotest: %v", err)
	}
}

func mustPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatalf("geotest: bad CIDR %q: %v", s, err)
	}
	return p
}

// WriteLists writes lists_dir files: for each country code, <cc>-ipv4.txt
// and <cc>-ipv6.txt (lower-case cc) with the CIDRs of that family, one per
// line under a comment header. A family with no CIDRs gets no file.
func WriteLists(t testing.TB, dir string, m map[string][]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("geotest: %v", err)
	}
	for cc, cidrs := range m {
		var v4, v6 []string
		for _, c := range cidrs {
			if mustPrefix(t, c).Addr().Is4() {
				v4 = append(v4, c)
			} else {
				v6 = append(v6, c)
			}
		}
		for fam, list := range map[string][]string{"ipv4": v4, "ipv6": v6} {
			if len(list) == 0 {
				continue
			}
			body := "# geotest list for " + strings.ToUpper(cc) + " " + fam + "\n" + strings.Join(list, "\n") + "\n"
			p := filepath.Join(dir, strings.ToLower(cc)+"-"+fam+".txt")
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatalf("geotest: %v", err)
			}
		}
	}
}
