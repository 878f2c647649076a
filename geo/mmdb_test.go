package geo

import (
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/geo/geotest"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func openWith(t *testing.T, mod func(*Options)) *Geo {
	t.Helper()
	cfg := testOptions()
	mod(&cfg)
	g, err := Open(cfg.at(t.TempDir()), quiet())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestMMDBKnownAnswers(t *testing.T) {
	td := testdata(t)
	for _, tc := range []struct {
		db     string
		schema string
		want   map[string]string
	}{
		{"GeoIP2-Country-Test.mmdb", "geoip2", map[string]string{
			"81.2.69.160": "GB", "2.125.160.216": "GB", "89.160.20.112": "SE", "216.160.83.56": "US",
			"67.43.156.1": "BT", "202.196.224.1": "PH", "111.235.160.1": "CN", "50.114.0.1": "US",
			"214.1.1.1": "", "2001:218::1": "JP", "2a02:d180::1": "DE", "10.0.0.1": "", "1.1.1.1": "",
			"::ffff:81.2.69.160": "GB",
		}},
		{"GeoLite2-Country-Test.mmdb", "geoip2", map[string]string{
			"81.2.69.160": "GB", "89.160.20.112": "SE", "2001:218::1": "JP", "214.1.1.1": "",
		}},
		{"dbip-country.mmdb", "flat", map[string]string{
			"8.8.8.8": "US", "1.1.1.1": "AU", "133.242.0.1": "JP", "2001:4860:4860::8888": "CA", "10.0.0.1": "",
		}},
		{"iptoasn-country.mmdb", "flat", map[string]string{
			"8.8.8.8": "US", "1.1.1.1": "US", "133.242.0.1": "JP", "2001:4860:4860::8888": "US", "10.0.0.1": "",
		}},
	} {
		t.Run(tc.db, func(t *testing.T) {
			g := openWith(t, func(c *Options) { c.MMDB = filepath.Join(td, tc.db) })
			if dbs := g.Databases(); len(dbs) != 1 || !dbs[0].Loaded || dbs[0].Schema != tc.schema {
				t.Fatalf("Databases() = %+v, want one loaded with schema %s", dbs, tc.schema)
			}
			for ip, want := range tc.want {
				if got := g.Lookup(mustAddr(t, ip)).MMDBCountry; got != want {
					t.Errorf("%s: %s → %q, want %q", tc.db, ip, got, want)
				}
			}
		})
	}
}

func TestASNKnownAnswers(t *testing.T) {
	td := testdata(t)
	g := openWith(t, func(c *Options) { c.ASNMMDB = filepath.Join(td, "GeoLite2-ASN-Test.mmdb") })
	for ip, want := range map[string]struct {
		asn uint
		org string
	}{
		"1.128.0.1": {1221, "Telstra Pty Ltd"}, "12.81.92.1": {7018, "AT&T Services"},
		"2600:6000::1": {237, "Merit Network Inc."}, "81.2.69.160": {0, ""},
	} {
		v := g.Lookup(mustAddr(t, ip))
		if v.ASN != want.asn || v.Org != want.org {
			t.Errorf("%s → AS%d %q, want AS%d %q", ip, v.ASN, v.Org, want.asn, want.org)
		}
		if v.MMDBCountry != "?" {
			t.Errorf("%s: no country DB configured but MMDBCountry = %q, want \"?\"", ip, v.MMDBCountry)
		}
	}
}

func TestGeotestMMDBBothSchemas(t *testing.T) {
	for _, flat := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "c.mmdb")
		geotest.WriteMMDB(t, path, map[string]string{
			"198.51.100.0/24": "JP", "203.0.113.0/24": "DE", "203.0.113.128/25": "FR", "2001:db8::/32": "JP",
		}, flat)
		g := openWith(t, func(c *Options) { c.MMDB = path })
		want := map[bool]string{false: "geoip2", true: "flat"}[flat]
		if s := g.Databases()[0].Schema; s != want {
			t.Errorf("flat=%v: schema %s, want %s", flat, s, want)
		}
		for ip, cc := range map[string]string{
			"198.51.100.9": "JP", "203.0.113.1": "DE", "203.0.113.200": "FR", "2001:db8:ab::1": "JP",
			"198.18.0.1": "", "2001:db9::1": "",
		} {
			if got := g.MMDBCountry(mustAddr(t, ip)); got != cc {
				t.Errorf("flat=%v: %s → %q, want %q", flat, ip, got, cc)
			}
		}
	}
}

func TestBadDatabaseNamesSetting(t *testing.T) {
	td := testdata(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("this is not a database\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		mod      func(*Options)
		want     []string
		notWants string
	}{
		{"text file as mmdb", func(c *Options) { c.MMDB = text }, []string{"geo.mmdb", text, "not a MaxMind DB"}, ""},
		{"directory as mmdb", func(c *Options) { c.MMDB = dir }, []string{"geo.mmdb", "not a regular file"}, ""},
		{"text file as asn", func(c *Options) { c.ASNMMDB = text }, []string{"geo.asn_mmdb", "not a MaxMind DB"}, ""},
		{"asn db as country db", func(c *Options) { c.MMDB = filepath.Join(td, "GeoLite2-ASN-Test.mmdb") },
			[]string{"geo.mmdb", "wrong kind", "GeoLite2-ASN"}, ""},
		{"country db as asn db", func(c *Options) { c.ASNMMDB = filepath.Join(td, "GeoIP2-Country-Test.mmdb") },
			[]string{"geo.asn_mmdb", "wrong kind"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testOptions()
			tc.mod(&cfg)
			_, err := Open(cfg.at(t.TempDir()), quiet())
			if err == nil {
				t.Fatal("Open accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestMissingDatabaseIsWarning(t *testing.T) {
	var logs strings.Builder
	cfg := testOptions()
	cfg.MMDB = filepath.Join(t.TempDir(), "absent.mmdb")
	g, err := Open(cfg.at(t.TempDir()), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("missing DB must not fail Open: %v", err)
	}
	if v := g.Lookup(mustAddr(t, "198.51.100.1")); v.MMDBCountry != "?" || v.Disagree {
		t.Errorf("verdict without DB = %+v, want country \"?\" and no disagreement", v)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "geo.mmdb") {
		t.Errorf("no warning naming geo.mmdb logged: %s", logs.String())
	}
}

// TestMMDBReloadOnReplace replaces the file the way geoipupdate does (write
// elsewhere, rename over) and checks that Reload picks it up, that a broken
// replacement keeps the old DB, and that a DB appearing later is loaded.
func TestMMDBReloadOnReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "country.mmdb")
	g := openWith(t, func(c *Options) { c.MMDB = path }) // missing at start
	a := mustAddr(t, "198.51.100.10")
	if got := g.MMDBCountry(a); got != "?" {
		t.Fatalf("before the file exists: %q", got)
	}
	replace := func(write func(tmp string)) {
		tmp := filepath.Join(dir, "new.tmp")
		write(tmp)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	replace(func(tmp string) { geotest.WriteMMDB(t, tmp, map[string]string{"198.51.100.0/24": "JP"}, true) })
	g.Reload()
	if got := g.MMDBCountry(a); got != "JP" {
		t.Fatalf("after first file: %q, want JP", got)
	}
	replace(func(tmp string) { geotest.WriteMMDB(t, tmp, map[string]string{"198.51.100.0/24": "DE"}, false) })
	g.Reload()
	if got := g.MMDBCountry(a); got != "DE" {
		t.Fatalf("after replacement: %q, want DE", got)
	}
	replace(func(tmp string) { os.WriteFile(tmp, []byte("garbage"), 0o644) })
	g.Reload()
	if got := g.MMDBCountry(a); got != "DE" {
		t.Fatalf("a broken replacement must keep the old DB: %q, want DE", got)
	}
}

// TestMMDBCacheMatchesRawDecode checks that the per-record country cache
// returns exactly what decoding each record gives, for both schemas.
func TestMMDBCacheMatchesRawDecode(t *testing.T) {
	td := testdata(t)
	for _, db := range []string{"dbip-country.mmdb", "GeoIP2-Country-Test.mmdb"} {
		g := openWith(t, func(c *Options) { c.MMDB = filepath.Join(td, db) })
		h := g.country.handle()
		r := rand.New(rand.NewPCG(9, 10))
		for i := 0; i < 50000; i++ {
			var a netip.Addr
			if i%2 == 0 {
				a = netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
			} else {
				var b [16]byte
				b[0], b[1], b[2], b[3] = 0x20, byte(r.IntN(16)), byte(r.Uint32()), byte(r.Uint32())
				a = netip.AddrFrom16(b)
			}
			want, _ := decodeCountry(h.r.Lookup(a), h.schema)
			for k := 0; k < 2; k++ { // miss, then hit
				if got := g.MMDBCountry(a); got != want {
					t.Fatalf("%s: %s → %q (pass %d), decoding gives %q", db, a, got, k, want)
				}
			}
		}
	}
}
