package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/geo/geotest"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// geoTestdata is ../shared/testdata/geo beside the module root.
func geoTestdata(t testing.TB) string {
	t.Helper()
	return testpath.SharedSet(t, "geo")
}

// geoCmd runs the CLI in-process and returns stdout and the error.
func geoCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--log-level", "error"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// geoCmdStdout runs the CLI in-process and returns stdout alone (the
// table or JSON, without the notes on stderr) and the error.
func geoCmdStdout(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := geoCmdSplit(t, args...)
	return out, err
}

// geoCmdSplit runs the CLI in-process and returns stdout, stderr and the
// error.
func geoCmdSplit(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"--log-level", "error"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func isUsage(err error) bool {
	var ue usageError
	return errors.As(err, &ue)
}

func TestLookupTableRealData(t *testing.T) {
	td := geoTestdata(t)
	cfg := filepath.Join(t.TempDir(), "sipsentry.toml")
	os.WriteFile(cfg, []byte("state_dir = \""+t.TempDir()+"\"\n"), 0o644)
	out, err := geoCmdStdout(t, "-c", cfg, "lookup", "--mmdb", filepath.Join(td, "dbip-country.mmdb"),
		"--asn-mmdb", filepath.Join(td, "GeoLite2-ASN-Test.mmdb"), "--lists-dir", td, "--allow", "jp",
		"133.242.0.1", "1.128.0.1", "10.0.0.1")
	if err != nil {
		t.Fatalf("lookup: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "IP") {
		t.Fatalf("want a header and 3 rows:\n%s", out)
	}
	for i, want := range [][]string{
		{"133.242.0.1", "JP", "JP", "yes", "-", "-", "no"},
		{"1.128.0.1", "AU", "-", "no", "AS1221", "Telstra", "Pty", "Ltd", "no"},
		{"10.0.0.1", "-", "-", "no", "-", "-", "no"},
	} {
		if got := strings.Fields(lines[i+1]); !slices.Equal(got, want) {
			t.Errorf("row %d = %q, want %q", i+1, got, want)
		}
	}
}

func TestLookupJSON(t *testing.T) {
	dir := t.TempDir()
	// Not <state_dir>/lists: that is where the last good copies are kept.
	mmdb, asn, lists := filepath.Join(dir, "c.mmdb"), filepath.Join(dir, "asn.mmdb"), filepath.Join(dir, "local-lists")
	geotest.WriteMMDB(t, mmdb, map[string]string{"198.51.100.0/24": "JP", "203.0.113.0/24": "US", "2001:db8::/32": "JP"}, false)
	geotest.WriteASNMMDB(t, asn, map[string]geotest.ASN{"203.0.113.0/24": {Number: 64500, Org: "Example Transit"}})
	geotest.WriteLists(t, lists, map[string][]string{"JP": {"198.51.100.0/24", "203.0.113.0/25", "2001:db8::/32"}})
	cfg := filepath.Join(dir, "sipsentry.toml")
	os.WriteFile(cfg, []byte(`state_dir = "`+dir+`"
[geo]
allow_countries = ["JP"]
mmdb = "`+mmdb+`"
asn_mmdb = "`+asn+`"
lists_dir = "`+lists+`"
min_entries = 0
`), 0o644)
	out, err := geoCmdStdout(t, "-c", cfg, "lookup", "--json", "198.51.100.7", "203.0.113.9", "203.0.113.200", "2001:db8::1")
	if err != nil {
		t.Fatalf("lookup: %v\n%s", err, out)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows", len(rows))
	}
	keys := []string{"asn", "disagree", "in_allowed", "ip", "list_country", "mmdb_country", "org"}
	for _, r := range rows {
		var got []string
		for k := range r {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, keys) {
			t.Fatalf("keys %v, want %v", got, keys)
		}
	}
	check := func(i int, ip, mmdb, list string, allowed bool, asn float64, org string, disagree bool) {
		t.Helper()
		r := rows[i]
		if r["ip"] != ip || r["mmdb_country"] != mmdb || r["list_country"] != list || r["in_allowed"] != allowed ||
			r["asn"] != asn || r["org"] != org || r["disagree"] != disagree {
			t.Errorf("row %d = %v", i, r)
		}
	}
	check(0, "198.51.100.7", "JP", "JP", true, 0, "", false)
	check(1, "203.0.113.9", "US", "JP", true, 64500, "Example Transit", true)
	check(2, "203.0.113.200", "US", "", false, 64500, "Example Transit", false)
	check(3, "2001:db8::1", "JP", "JP", true, 0, "", false)
}

func TestLookupWithoutConfigFile(t *testing.T) {
	// The default path, made absent whatever this machine has in /etc.
	old := defaultConfigPath
	defaultConfigPath = filepath.Join(t.TempDir(), "absent.toml")
	t.Cleanup(func() { defaultConfigPath = old })
	td := geoTestdata(t)
	out, err := geoCmd(t, "lookup", "--mmdb", filepath.Join(td, "GeoIP2-Country-Test.mmdb"), "--json", "81.2.69.160")
	if err != nil {
		t.Fatalf("lookup without a config file: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"mmdb_country": "GB"`) {
		t.Errorf("81.2.69.160 not GB:\n%s", out)
	}
}

func TestLookupBadInput(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "x.mmdb")
	os.WriteFile(notDB, []byte("hello"), 0o644)
	cfg := filepath.Join(dir, "sipsentry.toml")
	os.WriteFile(cfg, []byte("state_dir = \""+dir+"\"\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lookup", "not-an-ip"}, `"not-an-ip" is not an IPv4 or IPv6 address`},
		{[]string{"lookup", "--mmdb", notDB, "198.51.100.1"}, "geo.mmdb"},
		{[]string{"lookup", "--asn-mmdb", notDB, "198.51.100.1"}, "geo.asn_mmdb"},
		{[]string{"lookup", "--allow", "JP,XX", "198.51.100.1"}, `unknown country code "XX"`},
		{[]string{"lookup"}, "give one or more IP addresses"},
	} {
		out, err := geoCmd(t, append([]string{"-c", cfg}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want it to mention %q\n%s", tc.args, err, tc.want, out)
			continue
		}
		if !isUsage(err) {
			t.Errorf("%v: %v is not a usage error (exit 2)", tc.args, err)
		}
	}
}
